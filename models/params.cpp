#include "models/params.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <stdexcept>

#include "models/residual.h"
#include "src/util/error.h"
#include "src/util/rng.h"

namespace kl {
namespace {
constexpr int64_t kAlign = 16;  // elements: 64 bytes of fp32, a cache line / AVX-512 vector
constexpr double kInitStd = 0.02;
}  // namespace

int64_t ParamSpec::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

std::string ParamTable::layer_prefix(int layer) {
  char buffer[32];
  std::snprintf(buffer, sizeof buffer, "layers/%06d/", layer);
  return buffer;
}

ParamSpec& ParamTable::add(std::string name, std::vector<int64_t> shape, Init init, double std, bool decay,
                           int layer) {
  ParamSpec spec;
  spec.name = std::move(name);
  spec.shape = std::move(shape);
  spec.init = init;
  spec.init_std = std;
  spec.decay = decay;
  spec.layer = layer;
  if (layer >= 0) {
    spec.lr_scale = depth_.lr;
    spec.eps_scale = depth_.eps;
  }
  spec.offset = buffer_size_;
  buffer_size_ += (spec.numel() + kAlign - 1) / kAlign * kAlign;
  index_.emplace(spec.name, specs_.size());
  if (layer >= 0) layer_offset_.emplace(layer, spec.offset);
  specs_.push_back(std::move(spec));
  return specs_.back();
}

namespace {
std::vector<int> all_layers(int layers) {
  std::vector<int> all(static_cast<size_t>(layers));
  for (int l = 0; l < layers; ++l) all[static_cast<size_t>(l)] = l;
  return all;
}
}  // namespace


ParamTable::ParamTable(const ModelConfig& m) : ParamTable(m, all_layers(m.layers), true, true) {}

ParamTable::ParamTable(const ModelConfig& m, const std::vector<int>& layers, bool first, bool last)
    : depth_(depth_scale(m.depth_scaling, m.layers, m.base_layers)) {
  // The token embedding and the head have model.vocab_padded rows; those past model.vocab are padding.
  const int64_t C = m.d_model, F = m.ff_width(), V = m.padded_vocab(), T = m.seq_len;
  const Residual residual = m.residual;
  // GPT-2: each branch's output projection starts smaller, so that the residual stream's variance
  // does not grow with depth (2 branches per block). DeepNet instead gives the value, output and
  // MLP projections the gain beta.
  const bool deepnorm = residual == Residual::kDeepNorm;
  const double beta = deepnorm_beta(m.layers);
  // Under a depth parametrisation the branch multiplier carries the depth, and the initialisation
  // is the one of the base depth L0 (models/residual.h).
  const double proj_std = deepnorm ? kInitStd * beta
                                   : kInitStd / std::sqrt(2.0 * init_depth(m.depth_scaling, m.layers, m.base_layers));
  const double fc_std = deepnorm ? kInitStd * beta : kInitStd;
  // Weight decay on every matrix (Linear weights and embeddings), none on biases and LayerNorm.
  if (first || (last && m.tie_embeddings)) {
    add("embed.token.weight", {V, C}, Init::kNormal, kInitStd, true, -1).vocab_rows = m.vocab;
  }
  if (first) add("embed.position.weight", {T, C}, Init::kNormal, kInitStd, true, -1);
  for (int l : layers) {
    const std::string p = layer_prefix(l);
    if (residual != Residual::kReZero) {  // before the branch, or after the sum (post-norm)
      add(p + "ln1.weight", {C}, Init::kOnes, 0, false, l);
      add(p + "ln1.bias", {C}, Init::kZeros, 0, false, l);
    }
    ParamSpec& qkv = add(p + "attn.qkv.weight", {3 * C, C}, Init::kNormal, kInitStd, true, l);
    if (deepnorm) {
      qkv.tail_from_row = 2 * C;  // the value projection
      qkv.tail_gain = beta;
    }
    add(p + "attn.qkv.bias", {3 * C}, Init::kZeros, 0, false, l);
    add(p + "attn.proj.weight", {C, C}, Init::kNormal, proj_std, true, l);
    add(p + "attn.proj.bias", {C}, Init::kZeros, 0, false, l);
    if (residual != Residual::kReZero) {
      add(p + "ln2.weight", {C}, Init::kOnes, 0, false, l);
      add(p + "ln2.bias", {C}, Init::kZeros, 0, false, l);
    }
    add(p + "mlp.fc.weight", {F, C}, Init::kNormal, fc_std, true, l);
    add(p + "mlp.fc.bias", {F}, Init::kZeros, 0, false, l);
    add(p + "mlp.proj.weight", {C, F}, Init::kNormal, proj_std, true, l);
    add(p + "mlp.proj.bias", {C}, Init::kZeros, 0, false, l);
    for (const char* branch : {"attn", "mlp"}) {
      const std::string b = p + branch;
      if (residual == Residual::kReZero) add(b + ".scale", {1}, Init::kZeros, 0, false, l);
      if (residual == Residual::kLayerScale) {
        add(b + ".scale", {C}, Init::kConstant, 0, false, l).init_value = m.layerscale_init;
      }
      if (residual == Residual::kHighway) {
        add(b + ".gate.weight", {C, C}, Init::kNormal, kInitStd, true, l);
        add(b + ".gate.bias", {C}, Init::kConstant, 0, false, l).init_value = kHighwayGateBias;
      }
    }
  }
  if (!last) return;
  add("final_norm.weight", {C}, Init::kOnes, 0, false, -1);
  add("final_norm.bias", {C}, Init::kZeros, 0, false, -1);
  if (!m.tie_embeddings) add("head.weight", {V, C}, Init::kNormal, kInitStd, true, -1).vocab_rows = m.vocab;
}

const ParamSpec* ParamTable::find(std::string_view name) const {
  const auto it = index_.find(std::string(name));
  return it == index_.end() ? nullptr : &specs_[it->second];
}

const ParamSpec& ParamTable::get(std::string_view name) const {
  if (const ParamSpec* spec = find(name)) return *spec;
  fatal(__FILE__, __LINE__, "get(name)", "no parameter named " + std::string(name));
}

int64_t ParamTable::layer_offset(int layer) const {
  const auto it = layer_offset_.find(layer);
  KL_CHECK(it != layer_offset_.end(), "no tensors of block " + std::to_string(layer) + " in this table");
  return it->second;
}

int64_t ParamTable::parameter_count() const {
  int64_t n = 0;
  for (const auto& spec : specs_) n += spec.numel();
  return n;
}

template <class T>
void init_parameters(const ParamTable& table, uint64_t seed, T* params) {
  for (const auto& spec : table.specs()) {
    T* p = params + spec.offset;
    const int64_t n = spec.numel();
    const uint64_t stream = rng::key(seed, rng::hash_name(spec.name));
    const int64_t row = spec.shape.size() == 2 ? spec.shape[1] : 1;
    // Element i gets the same value whatever the padding: a padded model starts as the unpadded one.
    const int64_t used = spec.vocab_rows >= 0 ? spec.vocab_rows * row : n;
    std::fill(p + used, p + n, T(0));
    for (int64_t i = 0; i < used; ++i) {
      const bool tail = spec.tail_from_row >= 0 && i / row >= spec.tail_from_row;
      switch (spec.init) {
        case Init::kNormal:
          p[i] = T(spec.init_std * (tail ? spec.tail_gain : 1.0) * rng::normal(stream, static_cast<uint64_t>(i)));
          break;
        case Init::kConstant: p[i] = T(spec.init_value); break;
        case Init::kOnes: p[i] = T(1); break;
        case Init::kZeros: p[i] = T(0); break;
      }
    }
  }
}

template void init_parameters<float>(const ParamTable&, uint64_t, float*);
template void init_parameters<double>(const ParamTable&, uint64_t, double*);

}  // namespace kl
