#include "src/cuda/gpt_cuda.h"

#include <algorithm>
#include <type_traits>

#include "src/kernels/cuda/ops.h"
#include "src/util/error.h"

namespace kl::cuda {
namespace {

// Dropout sites, as models/block.cpp numbers them: the masks must be the CPU's.
uint32_t attn_site(int layer) { return 1 + 2 * static_cast<uint32_t>(layer); }
uint32_t mlp_site(int layer) { return 2 + 2 * static_cast<uint32_t>(layer); }

// A block's tensors at the same offsets in another buffer (the table's offsets are the same).
template <class P>
BlockTensors<P> rebase(const BlockTensors<const float*>& t, const float* from, P to) {
  auto at = [&](const float* p) -> P { return p ? to + (p - from) : nullptr; };
  return {at(t.ln1_w),      at(t.ln1_b),     at(t.qkv_w),      at(t.qkv_b),       at(t.proj_w),
          at(t.proj_b),     at(t.ln2_w),     at(t.ln2_b),      at(t.fc_w),        at(t.fc_b),
          at(t.fc2_w),      at(t.fc2_b),     at(t.attn_scale), at(t.mlp_scale),   at(t.attn_gate_w),
          at(t.attn_gate_b), at(t.mlp_gate_w), at(t.mlp_gate_b)};
}

}  // namespace

template <class T>
struct CudaGpt<T>::PinnedTokens {
  int32_t* host[2] = {nullptr, nullptr};
  cudaEvent_t copied[2] = {nullptr, nullptr};
  int next = 0;
  explicit PinnedTokens(int64_t n) {
    for (int i = 0; i < 2; ++i) {
      KL_CHECK_CUDA(cudaMallocHost(reinterpret_cast<void**>(&host[i]), static_cast<size_t>(n) * sizeof(int32_t)));
      KL_CHECK_CUDA(cudaEventCreateWithFlags(&copied[i], cudaEventDisableTiming));
    }
  }
  ~PinnedTokens() {
    for (int i = 0; i < 2; ++i) {
      cudaEventSynchronize(copied[i]);
      cudaEventDestroy(copied[i]);
      cudaFreeHost(host[i]);
    }
  }
};

template <class T>
CudaGpt<T>::CudaGpt(const ModelConfig& config, int micro_batch, bool recompute, int64_t buffer_multiple, bool tf32,
                    cudaStream_t stream)
    : config_(config),
      table_(config),
      micro_batch_(micro_batch),
      recompute_(recompute),
      stream_(stream),
      blas_(std::make_unique<Blas>(tf32)),
      token_embedding_(table_.get("embed.token.weight").offset),
      position_embedding_(table_.get("embed.position.weight").offset),
      final_norm_weight_(table_.get("final_norm.weight").offset),
      final_norm_bias_(table_.get("final_norm.bias").offset),
      head_(config.tie_embeddings ? token_embedding_ : table_.get("head.weight").offset) {
  KL_CHECK(parse_residual(config.residual) == Residual::kPreNorm && config.stochastic_depth == 0.0,
           "the CUDA model implements pre-norm blocks without stochastic depth (config.cpp should have refused)");
  const int64_t padded = (table_.buffer_size() + buffer_multiple - 1) / buffer_multiple * buffer_multiple;
  master_ = DeviceBuffer<float>(padded);
  grads_ = DeviceBuffer<float>(padded);
  master_.zero(stream_);
  grads_.zero(stream_);
  if constexpr (!std::is_same_v<T, float>) {
    copy_ = DeviceBuffer<T>(padded);
    copy_.zero(stream_);
  }
  for (int l = 0; l < config_.layers; ++l) {
    const BlockTensors<const float*> t = block_tensors<const float*>(table_, master_.data(), l);
    layer_params_.push_back(rebase<const T*>(t, master_.data(), weights()));
    layer_grads_.push_back(rebase<float*>(t, master_.data(), grads_.data()));
  }

  const BlockShape s = block_shape(config_, micro_batch_);
  const int64_t N = s.tokens(), NC = N * s.C, NF = N * s.F, square = int64_t{s.B} * s.NH * s.T * s.T;
  const int64_t V = config_.vocab;
  residual_ = DeviceBuffer<T>(NC * (config_.layers + 1));
  const int saved = recompute_ ? 1 : config_.layers;
  const int64_t per_block = 7 * NC + square + 2 * NF;
  acts_memory_ = DeviceBuffer<T>(per_block * saved);
  stats_memory_ = DeviceBuffer<float>(4 * N * saved);
  for (int l = 0; l < saved; ++l) {
    T* m = acts_memory_.data() + per_block * l;
    float* f = stats_memory_.data() + 4 * N * l;
    auto take = [&m](int64_t n) { T* p = m; m += n; return p; };
    Acts a{};
    a.ln1 = take(NC);
    a.qkv = take(3 * NC);
    a.probs = take(square);
    a.att = take(NC);
    a.x_mid = take(NC);
    a.ln2 = take(NC);
    a.fc = take(NF);
    a.gelu = take(NF);
    a.ln1_mean = f, a.ln1_rstd = f + N, a.ln2_mean = f + 2 * N, a.ln2_rstd = f + 3 * N;
    acts_.push_back(a);
  }
  scratch_ = DeviceBuffer<T>(2 * NC + 3 * NC + square + NF + NC + N * V);
  T* m = scratch_.data();
  auto take = [&m](int64_t n) { T* p = m; m += n; return p; };
  branch_ = take(NC);
  dnc_ = take(NC);
  dqkv_ = take(3 * NC);
  dprobs_ = take(square);
  dff_ = take(NF);
  final_norm_ = take(NC);
  logits_ = take(N * V);
  dres_ = DeviceBuffer<float>(NC);
  final_stats_ = DeviceBuffer<float>(2 * N);
  losses_ = DeviceBuffer<float>(N);
  lse_ = DeviceBuffer<float>(N);
  loss_sum_ = DeviceBuffer<double>(1);
  loss_sum_.zero(stream_);
  tokens_ = DeviceBuffer<int32_t>(2 * N);
  pinned_ = std::make_unique<PinnedTokens>(2 * N);
}

template <class T>
CudaGpt<T>::~CudaGpt() {
  cudaStreamSynchronize(stream_);  // nothing queued may outlive the buffers
}

template <class T>
const T* CudaGpt<T>::weights() const {
  if constexpr (std::is_same_v<T, float>) {
    return master_.data();
  } else {
    return copy_.data();
  }
}

template <class T>
void CudaGpt<T>::params_changed() {
  if constexpr (!std::is_same_v<T, float>) convert<float, T>(copy_.data(), master_.data(), master_.size(), stream_);
}

template <class T>
double CudaGpt<T>::take_loss_sum() {
  double sum = 0.0;
  KL_CHECK_CUDA(cudaMemcpyAsync(&sum, loss_sum_.data(), sizeof sum, cudaMemcpyDeviceToHost, stream_));
  KL_CHECK_CUDA(cudaStreamSynchronize(stream_));
  loss_sum_.zero(stream_);
  return sum;
}

template <class T>
void CudaGpt<T>::forward(const int32_t* inputs, const int32_t* targets, int B, const BatchPosition& position,
                         bool training) {
  KL_CHECK(B >= 1 && B <= micro_batch_, "batch larger than the model's micro-batch buffers");
  const BlockShape s = block_shape(config_, B);
  const int N = static_cast<int>(s.tokens());
  const int64_t NC = s.tokens() * s.C;
  const BlockDropout drop = BlockDropout::make(config_, position.seed, position.step, position.first_sample, training);

  // The tokens, through the pinned buffer whose previous copy is done.
  PinnedTokens& pinned = *pinned_;
  const int slot = pinned.next;
  pinned.next = 1 - slot;
  KL_CHECK_CUDA(cudaEventSynchronize(pinned.copied[slot]));
  std::copy(inputs, inputs + N, pinned.host[slot]);
  std::copy(targets, targets + N, pinned.host[slot] + N);
  KL_CHECK_CUDA(cudaMemcpyAsync(tokens_.data(), pinned.host[slot], 2 * static_cast<size_t>(N) * sizeof(int32_t),
                                cudaMemcpyHostToDevice, stream_));
  KL_CHECK_CUDA(cudaEventRecord(pinned.copied[slot], stream_));
  const int32_t* in = tokens_.data();
  const int32_t* tg = tokens_.data() + N;

  const T* p = weights();
  T* x = residual_.data();
  embedding_forward(x, in, p + token_embedding_, p + position_embedding_, B, s.T, s.C, stream_);
  dropout(x, static_cast<const T*>(x), B, int64_t{s.T} * s.C, drop.p, drop.at(kEmbeddingDropoutSite), stream_);
  for (int l = 0; l < config_.layers; ++l) {
    if (!training && l == skip_) {
      KL_CHECK_CUDA(cudaMemcpyAsync(x + (l + 1) * NC, x + l * NC, static_cast<size_t>(NC) * sizeof(T),
                                    cudaMemcpyDeviceToDevice, stream_));
      continue;
    }
    block_forward(s, l, x + l * NC, x + (l + 1) * NC, acts(l), drop);
  }
  float* fmean = final_stats_.data();
  float* frstd = final_stats_.data() + N;
  layernorm_forward(final_norm_, fmean, frstd, static_cast<const T*>(x + config_.layers * NC), p + final_norm_weight_,
                    p + final_norm_bias_, N, s.C, stream_);
  linear_forward<T>(*blas_, logits_, final_norm_, p + head_, nullptr, N, s.C, config_.vocab, stream_);
  softmax_xent_forward(losses_.data(), lse_.data(), static_cast<const T*>(logits_), tg, N, config_.vocab, stream_);
  loss_sum_accumulate(loss_sum_.data(), losses_.data(), N, stream_);
}

template <class T>
void CudaGpt<T>::backward(int B, const BatchPosition& position, double loss_scale) {
  const BlockShape s = block_shape(config_, B);
  const int N = static_cast<int>(s.tokens());
  const int64_t NC = s.tokens() * s.C;
  const BlockDropout drop = BlockDropout::make(config_, position.seed, position.step, position.first_sample, true);
  const int32_t* in = tokens_.data();
  const int32_t* tg = tokens_.data() + N;
  const T* p = weights();
  float* g = grads_.data();
  T* x = residual_.data();
  float* dres = dres_.data();

  // Head: the logits become dL/dlogits in place.
  softmax_xent_backward(logits_, static_cast<const T*>(logits_), lse_.data(), tg, static_cast<float>(loss_scale), N,
                        config_.vocab, stream_);
  linear_backward<T>(*blas_, dnc_, g + head_, nullptr, logits_, final_norm_, p + head_, N, s.C, config_.vocab,
                     stream_);
  dres_.zero(stream_);
  layernorm_backward(dres, g + final_norm_weight_, g + final_norm_bias_, static_cast<const T*>(dnc_),
                     static_cast<const T*>(x + config_.layers * NC), p + final_norm_weight_, final_stats_.data(),
                     final_stats_.data() + N, N, s.C, stream_);
  for (int l = config_.layers - 1; l >= 0; --l) {
    if (recompute_) block_forward(s, l, x + l * NC, x + (l + 1) * NC, acts(l), drop);
    block_backward(s, l, x + l * NC, acts(l), drop);
  }
  dropout(dres, static_cast<const float*>(dres), B, int64_t{s.T} * s.C, drop.p, drop.at(kEmbeddingDropoutSite),
          stream_);
  embedding_backward(g + token_embedding_, g + position_embedding_, dres, in, B, s.T, s.C, stream_);
}

template <class T>
void CudaGpt<T>::block_forward(const BlockShape& s, int layer, const T* x_in, T* x_out, const Acts& a,
                               const BlockDropout& drop) {
  const BlockTensors<const T*>& w = layer_params_[static_cast<size_t>(layer)];
  const int N = static_cast<int>(s.tokens());
  const int64_t NC = s.tokens() * s.C, row = int64_t{s.T} * s.C;
  Blas& blas = *blas_;
  // Attention branch: x_mid = x_in + D(Attn(LN1(x_in))), and LN2(x_mid) in the same pass.
  layernorm_forward(a.ln1, a.ln1_mean, a.ln1_rstd, x_in, w.ln1_w, w.ln1_b, N, s.C, stream_);
  linear_forward<T>(blas, a.qkv, a.ln1, w.qkv_w, w.qkv_b, N, s.C, 3 * s.C, stream_);
  attention_forward<T>(blas, a.att, a.probs, a.qkv, s.B, s.T, s.C, s.NH, stream_);
  linear_forward<T>(blas, branch_, a.att, w.proj_w, w.proj_b, N, s.C, s.C, stream_);
  dropout(branch_, static_cast<const T*>(branch_), s.B, row, drop.p, drop.at(attn_site(layer)), stream_);
  add_layernorm_forward(a.x_mid, a.ln2, a.ln2_mean, a.ln2_rstd, x_in, static_cast<const T*>(branch_), w.ln2_w,
                        w.ln2_b, N, s.C, stream_);
  // MLP branch: x_out = x_mid + D(MLP(LN2(x_mid))).
  linear_forward<T>(blas, a.fc, a.ln2, w.fc_w, w.fc_b, N, s.C, s.F, stream_);
  gelu_forward(a.gelu, static_cast<const T*>(a.fc), s.tokens() * s.F, stream_);
  linear_forward<T>(blas, branch_, a.gelu, w.fc2_w, w.fc2_b, N, s.F, s.C, stream_);
  dropout(branch_, static_cast<const T*>(branch_), s.B, row, drop.p, drop.at(mlp_site(layer)), stream_);
  add(x_out, static_cast<const T*>(a.x_mid), static_cast<const T*>(branch_), NC, stream_);
}

// dres_ holds dL/dx_out on entry and dL/dx_in on return; the LayerNorm backward passes add each
// branch's share to it (the identity path carries it through untouched).
template <class T>
void CudaGpt<T>::block_backward(const BlockShape& s, int layer, const T* x_in, const Acts& a,
                                const BlockDropout& drop) {
  const BlockTensors<const T*>& w = layer_params_[static_cast<size_t>(layer)];
  const BlockTensors<float*>& g = layer_grads_[static_cast<size_t>(layer)];
  const int N = static_cast<int>(s.tokens());
  const int64_t row = int64_t{s.T} * s.C;
  float* dres = dres_.data();
  Blas& blas = *blas_;
  // MLP branch.
  dropout(branch_, static_cast<const float*>(dres), s.B, row, drop.p, drop.at(mlp_site(layer)), stream_);
  linear_backward<T>(blas, dff_, g.fc2_w, g.fc2_b, branch_, a.gelu, w.fc2_w, N, s.F, s.C, stream_);
  gelu_backward(dff_, static_cast<const T*>(a.fc), static_cast<const T*>(dff_), s.tokens() * s.F, stream_);
  linear_backward<T>(blas, dnc_, g.fc_w, g.fc_b, dff_, a.ln2, w.fc_w, N, s.C, s.F, stream_);
  layernorm_backward(dres, g.ln2_w, g.ln2_b, static_cast<const T*>(dnc_), static_cast<const T*>(a.x_mid), w.ln2_w,
                     a.ln2_mean, a.ln2_rstd, N, s.C, stream_);
  // Attention branch.
  dropout(branch_, static_cast<const float*>(dres), s.B, row, drop.p, drop.at(attn_site(layer)), stream_);
  linear_backward<T>(blas, dnc_, g.proj_w, g.proj_b, branch_, a.att, w.proj_w, N, s.C, s.C, stream_);
  attention_backward<T>(blas, dqkv_, dprobs_, dnc_, a.qkv, a.probs, s.B, s.T, s.C, s.NH, stream_);
  linear_backward<T>(blas, dnc_, g.qkv_w, g.qkv_b, dqkv_, a.ln1, w.qkv_w, N, s.C, 3 * s.C, stream_);
  layernorm_backward(dres, g.ln1_w, g.ln1_b, static_cast<const T*>(dnc_), x_in, w.ln1_w, a.ln1_mean, a.ln1_rstd, N,
                     s.C, stream_);
}

template <class T>
void CudaGpt<T>::forward_backward(const int32_t* inputs, const int32_t* targets, int B,
                                  const BatchPosition& position, double loss_scale) {
  forward(inputs, targets, B, position, /*training=*/true);
  backward(B, position, loss_scale);
}

template <class T>
void CudaGpt<T>::evaluate(const int32_t* inputs, const int32_t* targets, int B) {
  forward(inputs, targets, B, BatchPosition{}, /*training=*/false);
}

template class CudaGpt<float>;
template class CudaGpt<bf16>;

}  // namespace kl::cuda
