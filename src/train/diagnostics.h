// Per-layer diagnostics of the residual stream (run.diag_every), appended to
// <run.dir>/diagnostics.h5 by world rank 0: one row per diagnosed step in each dataset
//   step [n]                      optimizer step (1-based) the row measures
//   residual_grad_norm [n, L]     |dL/dx_l|, x_l the input of block l, over the step's global batch
//   residual_rms [n, L]           root mean square of x_l
//   attn_out_rms, mlp_out_rms [n, L]   root mean square of each branch's output D(F)
//   update_ratio [n, L]           |theta_l after - before| / |theta_l before| over block l's tensors
//   final_grad_norm, final_rms [n]     the same at x_L, the stream's output (before the final norm)
// Every dataset carries a `units` attribute. Row k of every dataset belongs to the same step; steps
// increase: a row replaces the rows of its step and later ones (a rollback or resume went back).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace kl {

struct DiagnosticsRow {
  int64_t step = 0;
  std::vector<double> residual_grad_norm, residual_rms, attn_out_rms, mlp_out_rms, update_ratio;
  double final_grad_norm = 0, final_rms = 0;
};

class DiagnosticsWriter {
 public:
  DiagnosticsWriter(std::string path, int layers) : path_(std::move(path)), layers_(layers) {}
  // Opens the file (created on first use), appends the row, closes it: a crash loses at most the
  // row being written. Throws UserError when the file cannot be written.
  void append(const DiagnosticsRow& row) const;

 private:
  std::string path_;
  int layers_;
};

}  // namespace kl
