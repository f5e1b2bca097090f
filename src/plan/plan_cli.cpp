#include "src/plan/plan_cli.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>

#include "models/params.h"
#include "src/plan/calibration.h"
#include "src/plan/plan.h"
#include "src/util/error.h"

namespace kl::plan {

const char* const kPlanUsage =
    "usage:\n"
    "  kilolayer plan --config FILE --gpus N (--preset h100|h200 | --gpu-memory GB --peak-tflops X\n"
    "                 --intra-gbps A --inter-gbps B --gpus-per-node G) [--efficiency E] [--latency-us L]\n"
    "                 [--calibration FILE] [--dp N] [--pp N] [--schedule S] [--virtual V] [--micro-batch B]\n"
    "                 [--recompute none|block] [--zero 0|1] [--backend cuda|cpu] [--top K] [--out FILE]\n"
    "                 [--section.key=value ...]\n"
    "      the fastest layouts that fit (bandwidths in GB/s per GPU and direction, memory in GB)\n"
    "  kilolayer plan --config FILE --evaluate [the same hardware flags] [--calibration FILE] [...]\n"
    "      the config's own layout, stage by stage\n"
    "  kilolayer plan --config FILE --calibrate [--out FILE] [--repeats N] [...]\n"
    "      measure the config's block on this machine's CPU into a calibration file\n";

namespace {

// The plan's own flags ("--flag VALUE" or "--flag=VALUE"; the switches take none), taken out of
// args; what remains are config overrides (--section.key=value).
struct Flags {
  std::map<std::string, std::string> values;
  bool has(const std::string& name) const { return values.count(name) > 0; }
  std::string get(const std::string& name) const { return has(name) ? values.at(name) : ""; }
};

const char* const kValueFlags[] = {"--config", "--gpus", "--preset", "--gpu-memory", "--peak-tflops",
                                   "--intra-gbps", "--inter-gbps", "--gpus-per-node", "--efficiency",
                                   "--latency-us", "--calibration", "--dp", "--pp", "--schedule",
                                   "--virtual", "--micro-batch", "--recompute", "--zero", "--top",
                                   "--out", "--repeats", "--backend"};
const char* const kSwitches[] = {"--evaluate", "--calibrate"};

Flags take_flags(std::vector<std::string>& args) {
  Flags flags;
  std::vector<std::string> rest;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    const size_t equals = arg.find('=');
    const std::string name = arg.substr(0, equals);
    bool known = false;
    for (const char* flag : kSwitches) {
      if (name == flag) {
        if (equals != std::string::npos) throw UserError("plan: " + name + " takes no value");
        flags.values[name].assign(1, '1');
        known = true;
      }
    }
    for (const char* flag : kValueFlags) {
      if (name != flag) continue;
      known = true;
      if (flags.has(name)) throw UserError("plan: " + name + " is given more than once");
      if (equals != std::string::npos) {
        flags.values[name] = arg.substr(equals + 1);
      } else if (i + 1 < args.size()) {
        flags.values[name] = args[++i];
      } else {
        throw UserError("plan: " + name + " needs a value");
      }
      if (flags.values[name].empty()) throw UserError("plan: " + name + " needs a value");
    }
    if (known) continue;
    // Config overrides name a section: --section.key=value.
    if (arg.rfind("--", 0) == 0 && name.find('.') == std::string::npos) {
      throw UserError("plan: unknown option " + name + "\n" + kPlanUsage);
    }
    rest.push_back(arg);
  }
  args = rest;
  return flags;
}

double positive_number(const Flags& flags, const std::string& name) {
  const std::string text = flags.get(name);
  double value = 0;
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (error != std::errc() || end != text.data() + text.size() || !std::isfinite(value) || value <= 0) {
    throw UserError("plan: " + name + " must be a positive number, got '" + text + "'");
  }
  return value;
}

int positive_integer(const Flags& flags, const std::string& name, int low = 1) {
  const std::string text = flags.get(name);
  int value = 0;
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (error != std::errc() || end != text.data() + text.size() || value < low) {
    throw UserError("plan: " + name + " must be an integer >= " + std::to_string(low) + ", got '" + text + "'");
  }
  return value;
}

Hardware hardware_from(const Flags& flags, const RunConfig& run) {
  Hardware hw;
  if (flags.has("--preset")) {
    const auto named = preset(flags.get("--preset"), run.precision, run.tf32);
    if (!named) throw UserError("plan: unknown --preset '" + flags.get("--preset") + "' (" + preset_names() + ")");
    hw = *named;
  } else {
    for (const char* needed : {"--gpu-memory", "--peak-tflops", "--intra-gbps", "--inter-gbps", "--gpus-per-node"}) {
      if (!flags.has(needed)) {
        throw UserError(std::string("plan: ") + needed + " is required without --preset (" + preset_names() + ")");
      }
    }
  }
  if (flags.has("--gpu-memory")) hw.memory_bytes = positive_number(flags, "--gpu-memory") * 1e9;
  if (flags.has("--peak-tflops")) hw.peak_flops = positive_number(flags, "--peak-tflops") * 1e12;
  if (flags.has("--intra-gbps")) hw.intra_bandwidth = positive_number(flags, "--intra-gbps") * 1e9;
  if (flags.has("--inter-gbps")) hw.inter_bandwidth = positive_number(flags, "--inter-gbps") * 1e9;
  if (flags.has("--gpus-per-node")) hw.gpus_per_node = positive_integer(flags, "--gpus-per-node");
  if (flags.has("--efficiency")) {
    hw.compute_efficiency = positive_number(flags, "--efficiency");
    if (hw.compute_efficiency > 1) throw UserError("plan: --efficiency must be at most 1");
  }
  if (flags.has("--latency-us")) hw.intra_latency = hw.inter_latency = positive_number(flags, "--latency-us") * 1e-6;
  if (flags.has("--backend")) {  // whose attention memory to price: CUDA keeps the softmax, the CPU does not
    const std::string backend = flags.get("--backend");
    if (backend != "cuda" && backend != "cpu") throw UserError("plan: --backend must be cuda or cpu, got '" + backend + "'");
    hw.attention_keeps_probs = backend == "cuda";
  }
  return hw;
}

std::string fixed(double value, int digits) {
  char buffer[48];
  std::snprintf(buffer, sizeof buffer, "%.*f", digits, value);
  return buffer;
}

std::string gb(double bytes) { return fixed(bytes / 1e9, 2); }

void print_row(std::ostream& out, int rank, const Prediction& p) {
  char line[320];
  std::snprintf(line, sizeof line, "%-3d %-62s %9.4f %12.0f %6.1f%% %8s %7.3f %8.3f %8.3f\n", rank,
                describe(p.layout).c_str(), p.timeline.step_time, p.tokens_per_s, 100 * p.mfu,
                gb(p.peak_memory).c_str(), p.timeline.bubble, p.timeline.comm_exposed, p.timeline.comm_hidden);
  out << line;
}

int run_calibrate(const Config& config, const Flags& flags, std::ostream& out) {
  const int repeats = flags.has("--repeats") ? positive_integer(flags, "--repeats") : 10;
  const std::string path = flags.has("--out") ? flags.get("--out") : config.run.dir + "/calibration.txt";
  const Calibration c = measure(config, repeats, out);
  const std::filesystem::path parent = std::filesystem::path(path).parent_path();
  std::error_code ignored;
  if (!parent.empty()) std::filesystem::create_directories(parent, ignored);
  std::ofstream file(path);
  file << calibration_text(c);
  if (!file.flush()) throw UserError("plan: cannot write " + path);
  out << "calibration written to " << path << "\n";
  return 0;
}

}  // namespace

int run_plan(std::vector<std::string> args, std::ostream& out) {
  const Flags flags = take_flags(args);
  if (!flags.has("--config")) throw UserError("plan: --config FILE is required\n" + std::string(kPlanUsage));
  const Config config = load_config(flags.get("--config"), args);
  if (flags.has("--calibrate")) {
    for (const char* other : {"--evaluate", "--calibration", "--gpus", "--preset"}) {
      if (flags.has(other)) throw UserError(std::string("plan: --calibrate measures; it takes no ") + other);
    }
    return run_calibrate(config, flags, out);
  }
  const bool evaluate = flags.has("--evaluate");
  if (evaluate) {
    for (const char* search_flag : {"--dp", "--pp", "--schedule", "--virtual", "--micro-batch", "--recompute", "--zero",
                                    "--top", "--out"}) {
      if (flags.has(search_flag)) {
        throw UserError(std::string("plan: --evaluate predicts the config's own layout and takes no ") + search_flag +
                        " (set the layout with --parallel.* and --train.micro_batch overrides)");
      }
    }
  }
  if (!evaluate && !flags.has("--gpus")) throw UserError("plan: --gpus N is required\n" + std::string(kPlanUsage));

  Model model;
  model.config = config;
  model.hardware = hardware_from(flags, config.run);
  const int micro_batch = config.train.micro_batch;
  if (flags.has("--calibration")) {
    const std::string path = flags.get("--calibration");
    const Calibration c = read_calibration(path);
    model.costs = calibrated_costs(config.model, micro_batch, c, path);
    model.calibrated_block_bytes = c.block_bytes;
    model.calibrated_micro_batch = c.micro_batch;
  } else {
    model.costs = flop_costs(config.model, micro_batch, model.hardware);
  }
  model.costs_micro_batch = micro_batch;

  const ModelConfig& m = config.model;
  const Hardware& hw = model.hardware;
  // The header goes out with the answer: a refused request prints only its message.
  std::ostringstream header;
  header << "plan: " << m.layers << " layers, d_model " << m.d_model << ", seq_len " << m.seq_len << ", "
      << fixed(double(ParamTable(m).parameter_count()) / 1e9, 3) << " B parameters, global batch "
      << config.train.global_batch << " sequences, " << name_of(config.run.precision) << "\n"
      << "hardware: " << hw.name << ", " << fixed(hw.peak_flops / 1e12, 1) << " TFLOP/s, "
      << fixed(hw.memory_bytes / 1e9, 1) << " GB, " << hw.gpus_per_node << " per node, links "
      << fixed(hw.intra_bandwidth / 1e9, 2) << " GB/s in a node, " << fixed(hw.inter_bandwidth / 1e9, 2)
      << " GB/s between nodes\ncosts: " << model.costs.source << " (per block and micro-batch of " << micro_batch
      << ": F " << fixed(model.costs.block.forward * 1e3, 3) << " ms, B "
      << fixed(model.costs.block.backward_input * 1e3, 3) << " ms, W "
      << fixed(model.costs.block.backward_weight * 1e3, 3) << " ms)\n";

  if (evaluate) {
    Layout layout{config.parallel.dp, config.parallel.pp, config.parallel.schedule, config.parallel.virtual_chunks,
                  micro_batch, 1, config.parallel.recompute, config.parallel.zero};
    if (flags.has("--gpus") && positive_integer(flags, "--gpus") != layout.dp * layout.pp) {
      throw UserError("plan: --gpus " + flags.get("--gpus") + " is not parallel.dp x parallel.pp = " +
                      std::to_string(layout.dp * layout.pp));
    }
    const Prediction p = predict(model, layout);
    out << header.str() << "layout: " << describe(p.layout) << "\n";
    for (size_t s = 0; s < p.memory.size(); ++s) {
      out << "stage " << s << ": busy " << fixed(p.timeline.stage_busy[s], 4) << " s, waits "
          << fixed(p.timeline.stage_wait[s], 4) << " s, idle " << fixed(p.timeline.stage_idle[s], 4) << " s, "
          << p.timeline.peak_buffers[s] << " buffers, activations "
          << fixed(p.memory[s].activations / (1 << 20), 2) << " MiB, memory " << gb(p.memory[s].total())
          << " GB (weights " << gb(p.memory[s].params) << ", gradients " << gb(p.memory[s].grads) << ", AdamW "
          << gb(p.memory[s].optimizer) << ", activations " << gb(p.memory[s].activations) << ", shared "
          << gb(p.memory[s].shared) << ")\n";
    }
    std::string activation_mb;
    for (const StageMemory& mem : p.memory) {
      if (!activation_mb.empty()) activation_mb += ',';
      activation_mb += fixed(mem.activations / (1 << 20), 3);
    }
    out << "prediction: step_time_s=" << fixed(p.timeline.step_time, 5) << " bubble=" << fixed(p.timeline.bubble, 4)
        << " p2p_wait_share=" << fixed(p.timeline.p2p_wait_share, 4) << " tokens_per_s=" << fixed(p.tokens_per_s, 1)
        << " mfu=" << fixed(p.mfu, 4) << " peak_memory_gb=" << gb(p.peak_memory)
        << " comm_exposed_s=" << fixed(p.timeline.comm_exposed, 5) << " comm_hidden_s="
        << fixed(p.timeline.comm_hidden, 5) << " stage_activation_mb=" << activation_mb << "\n";
    if (!p.fits) out << "warning: " << gb(p.peak_memory) << " GB per rank exceeds " << gb(hw.memory_bytes) << " GB\n";
    return 0;
  }

  const int gpus = positive_integer(flags, "--gpus");
  Constraints constraints;
  if (flags.has("--dp")) constraints.dp = positive_integer(flags, "--dp");
  if (flags.has("--pp")) constraints.pp = positive_integer(flags, "--pp");
  if (flags.has("--virtual")) constraints.virtual_chunks = positive_integer(flags, "--virtual");
  if (flags.has("--micro-batch")) constraints.micro_batch = positive_integer(flags, "--micro-batch");
  if (flags.has("--zero")) {
    constraints.zero = positive_integer(flags, "--zero", 0);
    if (*constraints.zero > 1) throw UserError("plan: --zero must be 0 or 1");
  }
  if (flags.has("--schedule")) {
    constraints.schedule = choice_named<ScheduleKind>(flags.get("--schedule"));
    if (!constraints.schedule) {
      throw UserError("plan: unknown --schedule '" + flags.get("--schedule") + "' (" + choice_list<ScheduleKind>() + ")");
    }
  }
  if (flags.has("--recompute")) {
    constraints.recompute = choice_named<Recompute>(flags.get("--recompute"));
    if (!constraints.recompute) {
      throw UserError("plan: unknown --recompute '" + flags.get("--recompute") + "' (" + choice_list<Recompute>() + ")");
    }
  }
  const int top = flags.has("--top") ? positive_integer(flags, "--top") : 5;

  const SearchResult result = search(model, gpus, constraints, top);
  if (result.best.empty()) {
    std::string why = "plan: no layout of " + std::to_string(gpus) + " GPUs fits in " + gb(hw.memory_bytes) +
                      " GB per GPU (" + std::to_string(result.considered) + " considered)";
    if (result.smallest) {
      why += "; the smallest, " + describe(result.smallest->layout) + ", needs " + gb(result.smallest->peak_memory) +
             " GB";
    }
    throw UserError(why);
  }
  out << header.str() << "searched " << result.considered << " layouts of " << gpus << " GPUs, " << result.fitting << " fit in "
      << gb(hw.memory_bytes) << " GB\n";
  char columns[320];
  std::snprintf(columns, sizeof columns, "%-3s %-62s %9s %12s %7s %8s %7s %8s %8s\n", "#", "layout", "step_s",
                "tokens/s", "MFU", "mem_GB", "bubble", "exposed", "hidden");
  out << columns;
  for (size_t i = 0; i < result.best.size(); ++i) print_row(out, static_cast<int>(i + 1), result.best[i]);
  const Prediction& best = result.best.front();
  out << "best: " << overrides(best.layout) << "\n"
      << "launch: launch/mpirun.sh --config " << flags.get("--config") << " " << overrides(best.layout)
      << "   (or: sbatch -n " << gpus << " launch/slurm/train.sbatch " << flags.get("--config") << " "
      << overrides(best.layout) << ")\n";
  if (flags.has("--out")) {
    const std::string path = flags.get("--out");
    std::ofstream file(path);
    file << overrides(best.layout) << "\n";
    if (!file.flush()) throw UserError("plan: cannot write " + path);
    out << "overrides written to " << path << "\n";
  }
  return 0;
}

}  // namespace kl::plan
