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

}  // namespace kl
