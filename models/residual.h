// The residual stream variants (model.residual). Each block has two branches, F = attention and
// F = MLP, applied to the stream x in turn; D is dropout (and drop-path under stochastic depth):
//
//   prenorm     x + D(F(LN(x)))                    GPT-2; the identity path is untouched
//   postnorm    LN(x + D(F(x)))                    the original Transformer
//   plain       D(F(LN(x)))                        no identity path at all (depth studies)
//   rezero      x + a D(F(x)),  a scalar, a0 = 0   ReZero (Bachlechner et al.): no LayerNorm
//   layerscale  x + g * D(F(LN(x))), g per channel, g0 = model.layerscale_init (0: zero-gamma)
//   deepnorm    LN(alpha x + D(F(x))),  alpha = (2N)^(1/4); the value, output and MLP projections
//               initialised with gain beta = (8N)^(-1/4)  (DeepNet, decoder-only, N blocks)
//   highway     g * D(F(LN(x))) + (1 - g) * x,  g = sigmoid(W_g x + b_g), b_g0 = -2 (carry x)
// Under model.depth_scaling (prenorm, plain, layerscale) D(F) carries the multiplier (L0/L)^alpha.
#pragma once

#include <cmath>

#include "src/config/config.h"  // enum class Residual, parsed from model.residual

namespace kl {

// LayerNorm on the branch input (pre) or on the sum (post); rezero has neither.
inline bool pre_norm(Residual r) {
  return r == Residual::kPreNorm || r == Residual::kPlain || r == Residual::kLayerScale || r == Residual::kHighway;
}
inline bool post_norm(Residual r) { return r == Residual::kPostNorm || r == Residual::kDeepNorm; }
// A learned scale on the branch: one scalar (rezero) or one per channel (layerscale).
inline bool scaled_branch(Residual r) { return r == Residual::kReZero || r == Residual::kLayerScale; }

inline double deepnorm_alpha(int layers) { return std::pow(2.0 * layers, 0.25); }
inline double deepnorm_beta(int layers) { return std::pow(8.0 * layers, -0.25); }
inline constexpr double kHighwayGateBias = -2.0;  // sigmoid(-2) = 0.12: mostly carry x at first

// Depth parametrisations (model.depth_scaling, model.base_layers = L0), for the variants whose
// branch joins an untouched identity path (config refuses the others):
//
//   x_{l+1} = x_l + (L0 / L)^alpha F_l(x_l)                      branch multiplier
//   eta_hidden = eta (L / L0)^(alpha - 1)                        Adam learning rate of block tensors
//   eps_hidden = eps (L / L0)^(-alpha)                           Adam epsilon of block tensors
//   sigma_init of block weights: independent of L (GPT-2's 1/sqrt(2L) on the output projections
//   is evaluated at L0 instead, so that at L = L0 every parametrisation is the standard model)
//
// alpha = 0: standard (nothing changes); alpha = 1/2: Depth-muP (Yang, Yu, Zhu, Hayou, "Tensor
// Programs VI: Feature Learning in Infinite-Depth Neural Networks", 2023: block multiplier a/sqrt(L)
// and, for Adam, learning rate eta/sqrt(L); Bordelon, Noci, Li, Hanin, Pehlevan, "Depthwise
// Hyperparameter Transfer in Residual Networks", 2023: 1/sqrt(L) branches); alpha = 1: CompleteP
// (Dey, Zhang, Noci, Li, Bordelon, Bergsma, Pehlevan, Hanin, Hestness, "Don't be lazy: CompleteP
// enables compute-efficient deep transformers", 2025, Table 1 with the width terms at the base
// width: residual multiplier L^-alpha, hidden weights, biases and LayerNorm learning rate
// L^(alpha-1), AdamW epsilon L^-alpha, hidden initialisation variance independent of L). The
// authors' minimal implementation (EleutherAI/nanoGPT-mup, branch completep, model.py:
// residual_scaling = depth_multiplier^-alpha, lr_scale = depth_multiplier^(alpha-1) on hidden
// weights, biases and LayerNorms, eps *= depth_multiplier^-alpha) is what this follows, with one
// difference: it scales epsilon for every tensor, here only the block tensors whose gradients
// shrink with the multiplier (the embeddings' and head's do not). Weight decay stays as given:
// AdamW's decoupled decay is multiplied by the scaled learning rate, as in that implementation.
inline double depth_alpha(DepthScaling d) {
  switch (d) {
    case DepthScaling::kStandard: return 0.0;
    case DepthScaling::kDepthMuP: return 0.5;
    case DepthScaling::kCompleteP: return 1.0;
  }
  return 0.0;
}
struct DepthScale {
  double branch = 1.0;  // (L0 / L)^alpha
  double lr = 1.0;      // block tensors' learning rate factor, (L / L0)^(alpha - 1)
  double eps = 1.0;     // block tensors' Adam epsilon factor, (L / L0)^(-alpha)
};
inline DepthScale depth_scale(DepthScaling d, int layers, int base_layers) {
  const double alpha = depth_alpha(d);
  if (alpha == 0.0 || base_layers < 1) return {};
  const double ratio = static_cast<double>(layers) / base_layers;  // L / L0
  return {std::pow(ratio, -alpha), std::pow(ratio, alpha - 1.0), std::pow(ratio, -alpha)};
}
// The depth GPT-2's output-projection initialisation std 0.02 / sqrt(2 L) is evaluated at.
inline int init_depth(DepthScaling d, int layers, int base_layers) {
  return d == DepthScaling::kStandard || base_layers < 1 ? layers : base_layers;
}
// A dropped branch (stochastic depth) leaves these blocks the identity, so it need not be computed;
// post-norm and DeepNorm still normalise, highway still gates, plain has no identity path.
inline bool dropped_block_is_identity(Residual r) {
  return r == Residual::kPreNorm || r == Residual::kReZero || r == Residual::kLayerScale;
}

}  // namespace kl
