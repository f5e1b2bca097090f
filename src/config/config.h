// The run configuration: one option table (src/config/config.cpp) read from an INI file plus
// `--section.key=value` overrides, validated before any work starts. Read by Boost.Program_options,
// or by a built-in reader of the same table in builds without Boost (KL_BOOST=OFF).
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace kl {

// The options that name one of a few choices, parsed once into these (config.cpp reads and writes
// them by the names below, in declaration order; the rest of the code compares enums).
enum class Residual { kPreNorm, kPostNorm, kPlain, kReZero, kLayerScale, kDeepNorm, kHighway };  // models/residual.h
enum class ScheduleKind { kGPipe, k1F1B, kInterleaved, kZB1 };  // src/pipeline/schedule.h
enum class Recompute { kNone, kBlock };
enum class OnNonfinite { kSkip, kAbort };
enum class SpikePolicy { kOff, kSkip, kRollback };  // src/train/spike.h
enum class Device { kCpu, kCuda };
enum class Precision { kFp32, kBf16 };
enum class LrSchedule { kCosine, kLinear, kConstant, kWsd, kInverseSqrt };  // src/train/optimizer.h
enum class DepthScaling { kStandard, kDepthMuP, kCompleteP };  // models/residual.h: depth_alpha

template <class E>
struct Choices;
template <>
struct Choices<Residual> {
  static constexpr std::array<const char*, 7> names = {"prenorm",    "postnorm", "plain",  "rezero",
                                                       "layerscale", "deepnorm", "highway"};
};
template <>
struct Choices<ScheduleKind> {
  static constexpr std::array<const char*, 4> names = {"gpipe", "1f1b", "interleaved", "zb1"};
};
template <>
struct Choices<Recompute> {
  static constexpr std::array<const char*, 2> names = {"none", "block"};
};
template <>
struct Choices<OnNonfinite> {
  static constexpr std::array<const char*, 2> names = {"skip", "abort"};
};
template <>
struct Choices<SpikePolicy> {
  static constexpr std::array<const char*, 3> names = {"off", "skip", "rollback"};
};
template <>
struct Choices<Device> {
  static constexpr std::array<const char*, 2> names = {"cpu", "cuda"};
};
template <>
struct Choices<Precision> {
  static constexpr std::array<const char*, 2> names = {"fp32", "bf16"};
};
template <>
struct Choices<LrSchedule> {
  static constexpr std::array<const char*, 5> names = {"cosine", "linear", "constant", "wsd", "inverse_sqrt"};
};

template <>
struct Choices<DepthScaling> {
  static constexpr std::array<const char*, 3> names = {"standard", "depth_mup", "completep"};
};

template <class E>
const char* name_of(E value) {
  return Choices<E>::names[static_cast<size_t>(value)];
}
template <class E>
std::optional<E> choice_named(std::string_view name) {
  for (size_t i = 0; i < Choices<E>::names.size(); ++i) {
    if (name == Choices<E>::names[i]) return static_cast<E>(i);
  }
  return std::nullopt;
}
// "a | b | c", for messages.
template <class E>
std::string choice_list() {
  std::string list;
  for (const char* name : Choices<E>::names) list += (list.empty() ? "" : " | ") + std::string(name);
  return list;
}

struct ModelConfig {
  int layers = 12;
  int d_model = 128;
  int heads = 4;
  int d_ff = 0;  // 0 means 4 * d_model
  int seq_len = 128;
  int vocab = 256;
  // The embedding's and the head's rows (0: vocab). Rows from vocab on are padding (llm.c pads
  // GPT-2's 50257 to 50304 for faster products): zero, outside the softmax, never sampled.
  int vocab_padded = 0;
  Residual residual = Residual::kPreNorm;
  double layerscale_init = 0.1;      // layerscale: initial value of every channel's branch scale
  double stochastic_depth = 0.0;     // drop-path probability of the last block (0: off)
  // How the branches, their learning rates and Adam's epsilon scale with depth (models/residual.h):
  // branch multiplier (base_layers / layers)^alpha, alpha 0, 1/2, 1.
  DepthScaling depth_scaling = DepthScaling::kStandard;
  int base_layers = 0;               // L0, the depth the learning rate was tuned at (0: not set)
  double dropout = 0.1;
  bool tie_embeddings = true;

  int ff_width() const { return d_ff > 0 ? d_ff : 4 * d_model; }
  int padded_vocab() const { return vocab_padded > 0 ? vocab_padded : vocab; }
  int head_dim() const { return d_model / heads; }
};

struct TrainConfig {
  int64_t steps = 100;
  int global_batch = 8;  // sequences per optimizer step
  int micro_batch = 8;   // sequences per forward/backward
  double lr = 1e-3;
  double min_lr = 1e-4;
  int64_t warmup = 10;
  LrSchedule schedule = LrSchedule::kCosine;  // after the warmup
  int64_t decay_steps = 0;      // the schedule's horizon after the warmup (0: steps - warmup)
  double wsd_decay_fraction = 0.2;  // wsd: the last part of the horizon, decaying linearly to min_lr
  double weight_decay = 0.1;
  double beta1 = 0.9;
  double beta2 = 0.95;
  double eps = 1e-8;
  double clip = 1.0;  // global gradient-norm limit; 0 turns clipping off
  int64_t seed = 1234;
  int64_t eval_every = 50;  // 0: only at the end
  int eval_batches = 4;     // validation batches of global_batch sequences
  OnNonfinite nonfinite = OnNonfinite::kSkip;  // a non-finite loss or gradient norm
  int max_skips = 5;               // consecutive skipped steps before the run stops
  SpikePolicy spike_policy = SpikePolicy::kOff;  // a finite loss or gradient-norm spike
  double spike_sigma = 5.0;        // standard deviations above the window's mean that make a spike
  int spike_window = 128;          // admitted steps the mean and deviation are taken over
};

struct DataConfig {
  std::string train;  // token shard files (comma-separated, globs allowed)
  std::string val;
  std::string skip_batches;  // training batches never used, by number: "7,12" (batch k feeds step k)
};

struct ParallelConfig {
  int dp = 1;
  int pp = 1;
  ScheduleKind schedule = ScheduleKind::k1F1B;  // pipeline order (pp > 1)
  int virtual_chunks = 1;         // parallel.virtual: model chunks per stage (interleaved)
  std::string stage_layers;       // "" (balanced by FLOPs) or blocks per chunk: "5,4,4,3"
  Recompute recompute = Recompute::kNone;
  double bucket_mb = 4.0;          // gradient all-reduce bucket size
  bool overlap = true;             // start each bucket's reduction during the backward pass
  int zero = 0;                    // 1: shard the optimizer state over the data-parallel group
  double timeout_s = 300;          // deadline of any blocking communication (0: none)
};

struct CheckpointConfig {
#ifdef KL_HAVE_HDF5
  std::string dir;              // "" : <run.dir>/checkpoints; "none": no checkpoints
#else
  // A build without HDF5 (KL_HDF5=OFF) cannot write checkpoints: off by default, and load_config
  // refuses any other value with a message saying why.
  std::string dir = "none";
#endif
  int64_t every = 100;          // steps between checkpoints (0: only at the end)
  int keep = 2;                 // newest checkpoints kept (older ones are deleted after a commit)
  std::string resume = "auto";  // auto (latest in dir, if any) | never | PATH
  bool allow_world_writable = false;  // accept a checkpoint.dir that every user may write into
  bool allow_data_change = false;     // resume although data.train or data.val differ from the save's
  bool async = true;  // write in the background, training stalled only for the snapshot (docs/checkpoints.md)
};

struct RunConfig {
  std::string dir = "runs/default";
  int64_t log_every = 1;
  int threads = 0;  // 0: every core
  Device device = Device::kCpu;
  Precision precision = Precision::kFp32;  // cuda: bf16 products, activations and weight copies
  bool tf32 = false;               // cuda: fp32 products may use TF32 tensor cores
  int64_t diag_every = 0;  // steps between per-layer diagnostics (0: none)
  int64_t stop_after = 0;  // end this process after this optimizer step (0: train.steps), saving
  int64_t sample_every = 0;  // steps between short samples printed during training (0: none)
  bool save_final_params = false;  // write <dir>/final_params.f32 (the flat fp32 buffer) at the end
};

struct Config {
  // Micro-batches of one optimizer step on one data-parallel rank (what a pipeline schedules).
  int micro_batches() const { return train.global_batch / (parallel.dp * train.micro_batch); }

  ModelConfig model;
  TrainConfig train;
  DataConfig data;
  ParallelConfig parallel;
  CheckpointConfig checkpoint;
  RunConfig run;

  // checkpoint.dir as used: "" when checkpoints are off.
  std::string checkpoint_dir() const;

  // Every option with its effective value, as an INI file that load_config reads back.
  std::string to_ini() const;
};

// Reads `file` (empty: defaults only), then applies `overrides` ("--section.key=value" or
// "--section.key value"), which win over the file. Throws UserError naming the key on an unknown
// key, a malformed value or a value out of range; cross-key consistency is checked too.
Config load_config(const std::string& file, const std::vector<std::string>& overrides);

// The same from INI text (a checkpoint's saved config), `origin` naming it in messages.
Config load_config_text(const std::string& text, const std::string& origin,
                        const std::vector<std::string>& overrides = {});

// The same with the built-in reader, which load_config uses in builds without Boost (KL_BOOST=OFF):
// the one option table, read with Boost.Program_options' INI syntax, override forms and precedence.
// Built with or without Boost, so that a test can hold the two readers to the same answers.
Config load_config_text_builtin(const std::string& text, const std::string& origin,
                                const std::vector<std::string>& overrides = {});

// Checks that need the job's shape (world size): dp * pp must equal it.
void check_layout(const Config& config, int world_size);

// data.skip_batches as sorted, distinct batch numbers (>= 1). Throws UserError naming the key
// unless it is a comma-separated list of positive integers (or empty).
std::vector<int64_t> skip_batch_list(const Config& config);

// parallel.stage_layers as numbers (empty when unset). Throws UserError naming the key unless it is
// a comma-separated list of positive integers, one per chunk (pp x virtual), adding up to
// model.layers.
std::vector<int> stage_layer_counts(const Config& config);

// The --help text: every option, its default and what it means.
std::string options_help();

}  // namespace kl
