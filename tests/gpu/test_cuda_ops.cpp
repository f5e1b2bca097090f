// The CUDA backend against the CPU: every kernel on fresh random inputs (tolerances per precision),
// a whole training step of the model, and 20 training steps' losses through the trainer.
//
// Built only with the CUDA backend (ctest -L gpu). Without a usable GPU every test SKIPS with
// "no CUDA device: ..." (GTEST_SKIP), which CTest reports as skipped, not passed.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "comm/solo_comm.h"
#include "models/gpt.h"
#include "src/config/config.h"
#include "src/cuda/device.h"
#include "src/cuda/gpt_cuda.h"
#include "src/data/text_shards.h"
#include "src/kernels/cpu/ops.h"
#include "src/kernels/cuda/cublaslt.h"
#include "src/kernels/cuda/ops.h"
#include "src/train/trainer.h"
#include "src/util/rng.h"

namespace kl::cuda {
namespace {

// Tolerances |got - want| <= abs + rel |want|, per activation type.
template <class T>
struct Tolerance;
template <>
struct Tolerance<float> {
  static constexpr double abs = 2e-5, rel = 2e-4;
};
template <>
struct Tolerance<bf16> {  // 8 bits of mantissa, products accumulated in fp32
  static constexpr double abs = 3e-2, rel = 3e-2;
};

std::vector<float> random_values(int64_t n, uint64_t id, double scale = 1.0) {
  std::vector<float> v(static_cast<size_t>(n));
  const uint64_t stream = rng::key(0x5EED, id);
  for (int64_t i = 0; i < n; ++i) v[static_cast<size_t>(i)] = static_cast<float>(scale * rng::normal(stream, i));
  return v;
}

std::vector<int32_t> random_tokens(int64_t n, int vocab, uint64_t id) {
  std::vector<int32_t> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) v[static_cast<size_t>(i)] = static_cast<int32_t>(rng::bits(rng::key(0x70C, id), i) % vocab);
  return v;
}

// The values as the device type would hold them, back in float (bf16 rounds the CPU's inputs too,
// so that both sides start from the same numbers).
template <class T>
std::vector<float> representable(std::vector<float> v) {
  if constexpr (std::is_same_v<T, bf16>) {
    for (float& x : v) x = __bfloat162float(__float2bfloat16(x));
  }
  return v;
}

class CudaTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string why;
    if (!device_available(&why)) GTEST_SKIP() << "no CUDA device: " << why;
    KL_CHECK_CUDA(cudaSetDevice(0));
    KL_CHECK_CUDA(cudaStreamCreate(&stream_));
  }
  void TearDown() override {
    if (stream_) {
      KL_CHECK_CUDA(cudaStreamSynchronize(stream_));
      KL_CHECK_CUDA(cudaStreamDestroy(stream_));
    }
  }

  // Host float values -> a device buffer of T.
  template <class T>
  DeviceBuffer<T> upload(const std::vector<float>& host) {
    DeviceBuffer<float> staging(static_cast<int64_t>(host.size()));
    staging.upload(host, stream_);
    DeviceBuffer<T> out(static_cast<int64_t>(host.size()));
    convert<float, T>(out.data(), staging.data(), out.size(), stream_);
    KL_CHECK_CUDA(cudaStreamSynchronize(stream_));
    return out;
  }
  DeviceBuffer<int32_t> upload_tokens(const std::vector<int32_t>& host) {
    DeviceBuffer<int32_t> out(static_cast<int64_t>(host.size()));
    out.upload(host, stream_);
    KL_CHECK_CUDA(cudaStreamSynchronize(stream_));
    return out;
  }
  // n device values of T -> host floats.
  template <class T>
  std::vector<float> download(const T* device, int64_t n) {
    DeviceBuffer<float> staging(n);
    convert<T, float>(staging.data(), device, n, stream_);
    std::vector<float> host(static_cast<size_t>(n));
    staging.download(host, stream_);
    KL_CHECK_CUDA(cudaStreamSynchronize(stream_));
    return host;
  }
  template <class T>
  std::vector<float> download(const DeviceBuffer<T>& b) {
    return download(b.data(), b.size());
  }

  cudaStream_t stream_ = nullptr;
};

void expect_close(const std::vector<float>& got, const std::vector<float>& want, double abs, double rel,
                  const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  size_t bad = 0, worst = 0;
  double worst_excess = -1.0;
  for (size_t i = 0; i < got.size(); ++i) {
    const double err = std::abs(double(got[i]) - double(want[i]));
    const double excess = err - (abs + rel * std::abs(double(want[i])));
    if (excess > 0 || !std::isfinite(got[i])) ++bad;
    if (excess > worst_excess || !std::isfinite(got[i])) worst_excess = excess, worst = i;
  }
  EXPECT_EQ(bad, 0u) << what << ": " << bad << " of " << got.size() << " elements off; worst at " << worst
                     << ": got " << got[worst] << ", want " << want[worst];
}

template <class T>
void expect_close(const std::vector<float>& got, const std::vector<float>& want, const std::string& what,
                  double widen = 1.0) {
  expect_close(got, want, Tolerance<T>::abs * widen, Tolerance<T>::rel * widen, what);
}

template <class T>
class CudaOps : public CudaTest {};
using Precisions = ::testing::Types<float, bf16>;
TYPED_TEST_SUITE(CudaOps, Precisions);

TYPED_TEST(CudaOps, LinearMatchesCpu) {
  using T = TypeParam;
  const int N = 48, I = 40, O = 72;
  const auto inp = representable<T>(random_values(int64_t{N} * I, 1));
  const auto w = representable<T>(random_values(int64_t{O} * I, 2, 0.2));
  const auto bias = representable<T>(random_values(O, 3));
  const auto dout = representable<T>(random_values(int64_t{N} * O, 4));
  const auto dw0 = random_values(int64_t{O} * I, 5), db0 = random_values(O, 6);  // accumulated onto

  std::vector<float> out(size_t(N) * O), dinp(size_t(N) * I), dw = dw0, db = db0;
  cpu::linear_forward(out.data(), inp.data(), w.data(), bias.data(), N, I, O);
  cpu::linear_backward(dinp.data(), dw.data(), db.data(), dout.data(), inp.data(), w.data(), N, I, O);

  Blas blas(false);
  auto d_inp = this->template upload<T>(inp), d_w = this->template upload<T>(w), d_b = this->template upload<T>(bias);
  auto d_dout = this->template upload<T>(dout);
  auto d_dw = this->template upload<float>(dw0), d_db = this->template upload<float>(db0);
  DeviceBuffer<T> d_out(int64_t{N} * O), d_dinp(int64_t{N} * I);
  linear_forward<T>(blas, d_out.data(), d_inp.data(), d_w.data(), d_b.data(), N, I, O, this->stream_);
  linear_backward<T>(blas, d_dinp.data(), d_dw.data(), d_db.data(), d_dout.data(), d_inp.data(), d_w.data(), N, I, O,
                     this->stream_);
  expect_close<T>(this->download(d_out), out, "linear out");
  expect_close<T>(this->download(d_dinp), dinp, "linear dinp");
  expect_close<T>(this->download(d_dw), dw, "linear dweight (accumulated)");
  expect_close<T>(this->download(d_db), db, "linear dbias (accumulated)");
}

TYPED_TEST(CudaOps, LayerNormMatchesCpu) {
  using T = TypeParam;
  const int N = 37, C = 96;
  const auto a = representable<T>(random_values(int64_t{N} * C, 10, 2.0));
  const auto b = representable<T>(random_values(int64_t{N} * C, 11));
  const auto w = representable<T>(random_values(C, 12)), bias = representable<T>(random_values(C, 13));
  const auto dout = representable<T>(random_values(int64_t{N} * C, 14));
  const auto dinp0 = random_values(int64_t{N} * C, 15);
  // The CPU on the rounded sum, as the fused kernel normalises what it stored.
  std::vector<float> sum(a.size());
  for (size_t i = 0; i < a.size(); ++i) sum[i] = a[i] + b[i];
  sum = representable<T>(sum);
  std::vector<float> out(sum.size()), mean(N), rstd(N), dinp = dinp0, dw(C, 0.5f), db(C, -0.5f);
  cpu::layernorm_forward(out.data(), mean.data(), rstd.data(), sum.data(), w.data(), bias.data(), N, C);
  cpu::layernorm_backward(dinp.data(), dw.data(), db.data(), dout.data(), sum.data(), w.data(), mean.data(),
                          rstd.data(), N, C);

  auto d_a = this->template upload<T>(a), d_b = this->template upload<T>(b), d_w = this->template upload<T>(w);
  auto d_bias = this->template upload<T>(bias), d_dout = this->template upload<T>(dout);
  auto d_dinp = this->template upload<float>(dinp0);
  auto d_dw = this->template upload<float>(std::vector<float>(C, 0.5f));
  auto d_db = this->template upload<float>(std::vector<float>(C, -0.5f));
  DeviceBuffer<T> d_sum(int64_t{N} * C), d_out(int64_t{N} * C), d_out2(int64_t{N} * C);
  DeviceBuffer<float> d_mean(N), d_rstd(N);
  add_layernorm_forward<T>(d_sum.data(), d_out.data(), d_mean.data(), d_rstd.data(), d_a.data(), d_b.data(), d_w.data(),
                           d_bias.data(), N, C, this->stream_);
  expect_close<T>(this->download(d_sum), sum, "residual sum", 0.0);
  expect_close<T>(this->download(d_out), out, "add + layernorm out");
  layernorm_forward<T>(d_out2.data(), d_mean.data(), d_rstd.data(), d_sum.data(), d_w.data(), d_bias.data(), N, C,
                       this->stream_);
  expect_close<T>(this->download(d_out2), out, "layernorm out");
  expect_close(this->download(d_mean), mean, 1e-5, 1e-5, "mean");
  expect_close(this->download(d_rstd), rstd, 1e-5, 1e-4, "rstd");
  layernorm_backward<T>(d_dinp.data(), d_dw.data(), d_db.data(), d_dout.data(), d_sum.data(), d_w.data(),
                        d_mean.data(), d_rstd.data(), N, C, this->stream_);
  expect_close<T>(this->download(d_dinp), dinp, "layernorm dinp (accumulated)");
  expect_close<T>(this->download(d_dw), dw, "layernorm dweight");
  expect_close<T>(this->download(d_db), db, "layernorm dbias");
}

TYPED_TEST(CudaOps, CausalAttentionMatchesCpu) {
  using T = TypeParam;
  for (const auto [B, T_, C, NH] : {std::array{2, 16, 32, 4}, std::array{3, 70, 48, 3}}) {
    const int64_t N = int64_t{B} * T_;
    const auto qkv = representable<T>(random_values(N * 3 * C, 20 + T_));
    const auto dout = representable<T>(random_values(N * C, 21 + T_));
    const int64_t square = int64_t{B} * NH * T_ * T_;
    std::vector<float> out(static_cast<size_t>(N * C)), probs(static_cast<size_t>(square)), dqkv(static_cast<size_t>(N * 3 * C)), dprobs(static_cast<size_t>(square));
    cpu::attention_forward(out.data(), probs.data(), qkv.data(), B, T_, C, NH);
    cpu::attention_backward(dqkv.data(), dprobs.data(), dout.data(), qkv.data(), probs.data(), B, T_, C, NH);

    Blas blas(false);
    auto d_qkv = this->template upload<T>(qkv), d_dout = this->template upload<T>(dout);
    DeviceBuffer<T> d_out(N * C), d_probs(square), d_dqkv(N * 3 * C), d_dprobs(square);
    attention_forward<T>(blas, d_out.data(), d_probs.data(), d_qkv.data(), B, T_, C, NH, this->stream_);
    attention_backward<T>(blas, d_dqkv.data(), d_dprobs.data(), d_dout.data(), d_qkv.data(), d_probs.data(), B, T_, C,
                          NH, this->stream_);
    const std::string shape = " (T=" + std::to_string(T_) + ")";
    expect_close<T>(this->download(d_probs), probs, "attention probs" + shape);
    expect_close<T>(this->download(d_out), out, "attention out" + shape);
    expect_close<T>(this->download(d_dqkv), dqkv, "attention dqkv" + shape, 2.0);
  }
}

TYPED_TEST(CudaOps, GeluMatchesCpu) {
  using T = TypeParam;
  const int64_t n = 5000;
  const auto x = representable<T>(random_values(n, 30, 3.0));
  const auto dy = representable<T>(random_values(n, 31));
  std::vector<double> xd(x.begin(), x.end()), dyd(dy.begin(), dy.end()), yd(static_cast<size_t>(n)), dxd(static_cast<size_t>(n));
  cpu::gelu_forward(yd.data(), xd.data(), n);  // the double reference (exact erf)
  cpu::gelu_backward(dxd.data(), xd.data(), dyd.data(), n);
  auto d_x = this->template upload<T>(x), d_dy = this->template upload<T>(dy);
  DeviceBuffer<T> d_y(n), d_dx(n);
  gelu_forward<T>(d_y.data(), d_x.data(), n, this->stream_);
  gelu_backward<T>(d_dx.data(), d_x.data(), d_dy.data(), n, this->stream_);
  expect_close<T>(this->download(d_y), std::vector<float>(yd.begin(), yd.end()), "gelu");
  expect_close<T>(this->download(d_dx), std::vector<float>(dxd.begin(), dxd.end()), "gelu backward");
}

TYPED_TEST(CudaOps, EmbeddingMatchesCpu) {
  using T = TypeParam;
  const int B = 3, T_ = 20, C = 24, V = 11;  // few tokens: many collisions in dwte
  const auto tokens = random_tokens(int64_t{B} * T_, V, 40);
  const auto wte = representable<T>(random_values(int64_t{V} * C, 41)), wpe = representable<T>(random_values(int64_t{T_} * C, 42));
  const auto dout = random_values(int64_t{B} * T_ * C, 43);
  std::vector<float> out(size_t(B) * T_ * C), dwte(size_t(V) * C, 1.0f), dwpe(size_t(T_) * C, 2.0f);
  cpu::embedding_forward(out.data(), tokens.data(), wte.data(), wpe.data(), B, T_, C);
  cpu::embedding_backward(dwte.data(), dwpe.data(), dout.data(), tokens.data(), B, T_, C);
  auto d_tokens = this->upload_tokens(tokens);
  auto d_wte = this->template upload<T>(wte), d_wpe = this->template upload<T>(wpe);
  auto d_dout = this->template upload<float>(dout);
  auto d_dwte = this->template upload<float>(std::vector<float>(size_t(V) * C, 1.0f));
  auto d_dwpe = this->template upload<float>(std::vector<float>(size_t(T_) * C, 2.0f));
  DeviceBuffer<T> d_out(int64_t{B} * T_ * C);
  embedding_forward<T>(d_out.data(), d_tokens.data(), d_wte.data(), d_wpe.data(), B, T_, C, this->stream_);
  embedding_backward(d_dwte.data(), d_dwpe.data(), d_dout.data(), d_tokens.data(), B, T_, C, this->stream_);
  expect_close<T>(this->download(d_out), out, "embedding");
  // fp32 with the CPU's order of additions: exact.
  expect_close(this->download(d_dwte), dwte, 0.0, 0.0, "token embedding gradient");
  expect_close(this->download(d_dwpe), dwpe, 0.0, 0.0, "position embedding gradient");
}

TYPED_TEST(CudaOps, SoftmaxCrossEntropyMatchesCpu) {
  using T = TypeParam;
  const int N = 33, V = 300;
  const auto logits = representable<T>(random_values(int64_t{N} * V, 50, 3.0));
  const auto targets = random_tokens(N, V, 51);
  const float dloss = 1.0f / N;
  std::vector<float> losses(N), probs(logits.size());
  cpu::softmax_xent_forward(losses.data(), probs.data(), logits.data(), targets.data(), N, V);
  cpu::softmax_xent_backward(probs.data(), probs.data(), targets.data(), dloss, N, V);
  auto d_logits = this->template upload<T>(logits);
  auto d_targets = this->upload_tokens(targets);
  DeviceBuffer<float> d_losses(N), d_lse(N);
  DeviceBuffer<double> d_sum(1);
  d_sum.zero(this->stream_);
  softmax_xent_forward<T>(d_losses.data(), d_lse.data(), d_logits.data(), d_targets.data(), N, V, this->stream_);
  loss_sum_accumulate(d_sum.data(), d_losses.data(), N, this->stream_);
  softmax_xent_backward<T>(d_logits.data(), d_logits.data(), d_lse.data(), d_targets.data(), dloss, N, V,
                           this->stream_);
  expect_close(this->download(d_losses), losses, 1e-5, 1e-5, "cross-entropy losses");
  expect_close<T>(this->download(d_logits), probs, "dlogits", 0.1);
  double sum = 0.0, want = 0.0;
  d_sum.download(std::span<double>(&sum, 1), this->stream_);
  KL_CHECK_CUDA(cudaStreamSynchronize(this->stream_));
  for (float l : losses) want += l;
  EXPECT_NEAR(sum, want, 1e-5 * want);
}

TEST_F(CudaTest, DropoutMasksEqualTheCpuBitForBit) {
  const int B = 3;
  const int64_t row = 4 * 37 + 3;  // not a multiple of 4: the last group is partial
  const auto x = random_values(B * row, 60);
  const cpu::DropoutKey key{1234, 7, 5, 9};
  for (double p : {0.0, 0.1, 0.5}) {
    std::vector<float> want(x.size());
    cpu::dropout_forward(want.data(), x.data(), B, row, p, key);
    auto d_x = upload<float>(x);
    DeviceBuffer<float> d_y(B * row);
    dropout<float, float>(d_y.data(), d_x.data(), B, row, p, key, stream_);
    EXPECT_EQ(download(d_y), want) << "p = " << p;
    DeviceBuffer<bf16> d_h(B * row);  // fp32 gradient -> bf16 branch gradient: the same mask
    dropout<float, bf16>(d_h.data(), d_x.data(), B, row, p, key, stream_);
    expect_close<bf16>(download(d_h), want, "dropout into bf16");
    dropout<float, float>(d_x.data(), d_x.data(), B, row, p, key, stream_);  // in place
    EXPECT_EQ(download(d_x), want) << "in place, p = " << p;
  }
}

TEST_F(CudaTest, AdamWNormAndScaleMatchCpu) {
  const int64_t n = 100003;
  auto param = random_values(n, 70), grad = random_values(n, 71, 0.1), m = random_values(n, 72, 0.01);
  auto v = random_values(n, 73, 0.01);
  for (float& x : v) x = x * x;
  auto d_param = upload<float>(param), d_grad = upload<float>(grad), d_m = upload<float>(m), d_v = upload<float>(v);
  DeviceBuffer<bf16> d_copy(n);
  cpu::adamw_update(param.data(), grad.data(), m.data(), v.data(), n, 1e-3, 0.9, 0.95, 1e-8, 0.1, 3);
  adamw_update<bf16>(d_param.data(), d_grad.data(), d_m.data(), d_v.data(), d_copy.data(), n, 1e-3, 0.9, 0.95, 1e-8,
                     0.1, 3, stream_);
  expect_close(download(d_param), param, 1e-7, 1e-6, "adamw parameters");
  expect_close(download(d_m), m, 1e-9, 1e-6, "adamw first moment");
  expect_close(download(d_v), v, 1e-12, 1e-6, "adamw second moment");
  expect_close<bf16>(download(d_copy), param, "adamw bf16 copy", 0.1);

  DeviceBuffer<double> d_norm(1), partials(kSumSquaresPartials);
  sum_squares(d_norm.data(), d_grad.data(), n, partials.data(), stream_);
  double norm = 0.0;
  d_norm.download(std::span<double>(&norm, 1), stream_);
  KL_CHECK_CUDA(cudaStreamSynchronize(stream_));
  const double want = cpu::sum_squares(grad.data(), n);
  EXPECT_NEAR(norm, want, 1e-12 * want);
  scale(d_grad.data(), n, 0.25f, stream_);
  cpu::scale(grad.data(), n, 0.25f);
  EXPECT_EQ(download(d_grad), grad);
}

// --- the model ---

ModelConfig small_model() {
  ModelConfig m;
  m.layers = 3;
  m.d_model = 32;
  m.heads = 4;
  m.seq_len = 24;
  m.vocab = 64;
  m.dropout = 0.1;
  return m;
}

template <class T>
class CudaModel : public CudaTest {};
TYPED_TEST_SUITE(CudaModel, Precisions);

TYPED_TEST(CudaModel, TrainingStepMatchesCpu) {
  using T = TypeParam;
  for (const bool tied : {true, false}) {
    ModelConfig mc = small_model();
    mc.tie_embeddings = tied;
    const int B = 3;
    const int64_t tokens = int64_t{B} * mc.seq_len;
    GptModel<float> cpu_model(mc, B, false);
    cpu_model.init(42);
    const auto inputs = random_tokens(tokens, mc.vocab, 80), targets = random_tokens(tokens, mc.vocab, 81);
    const BatchPosition at{42, 5, 6};
    const double loss_scale = 1.0 / double(tokens);
    cpu_model.zero_grads();
    const double cpu_loss = cpu_model.forward_backward(inputs.data(), targets.data(), B, at, loss_scale);

    for (const bool recompute : {false, true}) {
      CudaGpt<T> gpu(mc, B, recompute, 1, false, this->stream_);
      ASSERT_EQ(gpu.buffer_elements(), static_cast<int64_t>(cpu_model.params().size()));
      const std::vector<float> params(cpu_model.params().begin(), cpu_model.params().end());
      KL_CHECK_CUDA(cudaMemcpyAsync(gpu.master(), params.data(), params.size() * sizeof(float), cudaMemcpyHostToDevice,
                                    this->stream_));
      gpu.params_changed();
      gpu.zero_grads();
      gpu.forward_backward(inputs.data(), targets.data(), B, at, loss_scale);
      const double gpu_loss = gpu.take_loss_sum() / double(tokens);
      const std::vector<float> grads = this->download(gpu.grads(), gpu.buffer_elements());
      const std::string what = std::string(tied ? "tied" : "untied") + (recompute ? ", recompute" : "");
      EXPECT_NEAR(gpu_loss, cpu_loss, (std::is_same_v<T, float> ? 1e-5 : 2e-2) * cpu_loss) << what;
      const std::vector<float> want(cpu_model.grads().begin(), cpu_model.grads().end());
      if constexpr (std::is_same_v<T, float>) {
        expect_close(grads, want, 1e-6, 1e-3, "gradients, " + what);
      } else {  // bf16: the gradient's direction and size, not each element
        double dot = 0, gg = 0, ww = 0;
        for (size_t i = 0; i < want.size(); ++i) dot += double(grads[i]) * want[i], gg += double(grads[i]) * grads[i], ww += double(want[i]) * want[i];
        EXPECT_GT(dot / std::sqrt(gg * ww), 0.99) << "gradient cosine, " << what;
        EXPECT_NEAR(std::sqrt(gg), std::sqrt(ww), 0.05 * std::sqrt(ww)) << "gradient norm, " << what;
      }
      // Evaluation (no dropout), with a block skipped as the lesion study does.
      cpu_model.skip_block(1);
      gpu.skip_block(1);
      const double cpu_eval = cpu_model.evaluate(inputs.data(), targets.data(), B);
      gpu.evaluate(inputs.data(), targets.data(), B);
      EXPECT_NEAR(gpu.take_loss_sum() / double(tokens), cpu_eval, (std::is_same_v<T, float> ? 1e-5 : 2e-2) * cpu_eval)
          << what;
      cpu_model.skip_block(-1);
    }
  }
}

// --- the trainer: 20 steps, fp32, the same losses ---

std::string make_data() {
  namespace fs = std::filesystem;
  const fs::path dir = fs::temp_directory_path() / ("kl_gpu_data_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  std::ofstream out(dir / "text.txt");
  for (int i = 0; i < 400; ++i) out << "pack my box with five dozen liquor jugs " << i % 11 << ".\n";
  out.close();
  make_text_shards({(dir / "text.txt").string()}, dir.string(), 5, 256);
  return dir.string();
}

Config run_config(const std::string& device, std::vector<std::string> overrides) {
  static const std::string data = make_data();
  for (std::string o : {"--data.train=" + data + "/train.bin", "--data.val=" + data + "/val.bin",
                        std::string("--checkpoint.dir=none"), std::string("--model.layers=4"),
                        std::string("--model.d_model=32"), std::string("--model.heads=4"),
                        std::string("--model.seq_len=32"), std::string("--train.steps=20"),
                        std::string("--train.global_batch=8"), std::string("--train.micro_batch=4"),
                        std::string("--train.warmup=4"), std::string("--train.eval_every=10"),
                        std::string("--train.eval_batches=1"), std::string("--run.threads=2"),
                        "--run.device=" + device,
                        "--run.dir=" + (std::filesystem::temp_directory_path() /
                                        ("kl_gpu_run_" + std::to_string(::getpid()) + "_" + device))
                                           .string()}) {
    overrides.push_back(o);
  }
  return load_config("", overrides);
}

TEST_F(CudaTest, TwentyStepsOfLossesMatchTheCpuInFp32) {
  std::ostringstream log;
  SoloComm solo;
  const TrainSummary cpu = train(run_config("cpu", {}), solo, log);
  const TrainSummary gpu = train(run_config("cuda", {}), solo, log);
  ASSERT_EQ(gpu.losses.size(), 20u);
  for (size_t i = 0; i < cpu.losses.size(); ++i) {
    EXPECT_NEAR(gpu.losses[i], cpu.losses[i], 2e-4 * cpu.losses[i]) << "step " << i + 1;
  }
  EXPECT_NEAR(gpu.final_val_loss, cpu.final_val_loss, 2e-4 * cpu.final_val_loss);
  EXPECT_LT(gpu.losses.back(), gpu.losses.front());
}

TEST_F(CudaTest, Bf16TrainingFollowsFp32) {
  std::ostringstream log;
  SoloComm solo;
  const TrainSummary fp32 = train(run_config("cuda", {}), solo, log);
  const TrainSummary bf16 = train(run_config("cuda", {"--run.precision=bf16"}), solo, log);
  ASSERT_EQ(bf16.losses.size(), 20u);
  for (size_t i = 0; i < fp32.losses.size(); ++i) {
    EXPECT_NEAR(bf16.losses[i], fp32.losses[i], 3e-2 * fp32.losses[i]) << "step " << i + 1;
  }
}

}  // namespace
}  // namespace kl::cuda
