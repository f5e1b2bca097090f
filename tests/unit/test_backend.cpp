// The one model walk on every backend, against the CPU in double precision: one training step
// (forward, backward, every residual variant, stochastic depth, CompleteP's branch multiplier,
// recomputation) gives the same loss and parameter gradients. The test body is written once and instantiated per backend: the CPU in
// fp32 here, and, in a build with the CUDA backend, the GPU in fp32 and bf16 (skipped, with the
// reason, where no GPU is present).
#include <gtest/gtest.h>

#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "models/backend.h"
#include "src/pipeline/stage.h"
#ifdef KL_HAVE_CUDA
#include "src/cuda/backend.h"
#endif

namespace kl::pipeline {
namespace {

// How to make a backend, and how close it must come to the double-precision reference.
template <class Backend>
struct Traits;

template <>
struct Traits<CpuBackend<float>> {
  static std::unique_ptr<CpuBackend<float>> make(std::string*) { return std::make_unique<CpuBackend<float>>(); }
  static constexpr double kLossRel = 1e-5, kGradCosine = 1 - 1e-6, kGradNormRel = 1e-4;
};

#ifdef KL_HAVE_CUDA
template <class T>
struct CudaTraits {
  static std::unique_ptr<cuda::CudaBackend<T>> make(std::string* why) {
    if (!cuda::device_available(why)) return nullptr;
    return std::make_unique<cuda::CudaBackend<T>>(cuda::select_device(), /*tf32=*/false);
  }
};
template <>
struct Traits<cuda::CudaBackend<float>> : CudaTraits<float> {
  static constexpr double kLossRel = 1e-5, kGradCosine = 1 - 1e-6, kGradNormRel = 1e-4;
};
// bf16 products (8 bits of mantissa) on an fp32 stream: close, not equal.
template <>
struct Traits<cuda::CudaBackend<cuda::bf16>> : CudaTraits<cuda::bf16> {
  static constexpr double kLossRel = 2e-2, kGradCosine = 0.99, kGradNormRel = 5e-2;
};
#endif

ModelConfig small_model(const std::string& variant) {
  ModelConfig m;
  m.layers = 3;
  m.d_model = 16;
  m.heads = 2;
  m.d_ff = 24;
  m.seq_len = 8;
  m.vocab = 13;
  m.dropout = 0.1;
  const bool skipping = variant == "stochastic_depth" || variant == "completep";
  m.residual = skipping ? Residual::kPreNorm : *choice_named<Residual>(variant);
  if (skipping) m.stochastic_depth = 0.5;  // dropped blocks skipped
  if (variant == "completep") {            // and every branch x 1/3, in the drop-path kernel
    m.depth_scaling = DepthScaling::kCompleteP;
    m.base_layers = 1;
  }
  return m;
}

std::vector<int32_t> tokens(int n, int vocab, int salt) {
  std::vector<int32_t> t(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) t[static_cast<size_t>(i)] = (i * 5 + salt * 7 + i * i) % vocab;
  return t;
}

StageLayout whole(const ModelConfig& m) {
  StageLayout layout;
  layout.ranges = {{0, m.layers}};
  return layout;
}

// One training micro-batch on `stage` from `params` (host, fp64): the loss and the gradients.
template <class Backend>
std::pair<double, std::vector<double>> one_step(Stage<Backend>& stage, const std::vector<double>& params,
                                                const std::vector<int32_t>& inputs,
                                                const std::vector<int32_t>& targets, int B) {
  using S = typename Backend::Acc;
  const std::vector<S> host(params.begin(), params.end());
  stage.backend().upload(stage.params().data(), host.data(), static_cast<int64_t>(host.size()));
  stage.params_changed();
  stage.zero_grads();
  const BatchPosition position{5, 2, 6};
  const double tokens_in_batch = double(B) * stage.config().seq_len;
  stage.forward(0, 0, B, nullptr, inputs.data(), targets.data(), position, true);
  const double loss = stage.take_loss_sum() / tokens_in_batch;
  stage.backward(0, 0, B, BackwardPart::kAll, nullptr, position, 1.0 / tokens_in_batch, {});
  std::vector<S> grads(stage.grads().size());
  stage.backend().download(grads.data(), static_cast<const S*>(stage.grads().data()),
                           static_cast<int64_t>(grads.size()));
  return {loss, std::vector<double>(grads.begin(), grads.end())};
}

template <class Backend>
class BackendStep : public ::testing::Test {};

#ifdef KL_HAVE_CUDA
using Backends = ::testing::Types<CpuBackend<float>, cuda::CudaBackend<float>, cuda::CudaBackend<cuda::bf16>>;
#else
using Backends = ::testing::Types<CpuBackend<float>>;
#endif
TYPED_TEST_SUITE(BackendStep, Backends);

TYPED_TEST(BackendStep, EveryVariantMatchesTheDoubleReference) {
  using Backend = TypeParam;
  std::string why;
  std::unique_ptr<Backend> backend = Traits<Backend>::make(&why);
  if (!backend) GTEST_SKIP() << "no CUDA device: " << why;
  const int B = 2;
  for (const char* variant :
       {"prenorm", "postnorm", "plain", "rezero", "layerscale", "deepnorm", "highway", "stochastic_depth",
        "completep"}) {
    for (const bool recompute : {false, true}) {
      SCOPED_TRACE(std::string(variant) + (recompute ? ", recompute" : ""));
      const ModelConfig config = small_model(variant);
      CpuBackend<double> cpu;
      Stage<CpuBackend<double>> reference(cpu, config, whole(config), B, 1, false, false, 1);
      reference.init(17);
      // Perturbed so that every parameter (rezero's zero scales too) has a gradient; rounded to
      // fp32 so that both sides start from the same values.
      std::vector<double> params(reference.params().begin(), reference.params().end());
      for (size_t i = 0; i < params.size(); ++i) params[i] = float(params[i] + 0.05 * std::sin(double(i)));
      const auto inputs = tokens(B * config.seq_len, config.vocab, 1);
      const auto targets = tokens(B * config.seq_len, config.vocab, 2);
      const auto [want_loss, want] = one_step(reference, params, inputs, targets, B);

      Stage<Backend> stage(*backend, config, whole(config), B, 1, recompute, false, 1);
      const auto [loss, got] = one_step(stage, params, inputs, targets, B);
      EXPECT_NEAR(loss, want_loss, Traits<Backend>::kLossRel * std::abs(want_loss));
      ASSERT_EQ(got.size(), want.size());
      double dot = 0, got_sq = 0, want_sq = 0;
      for (size_t i = 0; i < got.size(); ++i) {
        ASSERT_TRUE(std::isfinite(got[i])) << "gradient " << i;
        dot += got[i] * want[i];
        got_sq += got[i] * got[i];
        want_sq += want[i] * want[i];
      }
      ASSERT_GT(want_sq, 0.0);
      EXPECT_GT(dot / std::sqrt(got_sq * want_sq), Traits<Backend>::kGradCosine);
      EXPECT_NEAR(std::sqrt(got_sq), std::sqrt(want_sq), Traits<Backend>::kGradNormRel * std::sqrt(want_sq));
      // Per tensor too, so that a wrong small tensor (a LayerNorm bias) cannot hide in the total.
      for (const ParamSpec& spec : reference.table().specs()) {
        double diff_sq = 0, norm_sq = 0;
        for (int64_t i = spec.offset; i < spec.offset + spec.numel(); ++i) {
          const double d = got[static_cast<size_t>(i)] - want[static_cast<size_t>(i)];
          diff_sq += d * d;
          norm_sq += want[static_cast<size_t>(i)] * want[static_cast<size_t>(i)];
        }
        EXPECT_LE(std::sqrt(diff_sq), 10 * Traits<Backend>::kGradNormRel * std::sqrt(norm_sq) + 1e-7) << spec.name;
      }
    }
  }
}

}  // namespace
}  // namespace kl::pipeline
