#include "src/config/config.h"

#ifdef KL_HAVE_BOOST
#include <boost/program_options.hpp>
#endif

#include <algorithm>
#include <cctype>
#include <charconv>
#include <fstream>
#include <functional>
#include <iomanip>
#include <map>
#include <set>
#include <sstream>

#include "src/util/error.h"

namespace kl {
namespace {

#ifdef KL_HAVE_BOOST
namespace po = boost::program_options;
#endif

template <class V>
std::string to_text(const V& value) {
  if constexpr (std::is_same_v<V, bool>) {
    return value ? "true" : "false";
  } else if constexpr (std::is_same_v<V, std::string>) {
    return value;
  } else if constexpr (std::is_enum_v<V>) {
    return name_of(value);
  } else if constexpr (std::is_floating_point_v<V>) {
    char buffer[64];
    auto result = std::to_chars(buffer, buffer + sizeof buffer, value);  // shortest round-trip form
    return std::string(buffer, result.ptr);
  } else {
    return std::to_string(value);
  }
}

// Text to a value as Boost.Program_options reads it (boost::lexical_cast, which takes a leading '+';
// Boost's own words for a bool), for the built-in reader. False when the text is malformed.
template <class V>
bool from_text(const std::string& text, V* value) {
  if constexpr (std::is_same_v<V, std::string>) {
    *value = text;
    return true;
  } else if constexpr (std::is_same_v<V, bool>) {
    std::string word;
    for (char ch : text) word += static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    if (word.empty() || word == "on" || word == "yes" || word == "1" || word == "true") {
      *value = true;
    } else if (word == "off" || word == "no" || word == "0" || word == "false") {
      *value = false;
    } else {
      return false;
    }
    return true;
  } else {
    const char* first = text.data();
    const char* const last = first + text.size();
    if (last - first > 1 && first[0] == '+' && first[1] != '-') ++first;
    V parsed{};
    const auto [end, error] = std::from_chars(first, last, parsed);
    if (error != std::errc() || end != last) return false;
    *value = parsed;
    return true;
  }
}

// A rule on one value: returns "" when the value is fine, else what is wrong with it.
template <class V>
using Rule = std::function<std::string(const V&)>;

template <class V>
Rule<V> at_least(V low) {
  return [low](const V& v) { return v >= low ? "" : "must be at least " + to_text(low); };
}
template <class V>
Rule<V> between(V low, V high) {
  return [low, high](const V& v) {
    return (v >= low && v <= high) ? "" : "must be in [" + to_text(low) + ", " + to_text(high) + "]";
  };
}
Rule<double> below_one() {
  return [](const double& v) { return (v >= 0.0 && v < 1.0) ? "" : "must be in [0, 1)"; };
}

// The one option table: every key, its default (the field's initial value), help and rule. Both
// readers take their keys from it: Boost.Program_options through description(), the built-in one
// through find() and assign().
class OptionTable {
 public:
  explicit OptionTable(Config& config) { define(config); }

#ifdef KL_HAVE_BOOST
  const po::options_description& description() const { return description_; }
#endif

  // The entry named `name`; on the command line also a unique prefix of one (Boost's default
  // allow_guessing). Throws UserError (`where`: "... : ") on an unknown or ambiguous name.
  const std::string& find(const std::string& name, bool guess, const std::string& where) const {
    std::vector<const std::string*> prefixed;
    for (const auto& entry : entries_) {
      if (entry.name == name) return entry.name;
      if (guess && !name.empty() && entry.name.rfind(name, 0) == 0) prefixed.push_back(&entry.name);
    }
    if (prefixed.size() == 1) return *prefixed[0];
    if (prefixed.empty()) throw UserError(where + "unknown key " + name);
    std::string candidates;
    for (const auto* candidate : prefixed) candidates += (candidates.empty() ? "" : ", ") + *candidate;
    throw UserError(where + name + " is ambiguous: " + candidates);
  }

  // Sets the field of `name` (a name find returned) from text; false when the text is malformed.
  bool assign(const std::string& name, const std::string& text) const {
    for (const auto& entry : entries_) {
      if (entry.name == name) return entry.assign(text);
    }
    return false;
  }

  // Boost.Program_options' --help layout: "  --key arg (=default)   help".
  std::string help() const {
    std::ostringstream out;
    out << "kilolayer options:\n";
    for (const auto& entry : entries_) {
      const std::string left = "  --" + entry.name + " arg (=" + entry.default_text + ")";
      out << std::left << std::setw(44) << left << (left.size() >= 44 ? " " : "") << entry.help << "\n";
    }
    return out.str();
  }

  void check_values() const {
    for (const auto& entry : entries_) {
      std::string problem = entry.check();
      if (!problem.empty()) {
        throw UserError("config: " + entry.name + " = " + entry.print() + ": " + problem);
      }
    }
  }

  std::string to_ini() const {
    std::ostringstream out;
    std::string section;
    for (const auto& entry : entries_) {
      const auto dot = entry.name.find('.');
      const std::string this_section = entry.name.substr(0, dot);
      if (this_section != section) {
        out << (section.empty() ? "" : "\n") << "[" << this_section << "]\n";
        section = this_section;
      }
      out << entry.name.substr(dot + 1) << " = " << entry.print() << "\n";
    }
    return out.str();
  }

 private:
  struct Entry {
    std::string name, help, default_text;
    std::function<std::string()> print;
    std::function<std::string()> check;
    std::function<bool(const std::string&)> assign;
  };

  // A choice (an enum of config.h): read and written by name; any other text is refused at once,
  // by either reader, with the key, the text and the names.
  template <class E>
  void add_choice(const char* name, E* field, const char* help) {
    const std::string key = name;
    auto set = [key, field](const std::string& text) {
      const std::optional<E> value = choice_named<E>(text);
      if (!value) throw UserError("config: " + key + " = " + text + ": must be one of " + choice_list<E>());
      *field = *value;
    };
    const std::string full_help = std::string(help) + ": " + choice_list<E>();
#ifdef KL_HAVE_BOOST
    auto* semantic = po::value<std::string>()->default_value(name_of(*field))->notifier(set);
    description_.add_options()(name, semantic, full_help.c_str());
#endif
    entries_.push_back({name, full_help, name_of(*field), [field] { return std::string(name_of(*field)); },
                        [] { return std::string(); },
                        [set](const std::string& text) {
                          set(text);
                          return true;
                        }});
  }

  template <class V>
  void add(const char* name, V* field, const char* help, Rule<V> rule = {}) {
#ifdef KL_HAVE_BOOST
    auto* semantic = po::value<V>(field)->default_value(*field, to_text(*field));
    description_.add_options()(name, semantic, help);
#endif
    entries_.push_back({name, help, to_text(*field), [field] { return to_text(*field); },
                        [field, rule] { return rule ? rule(*field) : std::string(); },
                        [field](const std::string& text) { return from_text(text, field); }});
  }

  void define(Config& c) {
    auto& m = c.model;
    add("model.layers", &m.layers, "number of Transformer blocks", between(1, 100000));
    add("model.d_model", &m.d_model, "width of the residual stream", between(1, 1 << 20));
    add("model.heads", &m.heads, "attention heads (must divide d_model)", at_least(1));
    add("model.d_ff", &m.d_ff, "MLP hidden width (0: 4 x d_model)", between(0, 1 << 22));
    add("model.seq_len", &m.seq_len, "context length in tokens", between(1, 1 << 20));
    add("model.vocab", &m.vocab, "vocabulary size (the tokenizer's; shards of up to 65536 hold uint16 tokens, larger ones uint32)",
        between(1, 1 << 24));
    add("model.vocab_padded", &m.vocab_padded,
        "rows of the embedding and LM head (0: model.vocab); the rows past model.vocab are zero padding, outside "
        "the softmax and the loss (llm.c pads GPT-2's 50257 to 50304)", between(0, 1 << 24));
    add_choice("model.residual", &m.residual, "residual stream variant");
    add("model.layerscale_init", &m.layerscale_init, "layerscale: initial per-channel branch scale (0: zero-gamma)",
        between(0.0, 10.0));
    add("model.stochastic_depth", &m.stochastic_depth,
        "drop-path probability of the last block, rising linearly from 0 over depth (0: off)", below_one());
    add_choice("model.depth_scaling", &m.depth_scaling,
               "depth parametrisation: branch multiplier (base_layers/layers)^alpha, alpha 0 (standard), 1/2 "
               "(depth_mup), 1 (completep), with the matching learning rate and AdamW epsilon of block tensors");
    add("model.base_layers", &m.base_layers,
        "L0 of model.depth_scaling: the depth the hyperparameters were tuned at (0: unset; standard ignores it)",
        between(0, 100000));
    add("model.dropout", &m.dropout, "dropout on embeddings and each branch output", below_one());
    add("model.tie_embeddings", &m.tie_embeddings, "LM head shares the token embedding");

    auto& t = c.train;
    add("train.steps", &t.steps, "optimizer steps", at_least<int64_t>(1));
    add("train.global_batch", &t.global_batch, "sequences per optimizer step", at_least(1));
    add("train.micro_batch", &t.micro_batch, "sequences per forward/backward", at_least(1));
    add("train.lr", &t.lr, "peak learning rate", between(0.0, 10.0));
    add("train.min_lr", &t.min_lr, "learning rate at the end of the decay (cosine, linear, wsd) and the floor of "
        "inverse_sqrt", between(0.0, 10.0));
    add("train.warmup", &t.warmup, "steps of linear warmup", at_least<int64_t>(0));
    add_choice("train.schedule", &t.schedule, "learning rate after the warmup (docs/sampling.md)");
    add("train.decay_steps", &t.decay_steps,
        "steps of the schedule's horizon after the warmup (0: train.steps - train.warmup); set it to extend a "
        "run's train.steps later without changing its earlier learning rates", at_least<int64_t>(0));
    add("train.wsd_decay_fraction", &t.wsd_decay_fraction,
        "wsd: the last fraction of the horizon, over which the rate falls linearly from train.lr to "
        "train.min_lr (stable at train.lr before it)", between(0.0, 1.0));
    add("train.weight_decay", &t.weight_decay, "AdamW decoupled weight decay", between(0.0, 10.0));
    add("train.beta1", &t.beta1, "AdamW beta1", below_one());
    add("train.beta2", &t.beta2, "AdamW beta2", below_one());
    add("train.eps", &t.eps, "AdamW epsilon", between(0.0, 1.0));
    add("train.clip", &t.clip, "global gradient-norm limit (0: no clipping)", at_least(0.0));
    add("train.seed", &t.seed, "seed of initialisation, data order and dropout", at_least<int64_t>(0));
    add("train.eval_every", &t.eval_every, "steps between validations (0: only at the end)",
        at_least<int64_t>(0));
    add("train.eval_batches", &t.eval_batches, "validation batches of global_batch sequences",
        at_least(1));

    add_choice("train.nonfinite", &t.nonfinite,
        "a non-finite loss or gradient norm: skip the step (every rank leaves the parameters as they are) or "
        "abort");
    add("train.max_skips", &t.max_skips, "consecutive skipped steps after which the run stops", between(0, 1000000));
    add_choice("train.spike_policy", &t.spike_policy,
        "a finite loss or gradient norm more than train.spike_sigma deviations above the last "
        "train.spike_window steps: off, skip the step, or roll back to the last checkpoint and skip that batch");
    add("train.spike_sigma", &t.spike_sigma, "standard deviations above the window's mean that make a spike",
        between(0.5, 1e6));
    add("train.spike_window", &t.spike_window, "admitted steps the spike statistics are taken over (judging starts "
        "once it is full)", between(2, 1000000));
    add("data.train", &c.data.train, "training token shards (comma-separated; globs allowed)");
    add("data.val", &c.data.val, "validation token shards (comma-separated; globs allowed)");
    add("data.skip_batches", &c.data.skip_batches,
        "training batches never used, by number, e.g. 7,12: step k takes the k-th batch not skipped");

    add("parallel.dp", &c.parallel.dp, "data-parallel ranks", at_least(1));
    add("parallel.pp", &c.parallel.pp, "pipeline stages", at_least(1));
    add_choice("parallel.schedule", &c.parallel.schedule, "pipeline schedule");
    add("parallel.virtual", &c.parallel.virtual_chunks,
        "model chunks per pipeline stage (interleaved schedule)", between(1, 64));
    add("parallel.stage_layers", &c.parallel.stage_layers,
        "blocks per pipeline chunk in order, e.g. 5,4,4,3 (empty: balanced by a FLOP cost model)");
    add_choice("parallel.recompute", &c.parallel.recompute,
        "activation recomputation (block: keep only each block's input)");
    add("parallel.bucket_mb", &c.parallel.bucket_mb,
        "gradient bucket size in MiB (all-reduce, or ZeRO-1's reduce-scatter and all-gather)",
        between(0.001, 4096.0));
    add("parallel.overlap", &c.parallel.overlap,
        "start each bucket's all-reduce (ZeRO-1: reduce-scatter) during the backward pass and let the next "
        "forward pass wait for ZeRO-1's all-gathers bucket by bucket (false: all after the backward pass)");
    add("parallel.zero", &c.parallel.zero, "1: ZeRO-1, optimizer state sharded over the dp group",
        between(0, 1));
    add("parallel.timeout_s", &c.parallel.timeout_s,
        "seconds a rank may wait on one communication (or checkpoint write) before the job is ended "
        "with exit 4 and a report of the operations (0: wait forever)", between(0.0, 1e7));

    add("checkpoint.dir", &c.checkpoint.dir,
        "checkpoint directory (empty: <run.dir>/checkpoints; none: no checkpoints)");
    add("checkpoint.every", &c.checkpoint.every, "steps between checkpoints (0: only at the end)",
        at_least<int64_t>(0));
    add("checkpoint.async", &c.checkpoint.async,
        "write each checkpoint on a background thread while training goes on (false: training waits for the "
        "write, fsync and commit)");
    add("checkpoint.keep", &c.checkpoint.keep, "newest checkpoints to keep", between(1, 1000000));
    add("checkpoint.resume", &c.checkpoint.resume,
        "auto (the latest checkpoint in checkpoint.dir, if any) | never | PATH of a checkpoint");
    add("checkpoint.allow_world_writable", &c.checkpoint.allow_world_writable,
        "accept a world-writable checkpoint.dir (refused by default: anyone could plant files or links there)");
    add("checkpoint.allow_data_change", &c.checkpoint.allow_data_change,
        "resume although the training or validation shards differ from those the checkpoint was saved with");
    add("run.dir", &c.run.dir, "run directory (metrics.jsonl, config.ini)");
    add("run.log_every", &c.run.log_every, "steps between progress lines and metrics rows",
        at_least<int64_t>(1));
    add("run.threads", &c.run.threads, "CPU threads (0: every core)", between(0, 1024));
    add_choice("run.device", &c.run.device, "where this rank's stage runs (cuda: its GPU; needs the CUDA build)");
    add_choice("run.precision", &c.run.precision,
        "bf16: matrix products on bf16 operands with fp32 sums; fp32 master weights, optimizer state, "
        "residual stream and reductions (cuda: bf16 activations and weight copies too; cpu: needs "
        "avx512_bf16 and the oneDNN build)");
    add("run.tf32", &c.run.tf32, "cuda, fp32: let matrix products use TF32 tensor cores");
    add("run.diag_every", &c.run.diag_every,
        "steps between per-layer residual-stream diagnostics in <run.dir>/diagnostics.h5 (0: none; "
        "step 1 is always diagnosed when on)", at_least<int64_t>(0));
    add("run.stop_after", &c.run.stop_after,
        "end this process after this optimizer step, with a checkpoint (0: train.steps)", at_least<int64_t>(0));
    add("run.save_final_params", &c.run.save_final_params,
        "write <run.dir>/final_params.f32, the flat fp32 parameter buffer, at the end");
    add("run.sample_every", &c.run.sample_every,
        "steps between short generated samples printed during training (0: none; does not change training)",
        at_least<int64_t>(0));
  }

#ifdef KL_HAVE_BOOST
  po::options_description description_{"kilolayer options"};
#endif
  std::vector<Entry> entries_;
};

// Settings that only mean something on the GPU. The GPU runs the same walk as the CPU, so nothing
// else is refused here; whether this binary has the CUDA backend and this machine a GPU is asked
// when training starts (src/pipeline/pipeline_worker.cpp, src/cuda/device.h), not here: a
// checkpoint's saved config must load on any build.
void check_device(const Config& c) {
  auto fail = [](const std::string& message) { throw UserError("config: " + message); };
  if (c.run.device != Device::kCuda) {
    if (c.run.tf32) fail("run.tf32 = true needs run.device = cuda");
  }
}

// What this build leaves out (CMake's KL_HDF5=OFF), refused before any work, naming the key.
void check_build(const Config& c) {
#ifndef KL_HAVE_HDF5
  auto fail = [](const std::string& message) {
    throw UserError("config: " + message + " (this kilolayer was built without HDF5, -DKL_HDF5=OFF, which "
                    "checkpoints and diagnostics need)");
  };
  if (c.checkpoint.dir != "none") {
    fail("checkpoint.dir = '" + c.checkpoint.dir + "' asks for checkpoints: set checkpoint.dir = none");
  }
  if (c.checkpoint.resume != "auto" && c.checkpoint.resume != "never") {
    fail("checkpoint.resume = " + c.checkpoint.resume + " cannot be read");
  }
  if (c.run.diag_every > 0) {
    fail("run.diag_every = " + to_text(c.run.diag_every) + " asks for diagnostics.h5: set run.diag_every = 0");
  }
#else
  (void)c;
#endif
}

// Depth-muP and CompleteP scale a branch that is added to an untouched identity path; a variant
// whose stream is renormalised or gated after every sum, or that scales its branches itself, has no
// such branch to scale (models/residual.h: depth_scaling_applies).
void check_depth_scaling(const ModelConfig& m) {
  if (m.depth_scaling == DepthScaling::kStandard) return;
  const std::string what = std::string("model.depth_scaling = ") + name_of(m.depth_scaling);
  const char* why = nullptr;
  switch (m.residual) {
    case Residual::kPreNorm:
    case Residual::kPlain:
    case Residual::kLayerScale: break;
    case Residual::kPostNorm: why = "post-norm's LayerNorm after every sum renormalises the stream, so a branch "
                                    "multiplier does not set the branch's share of it"; break;
    case Residual::kDeepNorm: why = "DeepNorm has its own depth scaling (alpha = (2N)^(1/4) on the identity path, "
                                    "beta = (8N)^(-1/4) on the initialisation)"; break;
    case Residual::kReZero: why = "ReZero's learned branch scale starts at 0 and is its own depth control"; break;
    case Residual::kHighway: why = "highway's learned gate mixes branch and stream, so there is no additive "
                                   "branch to scale"; break;
  }
  if (why) {
    throw UserError("config: " + what + " does not combine with model.residual = " + name_of(m.residual) + ": " +
                    why + " (use prenorm, plain or layerscale, or model.depth_scaling = standard)");
  }
  if (m.base_layers < 1) {
    throw UserError("config: " + what + " needs model.base_layers = L0, the depth the learning rate was tuned at "
                    "(the branch multiplier is (L0 / model.layers)^alpha)");
  }
}

void check_consistency(const Config& c) {
  auto fail = [](const std::string& message) { throw UserError("config: " + message); };
  if (c.model.d_model % c.model.heads != 0) {
    fail("model.heads = " + to_text(c.model.heads) + " does not divide model.d_model = " +
         to_text(c.model.d_model));
  }
  if (c.train.global_batch % c.train.micro_batch != 0) {
    fail("train.global_batch = " + to_text(c.train.global_batch) +
         " is not a multiple of train.micro_batch = " + to_text(c.train.micro_batch));
  }
  if (c.parallel.schedule == ScheduleKind::kZB1 && c.model.residual != Residual::kPreNorm) {
    fail(std::string("parallel.schedule = zb1 splits the backward pass of pre-norm blocks only; model.residual = ") +
         name_of(c.model.residual) + " needs another schedule");
  }
  check_depth_scaling(c.model);
  if (c.train.min_lr > c.train.lr) {
    fail("train.min_lr = " + to_text(c.train.min_lr) + " exceeds train.lr = " + to_text(c.train.lr));
  }
  if (c.model.vocab_padded != 0 && c.model.vocab_padded < c.model.vocab) {
    fail("model.vocab_padded = " + to_text(c.model.vocab_padded) + " is smaller than model.vocab = " +
         to_text(c.model.vocab) + " (0: no padding)");
  }
  if (c.model.layers < c.parallel.pp) {
    fail("model.layers = " + to_text(c.model.layers) + " is smaller than parallel.pp = " +
         to_text(c.parallel.pp));
  }
  if (c.parallel.virtual_chunks > 1 && c.parallel.schedule != ScheduleKind::kInterleaved) {
    fail("parallel.virtual = " + to_text(c.parallel.virtual_chunks) +
         " needs parallel.schedule = interleaved (got " + name_of(c.parallel.schedule) + ")");
  }
  if (c.model.layers < c.parallel.pp * c.parallel.virtual_chunks) {
    fail("model.layers = " + to_text(c.model.layers) + " is smaller than parallel.pp x parallel.virtual = " +
         to_text(c.parallel.pp * c.parallel.virtual_chunks) + " (every chunk needs a block)");
  }
  stage_layer_counts(c);
  skip_batch_list(c);
  if (c.train.spike_policy == SpikePolicy::kRollback && c.checkpoint_dir().empty()) {
    fail("train.spike_policy = rollback rolls back to the last checkpoint: it needs checkpoints (checkpoint.dir "
         "is none)");
  }
  check_device(c);
  check_build(c);
  // In doubles: huge widths must be refused here, not overflow the int64 sizes computed later.
  const double d = c.model.d_model, ff = c.model.ff_width();
  const double parameters =
      c.model.layers * (4 * d * d + 2 * d * ff) + (double(c.model.padded_vocab()) + c.model.seq_len) * d;
  if (parameters > double(int64_t{1} << 40)) {
    fail("the model has about " + to_text(parameters) + " parameters, more than kilolayer supports (2^40)");
  }
  const int64_t tokens_per_micro = int64_t{c.train.micro_batch} * c.model.seq_len;
  if (tokens_per_micro * std::max(c.model.padded_vocab(), c.model.ff_width()) > (int64_t{1} << 40)) {
    fail("train.micro_batch x model.seq_len is too large for one forward pass");
  }
}

}  // namespace

namespace {

std::string trim(const std::string& text) {
  const char* space = " \t\r\n";
  const size_t first = text.find_first_not_of(space);
  if (first == std::string::npos) return "";
  return text.substr(first, text.find_last_not_of(space) - first + 1);
}

// The built-in reader: Boost.Program_options' rules, so that either build reads a config the same way.
//   INI: '#' starts a comment anywhere on a line; "[section]" prefixes the keys below it with
//   "section."; "key = value", both trimmed; any other non-empty line is malformed.
//   Overrides: "--key=value" or "--key value", a key also by a unique prefix.
//   Precedence: an override wins, and the file's line for that key is not even read; a key twice in
//   one source is an error. Unknown keys and syntax are checked before any value is converted.
Config parse_builtin(const std::string* text, const std::string& origin, const std::vector<std::string>& overrides) {
  Config config;
  const OptionTable table(config);
  std::vector<std::pair<std::string, std::string>> given;  // key, value: the command line's
  std::set<std::string> given_keys;
  for (size_t i = 0; i < overrides.size(); ++i) {
    const std::string& arg = overrides[i];
    if (arg.size() < 3 || arg.rfind("--", 0) != 0) {
      throw UserError("command line: unexpected argument '" + arg + "' (options are --section.key=value)");
    }
    const size_t equals = arg.find('=');
    const std::string& key = table.find(arg.substr(2, equals == std::string::npos ? std::string::npos : equals - 2),
                                        /*guess=*/true, "command line: ");
    std::string value;
    if (equals != std::string::npos) {
      value = arg.substr(equals + 1);
      if (value.empty()) throw UserError("command line: " + arg + " has no value after '='");
    } else {
      if (i + 1 >= overrides.size() || overrides[i + 1].rfind("--", 0) == 0) {
        throw UserError("command line: " + key + " needs a value");
      }
      value = overrides[++i];
    }
    if (!given_keys.insert(key).second) throw UserError("command line: " + key + " is given more than once");
    given.emplace_back(key, value);
  }
  for (const auto& [key, value] : given) {
    if (!table.assign(key, value)) throw UserError("command line: malformed value for " + key);
  }
  if (!text) return config;

  const std::string where = "config " + origin + ": ";
  std::vector<std::pair<std::string, std::string>> lines;  // key, value
  std::istringstream in(*text);
  std::string prefix;
  for (std::string line; std::getline(in, line);) {
    line = trim(line.substr(0, line.find('#')));
    if (line.empty()) continue;
    if (line.front() == '[' && line.back() == ']') {
      prefix = line.substr(1, line.size() - 2);
      if (prefix.empty() || prefix.back() != '.') prefix += '.';
      continue;
    }
    const size_t equals = line.find('=');
    if (equals == std::string::npos) throw UserError(where + "malformed line '" + line + "'");
    lines.emplace_back(table.find(prefix + trim(line.substr(0, equals)), /*guess=*/false, where),
                       trim(line.substr(equals + 1)));
  }
  std::set<std::string> seen;
  for (const auto& [key, value] : lines) {
    if (given_keys.count(key)) continue;
    if (!seen.insert(key).second) throw UserError(where + key + " is given more than once");
    if (!table.assign(key, value)) throw UserError(where + "malformed value for " + key);
  }
  return config;
}

Config check(Config config) {
  const OptionTable table(config);
  table.check_values();
  check_consistency(config);
  return config;
}

#ifdef KL_HAVE_BOOST
// Boost.Program_options' own message for an error that names an option substitutes placeholders
// (%value%, %canonical_option%, ...) in a loop that never ends when the offending text contains
// one (found by tests/fuzz/fuzz_config.cpp): those errors are described here, without what().
std::string describe(const po::error& e) {
  const auto* named = dynamic_cast<const po::error_with_option_name*>(&e);
  if (!named) return e.what();
  const std::string key = named->get_option_name();
  if (dynamic_cast<const po::unknown_option*>(&e)) return "unknown key " + key;
  if (dynamic_cast<const po::multiple_occurrences*>(&e)) return key + " is given more than once";
  if (dynamic_cast<const po::invalid_option_value*>(&e)) return "malformed value for " + key;
  if (dynamic_cast<const po::required_option*>(&e)) return key + " is required";
  if (dynamic_cast<const po::invalid_syntax*>(&e)) return "malformed line" + (key.empty() ? "" : " at " + key);
  return "cannot read " + (key.empty() ? std::string("a line") : key);
}

// Overrides first (program_options keeps the first value stored for a key), then the INI text.
Config parse_boost(std::istream* in, const std::string& origin, const std::vector<std::string>& overrides) {
  Config config;
  const OptionTable table(config);
  po::variables_map values;
  try {
    const po::parsed_options parsed = po::command_line_parser(overrides).options(table.description()).run();
    // A token that is no option's (model.layers=3, its dashes forgotten) would be dropped in silence.
    for (const auto& token : po::collect_unrecognized(parsed.options, po::include_positional)) {
      throw UserError("command line: unexpected argument '" + token + "' (options are --section.key=value)");
    }
    po::store(parsed, values);
  } catch (const po::error& e) {
    throw UserError("command line: " + describe(e));
  }
  if (in) {
    try {
      po::store(po::parse_config_file(*in, table.description(), /*allow_unregistered=*/false), values);
    } catch (const po::error& e) {
      throw UserError("config " + origin + ": " + describe(e));
    }
  }
  try {
    po::notify(values);
  } catch (const po::error& e) {
    throw UserError("config: " + describe(e));
  }
  return config;
}
#endif

// `text` null: defaults and overrides only.
Config parse(const std::string* text, const std::string& origin, const std::vector<std::string>& overrides) {
#ifdef KL_HAVE_BOOST
  std::istringstream in(text ? *text : std::string());
  return check(parse_boost(text ? &in : nullptr, origin, overrides));
#else
  return check(parse_builtin(text, origin, overrides));
#endif
}

}  // namespace

Config load_config(const std::string& file, const std::vector<std::string>& overrides) {
  if (file.empty()) return parse(nullptr, "", overrides);
  std::ifstream in(file);
  if (!in) throw UserError("config: cannot open " + file);
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) throw UserError("config: cannot read " + file);
  const std::string contents = text.str();
  return parse(&contents, file, overrides);
}

Config load_config_text(const std::string& text, const std::string& origin,
                        const std::vector<std::string>& overrides) {
  return parse(&text, origin, overrides);
}

Config load_config_text_builtin(const std::string& text, const std::string& origin,
                                const std::vector<std::string>& overrides) {
  return check(parse_builtin(&text, origin, overrides));
}

std::string Config::checkpoint_dir() const {
  if (checkpoint.dir == "none") return "";
  return checkpoint.dir.empty() ? run.dir + "/checkpoints" : checkpoint.dir;
}

void check_layout(const Config& c, int world_size) {
  const int ranks = c.parallel.dp * c.parallel.pp;
  if (ranks != world_size) {
    throw UserError("config: parallel.dp x parallel.pp = " + to_text(ranks) +
                    " but the job has " + to_text(world_size) + " rank(s)");
  }
  if (c.train.global_batch % (c.parallel.dp * c.train.micro_batch) != 0) {
    throw UserError("config: train.global_batch = " + to_text(c.train.global_batch) +
                    " is not divisible by parallel.dp x train.micro_batch = " +
                    to_text(c.parallel.dp * c.train.micro_batch));
  }
  const int micro_batches = c.micro_batches();
  if (c.parallel.schedule == ScheduleKind::kInterleaved && micro_batches % c.parallel.pp != 0) {
    throw UserError("config: parallel.schedule = interleaved needs the micro-batches per step (" +
                    to_text(micro_batches) + " = train.global_batch / (parallel.dp x train.micro_batch)) "
                    "to be a multiple of parallel.pp = " + to_text(c.parallel.pp));
  }
}

std::vector<int64_t> skip_batch_list(const Config& c) {
  std::vector<int64_t> batches;
  const std::string& text = c.data.skip_batches;
  size_t start = 0;
  while (!text.empty() && start <= text.size()) {
    const size_t comma = std::min(text.find(',', start), text.size());
    const std::string item = text.substr(start, comma - start);
    int64_t value = 0;
    const auto [end, error] = std::from_chars(item.data(), item.data() + item.size(), value);
    if (item.empty() || error != std::errc() || end != item.data() + item.size() || value < 1) {
      throw UserError("config: data.skip_batches = " + text + ": '" + item + "' is not a positive integer");
    }
    batches.push_back(value);
    start = comma + 1;
  }
  std::sort(batches.begin(), batches.end());
  batches.erase(std::unique(batches.begin(), batches.end()), batches.end());
  return batches;
}

std::vector<int> stage_layer_counts(const Config& c) {
  std::vector<int> counts;
  const std::string& text = c.parallel.stage_layers;
  if (text.empty()) return counts;
  const int chunks = c.parallel.pp * c.parallel.virtual_chunks;
  auto fail = [&](const std::string& why) {
    throw UserError("config: parallel.stage_layers = " + text + ": " + why);
  };
  size_t start = 0;
  while (start <= text.size()) {
    const size_t comma = std::min(text.find(',', start), text.size());
    const std::string item = text.substr(start, comma - start);
    int value = 0;
    const auto [end, error] = std::from_chars(item.data(), item.data() + item.size(), value);
    if (item.empty() || error != std::errc() || end != item.data() + item.size() || value < 1) {
      fail("'" + item + "' is not a positive integer");
    }
    counts.push_back(value);
    start = comma + 1;
  }
  int64_t sum = 0;
  for (int n : counts) sum += n;
  if (static_cast<int>(counts.size()) != chunks || sum != c.model.layers) {
    fail("needs " + to_text(chunks) + " counts (parallel.pp x parallel.virtual) adding up to model.layers = " +
         to_text(c.model.layers) + ", got " + to_text(counts.size()) + " adding up to " + to_text(sum));
  }
  return counts;
}

std::string Config::to_ini() const {
  Config copy = *this;
  return OptionTable(copy).to_ini();
}

std::string options_help() {
  Config config;
#ifdef KL_HAVE_BOOST
  std::ostringstream out;
  out << OptionTable(config).description();
  return out.str();
#else
  return OptionTable(config).help();
#endif
}

}  // namespace kl
