// Fused softmax + cross-entropy. The forward pass keeps only log-sum-exp per row (not the [N,V]
// probabilities); the backward pass recomputes softmax from the logits in fp32 and writes the
// gradient over them in place. One block per row. Rows are Vp long, the vocabulary their first V
// (model.vocab_padded): the padded columns are outside the softmax and get a zero gradient.
#include "src/kernels/cuda/common.cuh"

namespace kl::cuda {
namespace {

constexpr int kThreads = 256;

template <class T>
__global__ void softmax_xent_forward_kernel(float* losses, float* lse, const T* logits, const int32_t* targets,
                                            int V, int Vp) {
  __shared__ float shared[32];
  const int64_t at = int64_t{blockIdx.x} * Vp;
  float max = -INFINITY;
  for (int v = threadIdx.x; v < V; v += blockDim.x) max = fmaxf(max, to_float(logits[at + v]));
  max = block_max(max, shared);
  float sum = 0.0f;
  for (int v = threadIdx.x; v < V; v += blockDim.x) sum += expf(to_float(logits[at + v]) - max);
  sum = block_sum(sum, shared);
  if (threadIdx.x == 0) {
    const float log_sum = max + logf(sum);
    lse[blockIdx.x] = log_sum;
    losses[blockIdx.x] = log_sum - to_float(logits[at + targets[blockIdx.x]]);
  }
}

template <class T>
__global__ void softmax_xent_backward_kernel(T* dlogits, const T* logits, const float* lse, const int32_t* targets,
                                             float dloss, int V, int Vp) {
  const int64_t at = int64_t{blockIdx.x} * Vp;
  const float log_sum = lse[blockIdx.x];
  const int target = targets[blockIdx.x];
  for (int v = threadIdx.x; v < V; v += blockDim.x) {
    const float p = expf(to_float(logits[at + v]) - log_sum);
    dlogits[at + v] = from_float<T>(p * dloss - (v == target ? dloss : 0.0f));
  }
  for (int v = V + threadIdx.x; v < Vp; v += blockDim.x) dlogits[at + v] = from_float<T>(0.0f);
}

__global__ void loss_sum_kernel(double* sum, const float* losses, int N) {
  __shared__ double shared[32];
  double s = 0.0;
  for (int n = threadIdx.x; n < N; n += blockDim.x) s += losses[n];
  s = block_sum(s, shared);
  if (threadIdx.x == 0) *sum += s;
}

}  // namespace

template <class T>
void softmax_xent_forward(float* losses, float* lse, const T* logits, const int32_t* targets, int N, int V, int Vp,
                          cudaStream_t stream) {
  if (N <= 0) return;
  softmax_xent_forward_kernel<<<N, kThreads, 0, stream>>>(losses, lse, logits, targets, V, Vp);
  KL_CHECK_LAUNCH();
}

template <class T>
void softmax_xent_backward(T* dlogits, const T* logits, const float* lse, const int32_t* targets, float dloss, int N,
                           int V, int Vp, cudaStream_t stream) {
  if (N <= 0) return;
  softmax_xent_backward_kernel<<<N, kThreads, 0, stream>>>(dlogits, logits, lse, targets, dloss, V, Vp);
  KL_CHECK_LAUNCH();
}

void loss_sum_accumulate(double* sum, const float* losses, int N, cudaStream_t stream) {
  loss_sum_kernel<<<1, 1024, 0, stream>>>(sum, losses, N);
  KL_CHECK_LAUNCH();
}

template void softmax_xent_forward<float>(float*, float*, const float*, const int32_t*, int, int, int, cudaStream_t);
template void softmax_xent_forward<bf16>(float*, float*, const bf16*, const int32_t*, int, int, int, cudaStream_t);
template void softmax_xent_backward<float>(float*, const float*, const float*, const int32_t*, float, int, int, int,
                                           cudaStream_t);
template void softmax_xent_backward<bf16>(bf16*, const bf16*, const float*, const int32_t*, float, int, int, int,
                                          cudaStream_t);

}  // namespace kl::cuda
