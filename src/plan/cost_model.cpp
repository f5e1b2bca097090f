#include "src/plan/cost_model.h"

#include <cmath>

#include "models/backend.h"
#include "models/block_impl.h"
#include "models/params.h"
#include "src/pipeline/partition.h"
#include "src/util/error.h"

namespace kl::plan {

std::optional<Hardware> preset(const std::string& name, Precision precision, bool tf32) {
  // NVIDIA H100 and H200 datasheets (docs/planning.md): SXM, dense BF16 989 TFLOP/s (the sheets'
  // 1,979 is with sparsity), dense TF32 494 (989 with sparsity), plain FP32 67; NVLink 900 GB/s per GPU both ways together; one ConnectX-7 NDR
  // 400 Gb/s InfiniBand port per GPU in DGX/HGX nodes (50 GB/s each way); HBM3 80 GB at 3.35 TB/s,
  // HBM3e 141 GB at 4.8 TB/s.
  Hardware hw;
  hw.gpus_per_node = 8;
  hw.peak_flops = precision == Precision::kBf16 ? 989e12 : (tf32 ? 494e12 : 67e12);
  hw.intra_bandwidth = 450e9;
  hw.inter_bandwidth = 50e9;
  if (name == "h100") {
    hw.name = "h100";
    hw.memory_bytes = 80e9;
    hw.memory_bandwidth = 3.35e12;
    return hw;
  }
  if (name == "h200") {
    hw.name = "h200";
    hw.memory_bytes = 141e9;
    hw.memory_bandwidth = 4.8e12;
    return hw;
  }
  return std::nullopt;
}

std::string preset_names() { return "h100 | h200"; }

double flops_per_token(const ModelConfig& m) {
  return 6.0 * double(ParamTable(m).parameter_count()) + 12.0 * m.layers * double(m.d_model) * m.seq_len;
}

ComputeCosts flop_costs(const ModelConfig& m, int micro_batch, const Hardware& hw) {
  const double d = m.d_model, ff = m.ff_width(), T = m.seq_len, V = m.padded_vocab();
  const double tokens = double(micro_batch) * T, rate = hw.peak_flops * hw.compute_efficiency;
  // Per token, forward: 2 x the products' multiply-adds (qkv 3d^2, projection d^2, MLP 2 d ff) and
  // the attention's scores and mixing (2 x 2 d T); backward: the input gradient as much again, and
  // the weight gradient as much again for the products only.
  const double products = 2.0 * (4.0 * d * d + 2.0 * d * ff), attention = 4.0 * d * T;
  ComputeCosts c;
  c.block = {(products + attention) * tokens / rate, (products + 2.0 * attention) * tokens / rate,
             products * tokens / rate};
  c.embedding = {0, 0, 0};
  const double head = 2.0 * d * V * tokens / rate;
  c.head = {head, 2.0 * head, 0};  // the head's weight gradient comes with the input part
  c.optimizer_per_param = 28.0 / hw.memory_bandwidth;  // read p, g, m, v; write p, m, v (fp32)
  char text[96];
  std::snprintf(text, sizeof text, "FLOPs at %.2f of %.0f TFLOP/s", hw.compute_efficiency, hw.peak_flops / 1e12);
  c.source = text;
  return c;
}

ComputeCosts calibrated_costs(const ModelConfig& m, int micro_batch, const Calibration& k, const std::string& origin) {
  auto mismatch = [&](const char* key, int theirs, int ours) {
    if (theirs != ours) {
      throw UserError("calibration " + origin + ": measured at " + key + " = " + std::to_string(theirs) +
                      ", but the config's model has " + std::to_string(ours) +
                      ": calibrate this model (kilolayer plan --calibrate --config FILE)");
    }
  };
  mismatch("d_model", k.d_model, m.d_model);
  mismatch("heads", k.heads, m.heads);
  mismatch("d_ff", k.d_ff, m.ff_width());
  mismatch("seq_len", k.seq_len, m.seq_len);
  mismatch("vocab", k.vocab, m.vocab);
  const double scale = double(micro_batch) / k.micro_batch;
  ComputeCosts c;
  c.block = {k.forward * scale, k.backward_input * scale, k.backward_weight * scale};
  c.embedding = {k.embedding_forward * scale, 0, k.embedding_backward * scale};
  c.head = {k.head_forward * scale, k.head_backward * scale, 0};
  c.optimizer_per_param = k.update_per_param;
  c.source = "calibration " + origin;
  return c;
}

ParamCounts param_counts(const ModelConfig& m) {
  ParamCounts p;
  p.block = ParamTable(m, {0}, false, false).parameter_count();
  p.first = ParamTable(m, {0}, true, false).parameter_count() - p.block;
  p.last = ParamTable(m, {0}, false, true).parameter_count() - p.block;
  p.total = ParamTable(m).parameter_count();
  return p;
}

double p2p_time(double bytes, double bandwidth, double latency) { return latency + bytes / bandwidth; }

double all_reduce_time(double bytes, int n, double bandwidth, double latency) {
  if (n <= 1) return 0;
  return 2.0 * (n - 1) / n * bytes / bandwidth + 2.0 * (n - 1) * latency;
}

double reduce_scatter_time(double bytes, int n, double bandwidth, double latency) {
  if (n <= 1) return 0;
  return double(n - 1) / n * bytes / bandwidth + (n - 1) * latency;
}

double all_gather_time(double bytes, int n, double bandwidth, double latency) {
  return reduce_scatter_time(bytes, n, bandwidth, latency);
}

namespace {

// The CPU backend of a precision: its element counts are the Stage's (Act elements 2 bytes in bf16,
// where its attention keeps each log-sum-exp in two of them).
template <class F>
auto with_cpu_backend(Precision precision, F&& f) {
  return precision == Precision::kBf16 ? f(CpuBf16Backend{}) : f(CpuBackend<float>{});
}

}  // namespace

AttentionExtra attention_probs_extra(const ModelConfig& m, int micro_batch, Precision precision) {
  // CudaBackend (src/cuda/backend.h) keeps B NH T^2 and as much scratch; the CPU backend its own.
  return with_cpu_backend(precision, [&](auto cpu) {
    using Cpu = decltype(cpu);
    const BlockShape s = block_shape(m, micro_batch);
    const double probs = double(s.B) * s.NH * double(s.T) * s.T;
    return AttentionExtra{probs - double(Cpu::attention_stash_elems(s.B, s.T, s.NH)),
                          probs - double(Cpu::attention_scratch_elems(s.B, s.T, s.NH))};
  });
}

namespace {

template <class Cpu>
ActivationBytes activation_bytes_of(const ModelConfig& m, int micro_batch, Precision precision, bool recompute,
                                    bool split, bool attention_keeps_probs) {
  // Element counts as the Stage carves them (src/pipeline/stage_impl.h); Act elements are 2 bytes
  // in bf16, Acc always 4.
  const BlockShape s = block_shape(m, micro_batch);
  const double act = precision == Precision::kBf16 ? 2.0 : 4.0, acc = 4.0;
  auto bytes = [&](const Sizes& z) { return double(z.act) * act + double(z.acc) * acc; };
  const AttentionExtra extra = attention_keeps_probs ? attention_probs_extra(m, micro_batch, precision) : AttentionExtra{};
  const double block = bytes(BlockActivations<Cpu>::size(s)) + extra.stash * act;
  const double N = double(s.tokens()), NC = N * s.C, V = m.padded_vocab();
  ActivationBytes a;
  a.per_block = NC * acc;  // the residual stream at the block's output
  if (!recompute) a.per_block += block;
  if (split) a.per_block += bytes(BlockOutputGrads<Cpu>::size(s));
  a.per_chunk = NC * acc;
  a.head = (NC + N * V) * act + 4.0 * N * acc;
  a.embed_grad = split ? NC * acc : 0.0;
  a.shared = bytes(BlockScratch<Cpu>::size(s)) + extra.scratch * act + NC * acc + (recompute ? block : 0.0);
  return a;
}

}  // namespace

ActivationBytes activation_bytes(const ModelConfig& m, int micro_batch, Precision precision, bool recompute,
                                 bool split, bool attention_keeps_probs) {
  return with_cpu_backend(precision, [&](auto cpu) {
    using Cpu = decltype(cpu);
    return activation_bytes_of<Cpu>(m, micro_batch, precision, recompute, split, attention_keeps_probs);
  });
}

}  // namespace kl::plan
