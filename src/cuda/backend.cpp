#include "src/cuda/backend.h"

#include "src/util/error.h"

namespace kl::cuda {

template <class T>
CudaBackend<T>::CudaBackend(int device, bool tf32) : device_(device) {
  KL_CHECK_CUDA(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
  blas_ = std::make_unique<Blas>(tf32);
  loss_sum_ = alloc<double>(1);
  scalar_ = alloc<double>(1);
  partials_ = alloc<double>(kSumSquaresPartials);
}

template <class T>
CudaBackend<T>::~CudaBackend() {
  cudaStreamSynchronize(stream_);  // nothing queued may outlive the buffers
  blas_.reset();
  cudaStreamDestroy(stream_);
}

template <class T>
std::string CudaBackend<T>::describe() const {
  cudaDeviceProp props{};
  KL_CHECK_CUDA(cudaGetDeviceProperties(&props, device_));
  return std::string("GPU ") + std::to_string(device_) + " (" + props.name + "), " +
         (std::is_same_v<T, float> ? "fp32" : "bf16 products, fp32 stream and master weights");
}

template <class T>
double CudaBackend<T>::take_loss_sum() {
  double sum = 0.0;
  download(&sum, static_cast<const double*>(loss_sum_.data()), 1);
  zero(loss_sum_.data(), 1);
  return sum;
}

template class CudaBackend<float>;
template class CudaBackend<bf16>;

}  // namespace kl::cuda
