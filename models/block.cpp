// The parts of a block that do not depend on the backend; the forward and backward passes are in
// models/block_impl.h, instantiated here for the CPU backends.
#include "models/block.h"

#include "models/backend.h"
#include "models/block_impl.h"

namespace kl {

void StreamStats::reset(int layers) {
  for (auto* v : {&grad_sq, &act_sq, &attn_sq, &mlp_sq}) v->assign(static_cast<size_t>(layers), 0.0);
  final_grad_sq = final_act_sq = 0.0;
}

BlockShape block_shape(const ModelConfig& m, int B) {
  BlockShape s{B, m.seq_len, m.d_model, m.heads, m.ff_width()};
  s.residual = m.residual;
  if (s.residual == Residual::kDeepNorm) s.alpha = deepnorm_alpha(m.layers);
  s.branch_scale = depth_scale(m.depth_scaling, m.layers, m.base_layers).branch;
  return s;
}

BlockDropout BlockDropout::make(const ModelConfig& m, uint64_t seed, int64_t step, int64_t first_sample,
                                bool training) {
  BlockDropout d;
  d.p = training ? m.dropout : 0.0;
  d.key = {seed, step, first_sample, 0};
  d.path_last = training ? m.stochastic_depth : 0.0;
  d.layers = m.layers;
  return d;
}

KL_INSTANTIATE_BLOCK(CpuBackend<float>)
KL_INSTANTIATE_BLOCK(CpuBf16Backend)
KL_INSTANTIATE_BLOCK(CpuBackend<double>)

}  // namespace kl
