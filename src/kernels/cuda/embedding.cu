// Token plus position embedding. The output is the residual stream: fp32, whatever the weights' T.
#include "src/kernels/cuda/common.cuh"

namespace kl::cuda {
namespace {

template <class T>
__global__ void embedding_forward_kernel(float* out, const int32_t* tokens, const T* wte, const T* wpe, int64_t N,
                                         int T_, int C) {
  const int64_t total = N * C;
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < total; i += int64_t{gridDim.x} * blockDim.x) {
    const int64_t n = i / C;
    const int c = static_cast<int>(i % C);
    out[i] = to_float(wte[int64_t{tokens[n]} * C + c]) + to_float(wpe[(n % T_) * C + c]);
  }
}

// A token can repeat, so rows of dwte may collide. Thread (channel c) walks the tokens in order and
// owns column c: no atomics, the CPU's order of additions. Only C threads in a dependent chain of
// N read-modify-writes, but it runs once per micro-batch, beside 2 x layers x 6 products.
__global__ void token_embedding_backward_kernel(float* dwte, const float* dout, const int32_t* tokens, int64_t N,
                                                int C) {
  const int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= C) return;
  for (int64_t n = 0; n < N; ++n) dwte[int64_t{tokens[n]} * C + c] += dout[n * C + c];
}

// Position rows never collide within a sequence: thread (t, c) sums over the batch in order.
__global__ void position_embedding_backward_kernel(float* dwpe, const float* dout, int B, int T_, int C) {
  const int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x;  // t * C + c
  if (i >= int64_t{T_} * C) return;
  float sum = dwpe[i];
  for (int b = 0; b < B; ++b) sum += dout[int64_t{b} * T_ * C + i];
  dwpe[i] = sum;
}

}  // namespace

template <class T>
void embedding_forward(float* out, const int32_t* tokens, const T* wte, const T* wpe, int B, int T_, int C,
                       cudaStream_t stream) {
  const int64_t N = int64_t{B} * T_;
  if (N * C <= 0) return;
  embedding_forward_kernel<<<grid_for(N * C, 256), 256, 0, stream>>>(out, tokens, wte, wpe, N, T_, C);
  KL_CHECK_LAUNCH();
}

void embedding_backward(float* dwte, float* dwpe, const float* dout, const int32_t* tokens, int B, int T_, int C,
                        cudaStream_t stream) {
  if (int64_t{B} * T_ <= 0 || C <= 0) return;
  token_embedding_backward_kernel<<<(C + 127) / 128, 128, 0, stream>>>(dwte, dout, tokens, int64_t{B} * T_, C);
  KL_CHECK_LAUNCH();
  const int64_t positions = int64_t{T_} * C;
  position_embedding_backward_kernel<<<static_cast<unsigned>((positions + 255) / 256), 256, 0, stream>>>(
      dwpe, dout, B, T_, C);
  KL_CHECK_LAUNCH();
}

template void embedding_forward<float>(float*, const int32_t*, const float*, const float*, int, int, int,
                                       cudaStream_t);
template void embedding_forward<bf16>(float*, const int32_t*, const bf16*, const bf16*, int, int, int, cudaStream_t);

}  // namespace kl::cuda
