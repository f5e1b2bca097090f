// kilolayer against an independent PyTorch implementation (tools/torch_reference.py, float64):
// logits, loss and every parameter gradient of one batch, then the losses and final weights of
// ten AdamW steps with clipping and the learning-rate schedule. Run in double (to near machine
// precision) and in float (the training path, at fp32 tolerances). Each also with a padded vocabulary
// (model.vocab_padded = vocab + 16): the reference's tensors are the true rows, the padding must stay
// zero with a zero gradient, and everything else must match as unpadded. Both again for Depth-muP
// (model.depth_scaling = depth_mup, L0 from the fixture): PyTorch multiplies each branch and sets
// the blocks' parameter groups' learning rate and epsilon itself.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include "tests/unit/whole_model.h"
#include "src/train/optimizer.h"

namespace kl {
namespace {

struct Fixture {
  std::map<std::string, std::vector<double>> tensors;

  const std::vector<double>& at(const std::string& name) const {
    auto it = tensors.find(name);
    if (it == tensors.end()) throw std::runtime_error("fixture has no tensor " + name);
    return it->second;
  }
  double scalar(const std::string& name) const { return at(name).at(0); }
  std::vector<int32_t> ints(const std::string& name) const {
    const auto& v = at(name);
    return std::vector<int32_t>(v.begin(), v.end());
  }
};

const Fixture& fixture() {
  static const Fixture loaded = [] {
    // The build tree's fixture (ctest writes it first), unless KL_TORCH_FIXTURE names another.
    const char* path = std::getenv("KL_TORCH_FIXTURE");
    if (!path) path = KL_TORCH_FIXTURE_PATH;
    std::ifstream in(path, std::ios::binary);
    if (!in) throw std::runtime_error(std::string("cannot open fixture ") + path);
    auto read = [&in](void* p, size_t n) {
      if (!in.read(static_cast<char*>(p), static_cast<std::streamsize>(n))) {
        throw std::runtime_error("fixture is truncated");
      }
    };
    char magic[4];
    read(magic, 4);
    if (std::memcmp(magic, "KLFX", 4) != 0) throw std::runtime_error("not a fixture file");
    uint32_t count = 0;
    read(&count, 4);
    Fixture f;
    for (uint32_t i = 0; i < count; ++i) {
      uint32_t length = 0, ndim = 0;
      read(&length, 4);
      std::string name(length, '\0');
      read(name.data(), length);
      read(&ndim, 4);
      int64_t numel = 1;
      for (uint32_t d = 0; d < ndim; ++d) {
        int64_t dim = 0;
        read(&dim, 8);
        numel *= dim;
      }
      std::vector<double> data(static_cast<size_t>(numel));
      read(data.data(), data.size() * 8);
      f.tensors.emplace(std::move(name), std::move(data));
    }
    return f;
  }();
  return loaded;
}

constexpr int kPadding[] = {0, 16};  // rows of padding past the fixture's vocabulary

ModelConfig fixture_model(int padding = 0) {
  const Fixture& f = fixture();
  ModelConfig m;
  m.layers = static_cast<int>(f.scalar("meta.layers"));
  m.d_model = static_cast<int>(f.scalar("meta.d_model"));
  m.heads = static_cast<int>(f.scalar("meta.heads"));
  m.d_ff = static_cast<int>(f.scalar("meta.d_ff"));
  m.seq_len = static_cast<int>(f.scalar("meta.seq_len"));
  m.vocab = static_cast<int>(f.scalar("meta.vocab"));
  m.vocab_padded = padding ? m.vocab + padding : 0;
  m.dropout = 0.0;  // PyTorch's dropout RNG cannot be matched; dropout has its own tests
  m.tie_embeddings = true;
  return m;
}

TrainConfig fixture_training() {
  const Fixture& f = fixture();
  TrainConfig t;
  t.steps = static_cast<int64_t>(f.scalar("train.steps"));
  t.lr = f.scalar("train.lr");
  t.min_lr = f.scalar("train.min_lr");
  t.warmup = static_cast<int64_t>(f.scalar("train.warmup"));
  t.weight_decay = f.scalar("train.weight_decay");
  t.beta1 = f.scalar("train.beta1");
  t.beta2 = f.scalar("train.beta2");
  t.eps = f.scalar("train.eps");
  t.clip = f.scalar("train.clip");
  return t;
}

// The elements of `spec` that the reference has: all, or the true vocabulary's rows of a padded one.
int64_t reference_numel(const ParamSpec& spec) {
  return spec.vocab_rows >= 0 ? spec.vocab_rows * spec.shape[1] : spec.numel();
}

// The reference's weights; a padded tensor's padding rows zero, as init_parameters leaves them.
template <class T>
void load_weights(test::WholeModel<T>& model, const std::string& prefix) {
  for (const ParamSpec& spec : model.table().specs()) {
    const auto& values = fixture().at(prefix + spec.name);
    ASSERT_EQ(static_cast<int64_t>(values.size()), reference_numel(spec)) << spec.name;
    for (int64_t i = 0; i < spec.numel(); ++i) {
      const size_t at = static_cast<size_t>(i);
      model.params()[static_cast<size_t>(spec.offset + i)] = at < values.size() ? T(values[at]) : T(0);
    }
  }
}

// The padding rows of `buffer` (parameters or gradients in the table's layout) are exactly 0.
template <class T>
void expect_zero_padding(const std::string& what, const ParamTable& table, std::span<const T> buffer) {
  for (const ParamSpec& spec : table.specs()) {
    for (int64_t i = reference_numel(spec); i < spec.numel(); ++i) {
      ASSERT_EQ(buffer[static_cast<size_t>(spec.offset + i)], T(0)) << what << " " << spec.name << "[" << i << "]";
    }
  }
}

// |got - ref| <= abs + rel |ref| for every element; reports the worst.
template <class G>
void expect_close(const std::string& what, const G* got, const std::vector<double>& ref, double abs,
                  double rel) {
  double worst = 0;
  size_t worst_at = 0;
  int failures = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    const double excess = std::abs(double(got[i]) - ref[i]) - (abs + rel * std::abs(ref[i]));
    if (excess > 0) ++failures;
    if (excess > worst || i == 0) {
      worst = excess;
      worst_at = i;
    }
  }
  EXPECT_EQ(failures, 0) << what << ": " << failures << " of " << ref.size()
                         << " elements out of tolerance; worst at " << worst_at << ": "
                         << double(got[worst_at]) << " vs " << ref[worst_at];
}

template <class T>
struct Tolerance;
template <>
struct Tolerance<double> {
  static constexpr double abs = 1e-10, rel = 1e-8, loss = 1e-10;
};
template <>
struct Tolerance<float> {
  static constexpr double abs = 2e-5, rel = 2e-3, loss = 2e-5;
};

template <class T>
class TorchReference : public ::testing::Test {};
using Precisions = ::testing::Types<double, float>;
TYPED_TEST_SUITE(TorchReference, Precisions);

// The fixture's model as kilolayer's config: standard (prefix "") or Depth-muP ("dmup/"), the
// vocabulary padded by `padding` rows.
ModelConfig fixture_model(const std::string& prefix, int padding) {
  ModelConfig m = fixture_model(padding);
  if (prefix == "dmup/") {
    m.depth_scaling = DepthScaling::kDepthMuP;
    m.base_layers = static_cast<int>(fixture().scalar("dmup.base_layers"));
  }
  return m;
}

template <class T>
void check_forward_loss_and_every_gradient(const std::string& prefix, int padding) {
  const ModelConfig config = fixture_model(prefix, padding);
  const int B = static_cast<int>(fixture().scalar("meta.batch"));
  test::WholeModel<T> model(config, B, false);
  load_weights(model, "param/");
  const auto inputs = fixture().ints("inputs");
  const auto targets = fixture().ints("targets");
  model.zero_grads();
  const double tokens = double(B) * config.seq_len;
  StreamStats stats;  // the diagnostics' measurements, against PyTorch's x.grad.norm() per block
  stats.reset(config.layers);
  model.collect(&stats);
  const double loss = model.forward_backward(inputs.data(), targets.data(), B, {}, 1.0 / tokens);
  model.collect(nullptr);
  std::vector<double> stream_grad_norm;
  for (double sq : stats.grad_sq) stream_grad_norm.push_back(std::sqrt(sq));
  stream_grad_norm.push_back(std::sqrt(stats.final_grad_sq));
  expect_close(prefix + "diagnostics' |dL/dx_l|", stream_grad_norm.data(), fixture().at(prefix + "stream_grad_norm"),
               Tolerance<T>::abs, Tolerance<T>::rel);
  const auto logits = model.logits();  // the true vocabulary's columns
  ASSERT_EQ(logits.size(), fixture().at(prefix + "logits").size());
  expect_close(prefix + "logits", logits.data(), fixture().at(prefix + "logits"), Tolerance<T>::abs, Tolerance<T>::rel);
  EXPECT_NEAR(loss, fixture().scalar(prefix + "loss"), Tolerance<T>::loss);
  for (const ParamSpec& spec : model.table().specs()) {
    expect_close(prefix + "grad of " + spec.name, model.grads().data() + spec.offset,
                 fixture().at(prefix + "grad/" + spec.name), Tolerance<T>::abs, Tolerance<T>::rel);
  }
  expect_zero_padding<T>("gradient", model.table(), model.grads());
}

TYPED_TEST(TorchReference, ForwardLossAndEveryGradient) {
  for (const int padding : kPadding) {
    SCOPED_TRACE("vocabulary padded by " + std::to_string(padding) + " rows");
    check_forward_loss_and_every_gradient<TypeParam>("", padding);
  }
}
TYPED_TEST(TorchReference, DepthMuPForwardLossAndEveryGradient) {
  check_forward_loss_and_every_gradient<TypeParam>("dmup/", 0);
}

template <class T>
void check_ten_adamw_steps(const std::string& prefix, int padding) {
  const ModelConfig config = fixture_model(prefix, padding);
  const TrainConfig train = fixture_training();
  const int B = static_cast<int>(fixture().scalar("meta.batch"));
  test::WholeModel<T> model(config, B, false);
  load_weights(model, "param/");
  AdamW<T> optimizer(model.table(), train, 0, static_cast<int64_t>(model.params().size()), model.ops());
  const auto inputs = fixture().ints(prefix + "steps.inputs");
  const auto targets = fixture().ints(prefix + "steps.targets");
  const auto& ref_losses = fixture().at(prefix + "steps.losses");
  const int64_t per_step = int64_t{B} * config.seq_len;
  for (int64_t step = 0; step < train.steps; ++step) {
    model.zero_grads();
    const double loss = model.forward_backward(inputs.data() + step * per_step,
                                               targets.data() + step * per_step, B, {}, 1.0 / per_step);
    clip_grad_norm(model.ops(), model.grads(), train.clip);
    optimizer.update(model.params(), model.grads(), learning_rate(train, step), step + 1);
    EXPECT_NEAR(loss, ref_losses[static_cast<size_t>(step)], 10 * Tolerance<T>::loss) << prefix << "step " << step + 1;
  }
  EXPECT_LT(ref_losses.back(), ref_losses.front() - 0.1) << "the reference run should learn";
  // The key bias adds q_i . b_k to every score of row i alike, which the softmax ignores: its
  // gradient is 0 but for rounding. AdamW divides that noise by its own root mean square, so in
  // float (noise ~1e-9 against eps 1e-8) the bias walks by up to the learning rate per step, on
  // whichever noise the kernel's rounding makes; in double (noise ~1e-17) it stays put. In float
  // it is held to that walk's bound: the sum of the step sizes (|update| <= lr when
  // 1 - beta1 <= sqrt(1 - beta2), as here).
  double walk = 0;
  for (int64_t step = 0; step < train.steps; ++step) walk += learning_rate(train, step);
  const int64_t C = config.d_model;
  for (const ParamSpec& spec : model.table().specs()) {
    const T* got = model.params().data() + spec.offset;
    std::vector<double> ref = fixture().at(prefix + "final/" + spec.name);
    const bool qkv_bias = spec.name.size() >= 13 && spec.name.substr(spec.name.size() - 13) == "attn.qkv.bias";
    if (std::is_same_v<T, float> && qkv_bias) {
      const std::vector<double> key(ref.begin() + C, ref.begin() + 2 * C);
      expect_close(prefix + "final " + spec.name + " (key part)", got + C, key, walk, 0.0);
      std::copy(got + C, got + 2 * C, ref.begin() + C);  // the query and value parts as every tensor
    }
    expect_close(prefix + "final " + spec.name, got, ref, 10 * Tolerance<T>::abs, 10 * Tolerance<T>::rel);
  }
  expect_zero_padding<T>("parameters after ten steps (weight decay included)", model.table(), model.params());
}

TYPED_TEST(TorchReference, TenAdamWStepsWithClippingAndSchedule) {
  for (const int padding : kPadding) {
    SCOPED_TRACE("vocabulary padded by " + std::to_string(padding) + " rows");
    check_ten_adamw_steps<TypeParam>("", padding);
  }
}
TYPED_TEST(TorchReference, DepthMuPTenAdamWSteps) { check_ten_adamw_steps<TypeParam>("dmup/", 0); }

}  // namespace
}  // namespace kl
