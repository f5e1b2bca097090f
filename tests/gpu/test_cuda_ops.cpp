// The CUDA kernels against the CPU ops: each on fresh random inputs, fp32 to a tight tolerance
// (bit for bit where both sides do the same fp32 arithmetic), bf16 within its rounding.
//
// Built only with the CUDA backend (ctest -L gpu). Without a usable GPU every test SKIPS with
// "no CUDA device: ..." (GTEST_SKIP), which CTest reports as skipped, not passed.
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include "src/cuda/device.h"
#include "src/kernels/cpu/ops.h"
#include "src/kernels/cuda/cublaslt.h"
#include "src/kernels/cuda/ops.h"
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

// The input is the fp32 stream (not rounded); the output, and the incoming gradient, are T (a
// branch's input) or fp32 (post-norm: the stream itself). Both sides compute in fp32 from the same
// values, so everything but a bf16 output takes the fp32 tolerance.
TYPED_TEST(CudaOps, LayerNormMatchesCpu) {
  using T = TypeParam;
  const int N = 37, C = 96;
  const auto x = random_values(int64_t{N} * C, 10, 2.0);
  const auto w = representable<T>(random_values(C, 12)), bias = representable<T>(random_values(C, 13));
  const auto dinp0 = random_values(int64_t{N} * C, 15);
  std::vector<float> out(x.size()), mean(N), rstd(N);
  cpu::layernorm_forward(out.data(), mean.data(), rstd.data(), x.data(), w.data(), bias.data(), N, C);

  auto d_x = this->template upload<float>(x);
  auto d_w = this->template upload<T>(w), d_bias = this->template upload<T>(bias);
  DeviceBuffer<float> d_mean(N), d_rstd(N);
  auto forward = [&]<class Out>(const std::string& what) {
    DeviceBuffer<Out> d_out(int64_t{N} * C);
    layernorm_forward<T, Out>(d_out.data(), d_mean.data(), d_rstd.data(), d_x.data(), d_w.data(), d_bias.data(), N,
                              C, this->stream_);
    expect_close<Out>(this->download(d_out), out, what);
    expect_close(this->download(d_mean), mean, 1e-5, 1e-5, what + ": mean");
    expect_close(this->download(d_rstd), rstd, 1e-5, 1e-4, what + ": rstd");
  };
  forward.template operator()<T>("layernorm out");
  if constexpr (!std::is_same_v<T, float>) forward.template operator()<float>("layernorm out in fp32");

  auto backward = [&]<class DOut>(uint64_t id, const std::string& what) {
    const auto dout = representable<DOut>(random_values(int64_t{N} * C, id));
    std::vector<float> dinp = dinp0, dw(C, 0.5f), db(C, -0.5f);  // all three accumulate
    cpu::layernorm_backward(dinp.data(), dw.data(), db.data(), dout.data(), x.data(), w.data(), mean.data(),
                            rstd.data(), N, C);
    auto d_dout = this->template upload<DOut>(dout);
    auto d_dinp = this->template upload<float>(dinp0);
    auto d_dw = this->template upload<float>(std::vector<float>(C, 0.5f));
    auto d_db = this->template upload<float>(std::vector<float>(C, -0.5f));
    layernorm_backward<T, DOut>(d_dinp.data(), d_dw.data(), d_db.data(), d_dout.data(), d_x.data(), d_w.data(),
                                d_mean.data(), d_rstd.data(), N, C, this->stream_);
    expect_close<float>(this->download(d_dinp), dinp, what + ": dinp (accumulated)");
    expect_close<float>(this->download(d_dw), dw, what + ": dweight");
    expect_close<float>(this->download(d_db), db, what + ": dbias");
    // The halves apart. The parameter half without a bias gradient: a null dbias is not written.
    auto d_dw2 = this->template upload<float>(std::vector<float>(C, 0.5f));
    layernorm_backward<T, DOut>(nullptr, d_dw2.data(), nullptr, d_dout.data(), d_x.data(), d_w.data(),
                                d_mean.data(), d_rstd.data(), N, C, this->stream_);
    expect_close<float>(this->download(d_dw2), dw, what + ": dweight without dbias");
    // The input half: dweight null, and dbias is then left alone.
    auto d_dinp2 = this->template upload<float>(dinp0);
    auto d_db2 = this->template upload<float>(std::vector<float>(C, -0.5f));
    layernorm_backward<T, DOut>(d_dinp2.data(), nullptr, d_db2.data(), d_dout.data(), d_x.data(), d_w.data(),
                                d_mean.data(), d_rstd.data(), N, C, this->stream_);
    expect_close<float>(this->download(d_dinp2), dinp, what + ": dinp alone");
    EXPECT_EQ(this->download(d_db2), std::vector<float>(C, -0.5f)) << what << ": dbias without dweight";
  };
  backward.template operator()<T>(14, "layernorm backward");
  if constexpr (!std::is_same_v<T, float>) backward.template operator()<float>(16, "layernorm backward from fp32");
}

TYPED_TEST(CudaOps, CausalAttentionMatchesCpu) {
  using T = TypeParam;
  for (const auto [B, T_, C, NH] : {std::array{2, 16, 32, 4}, std::array{3, 70, 48, 3}}) {
    const int64_t N = int64_t{B} * T_;
    const auto qkv = representable<T>(random_values(N * 3 * C, 20 + T_));
    const auto dout = representable<T>(random_values(N * C, 21 + T_));
    const int64_t square = int64_t{B} * NH * T_ * T_;
    std::vector<float> out(static_cast<size_t>(N * C)), lse(static_cast<size_t>(int64_t{B} * NH * T_)),
        dqkv(static_cast<size_t>(N * 3 * C));
    cpu::attention_forward(out.data(), lse.data(), qkv.data(), B, T_, C, NH);
    cpu::attention_backward(dqkv.data(), dout.data(), qkv.data(), out.data(), lse.data(), B, T_, C, NH);
    // The CPU keeps only each row's log-sum-exp: the softmax the GPU keeps is exp(S - lse) below
    // the diagonal.
    std::vector<float> probs(static_cast<size_t>(square), 0.0f);
    const int hs = C / NH;
    for (int b = 0; b < B; ++b) {
      for (int h = 0; h < NH; ++h) {
        for (int i = 0; i < T_; ++i) {
          for (int j = 0; j <= i; ++j) {
            double s = 0;
            for (int d = 0; d < hs; ++d) {
              s += double(qkv[size_t((int64_t{b} * T_ + i) * 3 * C + h * hs + d)]) *
                   double(qkv[size_t((int64_t{b} * T_ + j) * 3 * C + C + h * hs + d)]);
            }
            const int64_t row = (int64_t{b} * NH + h) * T_ + i;
            probs[size_t(row * T_ + j)] = float(std::exp(s / std::sqrt(double(hs)) - lse[size_t(row)]));
          }
        }
      }
    }

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
  // The fc bias's gradient summed in GELU's backward pass, over n = 50 rows x 100 columns, in place
  // (dpre aliases dout, as in the model walk): dpre as above, dbias the column sums (onto 1) of the
  // dpre it stored.
  const int rows = 50, cols = 100;
  auto d_d = this->template upload<T>(dy);
  auto d_db = this->template upload<float>(std::vector<float>(cols, 1.0f));
  gelu_backward_bias<T>(d_d.data(), d_db.data(), d_x.data(), d_d.data(), rows, cols, this->stream_);
  const auto stored = this->download(d_d);
  expect_close<T>(stored, std::vector<float>(dxd.begin(), dxd.end()), "gelu backward with the bias sum");
  std::vector<double> sums(cols, 1.0);
  for (int r = 0; r < rows; ++r) {
    for (int c = 0; c < cols; ++c) sums[c] += stored[static_cast<size_t>(r) * cols + c];
  }
  expect_close(this->download(d_db), std::vector<float>(sums.begin(), sums.end()), 1e-5, 1e-5, "gelu bias sum");
  DeviceBuffer<T> d_alone(n);  // no bias gradient: the plain backward pass
  gelu_backward_bias<T>(d_alone.data(), nullptr, d_x.data(), d_dy.data(), rows, cols, this->stream_);
  expect_close(this->download(d_alone), stored, 0.0, 0.0, "gelu backward without the bias sum");
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
  DeviceBuffer<float> d_out(int64_t{B} * T_ * C);  // the fp32 stream, whatever T
  embedding_forward<T>(d_out.data(), d_tokens.data(), d_wte.data(), d_wpe.data(), B, T_, C, this->stream_);
  embedding_backward(d_dwte.data(), d_dwpe.data(), d_dout.data(), d_tokens.data(), B, T_, C, this->stream_);
  // One fp32 addition of the same two values on both sides: exact.
  expect_close(this->download(d_out), out, 0.0, 0.0, "embedding");
  // fp32 with the CPU's order of additions: exact.
  expect_close(this->download(d_dwte), dwte, 0.0, 0.0, "token embedding gradient");
  expect_close(this->download(d_dwpe), dwpe, 0.0, 0.0, "position embedding gradient");
}

// Rows of Vp = 320 columns, the vocabulary their first 300 (model.vocab_padded).
TYPED_TEST(CudaOps, SoftmaxCrossEntropyMatchesCpu) {
  using T = TypeParam;
  const int N = 33, V = 300, Vp = 320;
  const auto logits = representable<T>(random_values(int64_t{N} * Vp, 50, 3.0));
  const auto targets = random_tokens(N, V, 51);
  const float dloss = 1.0f / N;
  std::vector<float> losses(N), probs(logits.size());
  cpu::softmax_xent_forward(losses.data(), probs.data(), logits.data(), targets.data(), N, V, Vp);
  cpu::softmax_xent_backward(probs.data(), probs.data(), targets.data(), dloss, N, V, Vp);
  auto d_logits = this->template upload<T>(logits);
  auto d_targets = this->upload_tokens(targets);
  DeviceBuffer<float> d_losses(N), d_lse(N);
  DeviceBuffer<double> d_sum(1);
  d_sum.zero(this->stream_);
  softmax_xent_forward<T>(d_losses.data(), d_lse.data(), d_logits.data(), d_targets.data(), N, V, Vp, this->stream_);
  loss_sum_accumulate(d_sum.data(), d_losses.data(), N, this->stream_);
  softmax_xent_backward<T>(d_logits.data(), d_logits.data(), d_lse.data(), d_targets.data(), dloss, N, V,
                           Vp, this->stream_);
  expect_close(this->download(d_losses), losses, 1e-5, 1e-5, "cross-entropy losses");
  expect_close<T>(this->download(d_logits), probs, "dlogits", 0.1);
  double sum = 0.0, want = 0.0;
  d_sum.download(std::span<double>(&sum, 1), this->stream_);
  KL_CHECK_CUDA(cudaStreamSynchronize(this->stream_));
  for (float l : losses) want += l;
  EXPECT_NEAR(sum, want, 1e-5 * want);
}

// The masks are the CPU's; the scale is the same fp32 product, which bf16 then rounds once (so the
// bf16 results equal the CPU's fp32 ones rounded: exact comparisons throughout).
TEST_F(CudaTest, DropoutMasksEqualTheCpuBitForBit) {
  const int B = 3;
  const int64_t row = 4 * 37 + 3;  // not a multiple of 4: the last group is partial
  const auto x = random_values(B * row, 60), xh = representable<bf16>(x);
  const cpu::DropoutKey key{1234, 7, 5, 9};
  for (double p : {0.0, 0.1, 0.5}) {
    std::vector<float> want(x.size()), want_h(x.size());
    cpu::dropout_forward(want.data(), x.data(), B, row, p, key);
    cpu::dropout_forward(want_h.data(), xh.data(), B, row, p, key);
    const auto dropped = std::count(want.begin(), want.end(), 0.0f);
    EXPECT_NEAR(double(dropped) / double(want.size()), p, 0.08) << "the CPU's mask, p = " << p;
    auto d_x = upload<float>(x);
    auto d_xh = upload<bf16>(xh);
    DeviceBuffer<float> d_y(B * row);
    dropout<float, float>(d_y.data(), d_x.data(), B, row, p, key, stream_);
    EXPECT_EQ(download(d_y), want) << "p = " << p;
    DeviceBuffer<bf16> d_h(B * row);  // fp32 gradient -> bf16 branch gradient: the same mask
    dropout<float, bf16>(d_h.data(), d_x.data(), B, row, p, key, stream_);
    EXPECT_EQ(download(d_h), representable<bf16>(want)) << "fp32 into bf16, p = " << p;
    DeviceBuffer<bf16> d_hh(B * row);  // a bf16 branch's output
    dropout<bf16, bf16>(d_hh.data(), d_xh.data(), B, row, p, key, stream_);
    EXPECT_EQ(download(d_hh), representable<bf16>(want_h)) << "bf16, p = " << p;
    dropout<float, float>(d_x.data(), d_x.data(), B, row, p, key, stream_);  // in place
    EXPECT_EQ(download(d_x), want) << "in place, p = " << p;
  }
}

// One draw per sample keeps or drops its whole row; 16 rows at p = 0.5 see both.
TEST_F(CudaTest, DropPathEqualsTheCpuBitForBit) {
  const int B = 16;
  const int64_t row = 4 * 37 + 3;
  const auto x = random_values(B * row, 61), xh = representable<bf16>(x);
  const cpu::DropoutKey key{1234, 7, 5, 0x80000003u};
  for (double p : {0.0, 0.2, 0.5}) {
    std::vector<float> want = x, want_h = xh;
    cpu::drop_path(want.data(), B, row, p, key);
    cpu::drop_path(want_h.data(), B, row, p, key);
    int dropped_rows = 0;
    for (int b = 0; b < B; ++b) dropped_rows += want[static_cast<size_t>(b * row)] == 0.0f;
    if (p == 0.5) {
      EXPECT_GT(dropped_rows, 0);
      EXPECT_LT(dropped_rows, B);
    }
    auto d_x = upload<float>(x);
    drop_path<float>(d_x.data(), B, row, p, key, stream_);
    EXPECT_EQ(download(d_x), want) << "p = " << p;
    auto d_xh = upload<bf16>(xh);
    drop_path<bf16>(d_xh.data(), B, row, p, key, stream_);
    EXPECT_EQ(download(d_xh), representable<bf16>(want_h)) << "bf16, p = " << p;
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

  // The squares summed in double, in another fixed order than the CPU's: equal to rounding.
  DeviceBuffer<double> d_norm(1), partials(kSumSquaresPartials);
  auto norm_of = [&]<class T>(const DeviceBuffer<T>& x) {
    sum_squares<T>(d_norm.data(), x.data(), n, partials.data(), stream_);
    double norm = 0.0;
    d_norm.download(std::span<double>(&norm, 1), stream_);
    KL_CHECK_CUDA(cudaStreamSynchronize(stream_));
    return norm;
  };
  const double want = cpu::sum_squares(grad.data(), n);
  EXPECT_NEAR(norm_of(d_grad), want, 1e-12 * want);
  const auto grad_h = representable<bf16>(grad);
  const double want_h = cpu::sum_squares(grad_h.data(), n);
  EXPECT_NE(want_h, want);  // the bf16 values differ, so the kernel must read them as bf16
  EXPECT_NEAR(norm_of(upload<bf16>(grad_h)), want_h, 1e-12 * want_h);
  scale(d_grad.data(), n, 0.25f, stream_);
  cpu::scale(grad.data(), n, 0.25f);
  EXPECT_EQ(download(d_grad), grad);
}

// Every direction between fp32 and bf16; read back raw (the fixture's upload and download convert).
TEST_F(CudaTest, ConvertRoundsToNearestEvenAndCopies) {
  const int64_t n = 1001;
  auto x = random_values(n, 90, 10.0);
  x[0] = 1.0f + 0x1.0p-8f;      // halfway between two bf16 values: to the even one, 1
  x[1] = 1.0f + 3 * 0x1.0p-8f;  // halfway again: to 1 + 2^-6
  std::vector<bf16> want_h(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) want_h[static_cast<size_t>(i)] = __float2bfloat16(x[static_cast<size_t>(i)]);
  ASSERT_EQ(__bfloat162float(want_h[0]), 1.0f);
  ASSERT_EQ(__bfloat162float(want_h[1]), 1.0f + 0x1.0p-6f);

  DeviceBuffer<float> d_x(n), d_f(n), d_back(n);
  d_x.upload(x, stream_);
  DeviceBuffer<bf16> d_h(n), d_hh(n);
  convert<float, float>(d_f.data(), d_x.data(), n, stream_);
  convert<float, bf16>(d_h.data(), d_x.data(), n, stream_);
  convert<bf16, bf16>(d_hh.data(), d_h.data(), n, stream_);
  convert<bf16, float>(d_back.data(), d_hh.data(), n, stream_);
  std::vector<float> f(static_cast<size_t>(n)), back(static_cast<size_t>(n));
  std::vector<bf16> h(static_cast<size_t>(n)), hh(static_cast<size_t>(n));
  d_f.download(f, stream_);
  d_h.download(h, stream_);
  d_hh.download(hh, stream_);
  d_back.download(back, stream_);
  KL_CHECK_CUDA(cudaStreamSynchronize(stream_));
  EXPECT_EQ(f, x) << "fp32 -> fp32";
  auto same_bits = [](const std::vector<bf16>& a, const std::vector<bf16>& b) {
    return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](bf16 p, bf16 q) {
             return __bfloat16_as_ushort(p) == __bfloat16_as_ushort(q);
           });
  };
  EXPECT_TRUE(same_bits(h, want_h)) << "fp32 -> bf16";
  EXPECT_TRUE(same_bits(hh, want_h)) << "bf16 -> bf16";
  EXPECT_EQ(back, representable<bf16>(x)) << "bf16 -> fp32";
}

// The joins of a branch with the stream (residual.cu). The stream u and its gradient are fp32, the
// branch, its kept copy, the scales and the gate T; both sides compute in fp32 from the same values,
// so fp32 outputs take the fp32 tolerance whatever T, and T outputs round once.
TYPED_TEST(CudaOps, ResidualJoinsMatchCpu) {
  using T = TypeParam;
  const int N = 37, C = 96;
  const int64_t n = int64_t{N} * C;
  const auto u = random_values(n, 100), dres = random_values(n, 101);
  const auto branch = representable<T>(random_values(n, 102)), kept = representable<T>(random_values(n, 103));
  auto d_u = this->template upload<float>(u), d_dres = this->template upload<float>(dres);
  auto d_branch = this->template upload<T>(branch), d_kept = this->template upload<T>(kept);

  // DeepNorm's alpha u + branch, also in place (out aliasing a).
  const float alpha = 2.2133638f;
  std::vector<float> sum(static_cast<size_t>(n));
  cpu::add_scaled(sum.data(), alpha, u.data(), branch.data(), n);
  DeviceBuffer<float> d_sum(n);
  add_scaled<T>(d_sum.data(), alpha, d_u.data(), d_branch.data(), n, this->stream_);
  expect_close<float>(this->download(d_sum), sum, "add_scaled");
  auto d_alias = this->template upload<float>(u);
  add_scaled<T>(d_alias.data(), alpha, d_alias.data(), d_branch.data(), n, this->stream_);
  expect_close<float>(this->download(d_alias), sum, "add_scaled in place");

  for (const int scale_size : {1, C}) {  // rezero, layerscale
    const std::string which = scale_size == 1 ? " (one scale)" : " (per channel)";
    const auto scale = representable<T>(random_values(scale_size, 104 + scale_size));
    auto d_scale = this->template upload<T>(scale);

    std::vector<float> v(static_cast<size_t>(n));
    cpu::scaled_join(v.data(), u.data(), scale.data(), scale_size, branch.data(), n, C);
    DeviceBuffer<float> d_v(n);
    scaled_join<T>(d_v.data(), d_u.data(), d_scale.data(), scale_size, d_branch.data(), n, C, this->stream_);
    expect_close<float>(this->download(d_v), v, "scaled_join" + which);

    std::vector<float> dbranch(static_cast<size_t>(n));
    cpu::scale_by(dbranch.data(), scale.data(), scale_size, dres.data(), n, C);
    DeviceBuffer<T> d_dbranch(n);
    scale_by<T>(d_dbranch.data(), d_scale.data(), scale_size, d_dres.data(), n, C, this->stream_);
    expect_close<T>(this->download(d_dbranch), dbranch, "scale_by" + which);

    // Accumulates onto the gradient; the scratch starts as garbage, which the op must clear.
    std::vector<float> grad = random_values(scale_size, 106), temp(static_cast<size_t>(C), 1e30f);
    auto d_grad = this->template upload<float>(grad), d_temp = this->template upload<float>(temp);
    cpu::scale_grad(grad.data(), scale_size, dres.data(), kept.data(), N, C, temp.data());
    scale_grad<T>(d_grad.data(), scale_size, d_dres.data(), d_kept.data(), N, C, d_temp.data(), this->stream_);
    const auto got = this->download(d_grad);
    expect_close<float>(got, grad, "scale_grad" + which);
    // Rows in a fixed order: the same bits again.
    auto d_grad2 = this->template upload<float>(random_values(scale_size, 106));
    scale_grad<T>(d_grad2.data(), scale_size, d_dres.data(), d_kept.data(), N, C, d_temp.data(), this->stream_);
    EXPECT_EQ(this->download(d_grad2), got) << "scale_grad" << which << " twice";
  }

  // Highway: the gate (T) holds z and becomes sigmoid(z); v mixes with the gate as stored, so that
  // the backward pass reads the g the forward pass used.
  const auto z = representable<T>(random_values(n, 107, 3.0));
  std::vector<float> gate = z, v(static_cast<size_t>(n));
  cpu::highway_join(gate.data(), v.data(), branch.data(), u.data(), n);
  auto d_gate = this->template upload<T>(z);
  DeviceBuffer<float> d_v(n);
  highway_join<T>(d_gate.data(), d_v.data(), d_branch.data(), d_u.data(), n, this->stream_);
  const auto g = this->download(d_gate);
  expect_close<T>(g, gate, "highway gate");
  std::vector<float> v_from_g(static_cast<size_t>(n));
  for (size_t i = 0; i < v_from_g.size(); ++i) v_from_g[i] = g[i] * branch[i] + (1.0f - g[i]) * u[i];
  expect_close<float>(this->download(d_v), v_from_g, "highway v from the stored gate");
  expect_close<T>(this->download(d_v), v, "highway v");

  // Its backward from the same stored gate on both sides.
  const auto gate_t = representable<T>(gate);
  std::vector<float> dbranch(static_cast<size_t>(n)), dz(static_cast<size_t>(n)), dres_cpu = dres;
  cpu::highway_join_backward(dbranch.data(), dz.data(), dres_cpu.data(), gate_t.data(), kept.data(), u.data(), n);
  auto d_gate_t = this->template upload<T>(gate_t);
  auto d_dres_io = this->template upload<float>(dres);
  DeviceBuffer<T> d_dbranch(n), d_dz(n);
  highway_join_backward<T>(d_dbranch.data(), d_dz.data(), d_dres_io.data(), d_gate_t.data(), d_kept.data(), d_u.data(),
                           n, this->stream_);
  expect_close<T>(this->download(d_dbranch), dbranch, "highway dbranch");
  expect_close<T>(this->download(d_dz), dz, "highway dz");
  expect_close<float>(this->download(d_dres_io), dres_cpu, "highway dres");
}
}  // namespace
}  // namespace kl::cuda
