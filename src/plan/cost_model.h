// The planner's cost model (docs/planning.md has the formulas and where the hardware numbers come
// from): what one micro-batch costs in each block and at the model's ends, what a message and a
// collective cost on the cluster's links, and what a rank holds in memory. Pure arithmetic on a
// config and a hardware description; src/plan/timed_sim.h turns the costs into a step.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "src/config/config.h"
#include "src/plan/calibration.h"

namespace kl::plan {

// One GPU of the cluster and its links. Bandwidths are per GPU, one direction.
struct Hardware {
  std::string name = "custom";
  int gpus_per_node = 8;
  double peak_flops = 989e12;          // dense rate of run.precision (per GPU)
  double memory_bytes = 80e9;          // per GPU
  double memory_bandwidth = 3.35e12;   // HBM bytes/s: the optimizer's time in the FLOP model
  double intra_bandwidth = 450e9;      // bytes/s to a GPU of the same node (NVLink, each way)
  double inter_bandwidth = 50e9;       // bytes/s to a GPU of another node (InfiniBand, each way)
  double intra_latency = 5e-6, inter_latency = 10e-6;  // seconds per message
  // FLOP model only: the share of the peak the block's products reach (memory-bound operations,
  // kernel launches and imperfect tiling take the rest). Calibrated costs replace it.
  double compute_efficiency = 0.6;
  // The attention's memory: the CUDA backend keeps the softmax P [B,NH,T,T] per block and a dS
  // scratch of that size; false prices the CPU backend's flash-style kernel (B NH T per block, no
  // scratch), which the tests compare with a CPU Stage.
  bool attention_keeps_probs = true;
};

// The named presets (docs/planning.md: datasheet numbers and their sources), with the dense rate of
// the run's precision: bf16 tensor cores, TF32 tensor cores (fp32 with run.tf32) or plain fp32.
// nullopt if unknown.
std::optional<Hardware> preset(const std::string& name, Precision precision, bool tf32);
std::string preset_names();  // "h100 | h200"

// Seconds of one micro-batch (train.micro_batch sequences) through one block and through the
// extras of the first chunk (embedding) and the last (final norm, LM head, loss); the backward
// split into its input-gradient part (B) and its weight-gradient part (W).
struct PassCosts {
  double forward = 0, backward_input = 0, backward_weight = 0;
};
struct ComputeCosts {
  PassCosts block, embedding, head;
  double optimizer_per_param = 0;  // AdamW seconds per parameter this rank updates
  std::string source;              // "FLOPs at 0.60 of 989 TFLOP/s" or "calibration FILE"
};

// From FLOPs: the products' 2 x multiply-adds per pass (attention's scores and mixing have no
// weight gradient), at hw.compute_efficiency of the peak; AdamW streams 28 bytes per parameter.
ComputeCosts flop_costs(const ModelConfig& model, int micro_batch, const Hardware& hw);
// From a calibration measured at this model's block shape: its times, scaled linearly in the
// micro-batch's sequences when it differs from the calibrated one. Throws UserError when the
// calibration's shape (d_model, heads, d_ff, seq_len, vocab) is not the model's.
ComputeCosts calibrated_costs(const ModelConfig& model, int micro_batch, const Calibration& calibration,
                              const std::string& origin);

// Training FLOPs per token, 6N + 12 L d T (DESIGN.md), for MFU.
double flops_per_token(const ModelConfig& model);

// Parameters of one block, of the first chunk's extras (embeddings) and the last's (final norm;
// the head unless tied, whose copy the last stage then holds as well).
struct ParamCounts {
  int64_t block = 0, first = 0, last = 0, total = 0;
};
ParamCounts param_counts(const ModelConfig& model);

// Collective and point-to-point times on a group whose slowest link has `bandwidth` bytes/s and
// `latency` seconds per message (ring algorithms: n - 1 or 2 (n - 1) steps).
double p2p_time(double bytes, double bandwidth, double latency);
double all_reduce_time(double bytes, int ranks, double bandwidth, double latency);
double reduce_scatter_time(double bytes, int ranks, double bandwidth, double latency);
double all_gather_time(double bytes, int ranks, double bandwidth, double latency);

// Activation memory a stage's buffer ("slot", src/pipeline/stage.h) holds for a chunk of `blocks`
// blocks, and what all slots share, in bytes, as the Stage allocates it for run.precision. With a
// calibration, its measured bytes per block replace the block term.
struct ActivationBytes {
  double per_block = 0;   // saved tensors of one block (0 under recomputation), split extras included
  double per_chunk = 0;   // the residual stream at the chunk's input
  double head = 0;        // on the stage holding the last chunk
  double embed_grad = 0;  // split backward, on the stage holding the first chunk
  double shared = 0;      // scratch, dL/dx and (recompute) one block's tensors: once per stage
};
ActivationBytes activation_bytes(const ModelConfig& model, int micro_batch, Precision precision, bool recompute,
                                 bool split_backward, bool attention_keeps_probs);
// The Act elements per block that keeping the attention's softmax adds over the CPU's flash-style
// kernel: {saved per block, scratch}.
struct AttentionExtra {
  double stash = 0, scratch = 0;
};
AttentionExtra attention_probs_extra(const ModelConfig& model, int micro_batch, Precision precision);

}  // namespace kl::plan
