#include "src/train/layer_probe.h"

#include <algorithm>
#include <cmath>
#include <span>

namespace kl {

void LayerProbe::begin() {
  stats_.reset(c_.model.layers);
  worker_.collect(&stats_);
}

DiagnosticsRow LayerProbe::row(int64_t step_number) {
  const auto L = static_cast<size_t>(c_.model.layers);
  std::vector<double> sums;  // grad, act, attn, mlp [L] each, final grad, final act; update, weight [L] each
  for (const auto* v : {&stats_.grad_sq, &stats_.act_sq, &stats_.attn_sq, &stats_.mlp_sq}) {
    sums.insert(sums.end(), v->begin(), v->end());
  }
  sums.push_back(stats_.final_grad_sq);
  sums.push_back(stats_.final_act_sq);
  const size_t batch_part = sums.size();
  sums.resize(batch_part + 2 * L, 0.0);
  const std::vector<float> params = worker_.ops().to_host(worker_.params());
  for (const ParamSpec& spec : worker_.table().specs()) {
    if (spec.layer < 0) continue;
    for (int64_t i = spec.offset; i < spec.offset + spec.numel(); ++i) {
      const double before = before_[static_cast<size_t>(i)], change = params[static_cast<size_t>(i)] - before;
      sums[batch_part + static_cast<size_t>(spec.layer)] += change * change;
      sums[batch_part + L + static_cast<size_t>(spec.layer)] += before * before;
    }
  }
  comms_.pp.all_reduce_sum(sums);
  comms_.dp.all_reduce_sum(std::span<double>(sums.data(), batch_part));
  const double elements = double(c_.train.global_batch) * c_.model.seq_len * c_.model.d_model;
  DiagnosticsRow row;
  row.step = step_number;
  auto column = [&](size_t part, bool rms) {
    std::vector<double> out(L);
    for (size_t l = 0; l < L; ++l) out[l] = std::sqrt(sums[part * L + l] / (rms ? elements : 1.0));
    return out;
  };
  row.residual_grad_norm = column(0, false);
  row.residual_rms = column(1, true);
  row.attn_out_rms = column(2, true);
  row.mlp_out_rms = column(3, true);
  row.final_grad_norm = std::sqrt(sums[4 * L]);
  row.final_rms = std::sqrt(sums[4 * L + 1] / elements);
  row.update_ratio.resize(L);
  for (size_t l = 0; l < L; ++l) {
    row.update_ratio[l] = std::sqrt(sums[batch_part + l]) / std::max(std::sqrt(sums[batch_part + L + l]), 1e-30);
  }
  return row;
}

}  // namespace kl
