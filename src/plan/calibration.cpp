#include "src/plan/calibration.h"

#include <algorithm>
#include <chrono>
#include <charconv>
#include <cmath>
#include <cstring>
#include <fstream>
#include <functional>
#include <map>
#include <random>
#include <sstream>
#include <vector>

#include "models/backend.h"
#include "models/params.h"
#include "models/vector_ops.h"
#include "src/pipeline/stage.h"
#include "src/train/optimizer.h"
#include "src/train/trainer.h"
#include "src/util/error.h"

namespace kl::plan {
namespace {

// The file's keys, each bound to its field: integers (the shape) and reals (the costs), with the
// smallest value allowed (reals: > 0, or >= 0 for the extras that can be too small to measure).
struct Key {
  const char* name;
  int Calibration::*integer;
  double Calibration::*real;
  bool may_be_zero;
};
constexpr Key kKeys[] = {
    {"d_model", &Calibration::d_model, nullptr, false},
    {"heads", &Calibration::heads, nullptr, false},
    {"d_ff", &Calibration::d_ff, nullptr, false},
    {"seq_len", &Calibration::seq_len, nullptr, false},
    {"vocab", &Calibration::vocab, nullptr, false},
    {"micro_batch", &Calibration::micro_batch, nullptr, false},
    {"threads", &Calibration::threads, nullptr, false},
    {"forward_s", nullptr, &Calibration::forward, false},
    {"backward_input_s", nullptr, &Calibration::backward_input, false},
    {"backward_weight_s", nullptr, &Calibration::backward_weight, false},
    {"embedding_forward_s", nullptr, &Calibration::embedding_forward, true},
    {"embedding_backward_s", nullptr, &Calibration::embedding_backward, true},
    {"head_forward_s", nullptr, &Calibration::head_forward, true},
    {"head_backward_s", nullptr, &Calibration::head_backward, true},
    {"update_per_param_s", nullptr, &Calibration::update_per_param, false},
    {"block_bytes", nullptr, &Calibration::block_bytes, false},
    {"copy_bytes_per_s", nullptr, &Calibration::copy_bandwidth, false},
};

std::string trim(const std::string& text) {
  const size_t first = text.find_first_not_of(" \t\r");
  if (first == std::string::npos) return "";
  return text.substr(first, text.find_last_not_of(" \t\r") - first + 1);
}

using Clock = std::chrono::steady_clock;

double median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  return values[values.size() / 2];
}

// The median seconds of `run` over `repeats` calls after one warm-up call.
double time_median(int repeats, const std::function<void()>& run) {
  run();
  std::vector<double> seconds;
  for (int i = 0; i < repeats; ++i) {
    const auto start = Clock::now();
    run();
    seconds.push_back(std::chrono::duration<double>(Clock::now() - start).count());
  }
  return median(seconds);
}

using Cpu = CpuBackend<float>;

// One stage of `blocks` blocks (global layers [0, blocks)) that holds the embeddings (`first`), the
// head (`last`), or neither (a middle stage of three), built for the split backward pass, and the
// median seconds of its forward, input-part and weight-part passes over one micro-batch.
struct StageTimes {
  double forward, backward_input, backward_weight;
};
StageTimes time_stage(const ModelConfig& model, int micro_batch, int blocks, bool first, bool last, int repeats) {
  pipeline::StageLayout layout;
  layout.stages = first && last ? 1 : 3;
  layout.stage = first ? 0 : (last ? layout.stages - 1 : 1);
  layout.ranges = {{0, blocks}};
  Cpu backend;
  pipeline::Stage<Cpu> stage(backend, model, layout, micro_batch, 1, /*recompute=*/false, /*split=*/true, 1);
  stage.init(1);
  const int64_t tokens = int64_t{micro_batch} * model.seq_len, width = tokens * model.d_model;
  std::mt19937 random(7);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> input(static_cast<size_t>(width)), grad_output(static_cast<size_t>(width));
  for (float& x : input) x = normal(random);
  for (float& x : grad_output) x = 1e-3f * normal(random);
  std::vector<int32_t> ids(static_cast<size_t>(tokens)), targets(ids.size());
  for (size_t i = 0; i < ids.size(); ++i) {
    ids[i] = static_cast<int32_t>(random() % static_cast<unsigned>(model.vocab));
    targets[i] = static_cast<int32_t>(random() % static_cast<unsigned>(model.vocab));
  }
  const BatchPosition position{1, 0, 0};
  const double scale = 1.0 / double(tokens);
  auto forward = [&] {
    stage.forward(0, 0, micro_batch, input.data(), ids.data(), targets.data(), position, true);
    (void)stage.take_loss_sum();
  };
  auto part = [&](BackwardPart which) {
    stage.backward(0, 0, micro_batch, which, grad_output.data(), position, scale, {});
  };
  // A backward pass needs its forward first: time each part with the passes before it done anew.
  std::vector<double> f, bi, bw;
  forward();
  part(BackwardPart::kInput);
  part(BackwardPart::kWeight);
  for (int i = 0; i < repeats; ++i) {
    auto start = Clock::now();
    forward();
    auto mid = Clock::now();
    part(BackwardPart::kInput);
    auto end = Clock::now();
    part(BackwardPart::kWeight);
    auto done = Clock::now();
    f.push_back(std::chrono::duration<double>(mid - start).count());
    bi.push_back(std::chrono::duration<double>(end - mid).count());
    bw.push_back(std::chrono::duration<double>(done - end).count());
  }
  return {median(f), median(bi), median(bw)};
}

// The bytes one more block adds to a buffer of a middle stage (no recomputation, whole backward).
double block_buffer_bytes(const ModelConfig& model, int micro_batch) {
  auto bytes = [&](int blocks) {
    pipeline::StageLayout layout;
    layout.stage = 1;
    layout.stages = 3;
    layout.ranges = {{0, blocks}};
    Cpu backend;
    return double(pipeline::Stage<Cpu>(backend, model, layout, micro_batch, 1, false, false, 1).buffer_bytes());
  };
  return bytes(2) - bytes(1);
}

}  // namespace

std::string calibration_text(const Calibration& c) {
  std::ostringstream out;
  out << "# kilolayer plan calibration: seconds per micro-batch of micro_batch sequences\n";
  for (const Key& key : kKeys) {
    out << key.name << " = ";
    if (key.integer) {
      out << c.*key.integer;
    } else {
      char buffer[32];
      std::snprintf(buffer, sizeof buffer, "%.6g", c.*key.real);
      out << buffer;
    }
    out << "\n";
  }
  return out.str();
}

Calibration parse_calibration(const std::string& text, const std::string& origin) {
  Calibration c;
  std::map<std::string, bool> seen;
  std::istringstream in(text);
  std::string line;
  int number = 0;
  while (std::getline(in, line)) {
    ++number;
    const std::string where = "calibration " + origin + ":" + std::to_string(number) + ": ";
    line = trim(line.substr(0, line.find('#')));
    if (line.empty()) continue;
    const size_t equals = line.find('=');
    if (equals == std::string::npos) throw UserError(where + "malformed line '" + line + "' (want key = value)");
    const std::string name = trim(line.substr(0, equals)), value = trim(line.substr(equals + 1));
    const Key* key = nullptr;
    for (const Key& k : kKeys) {
      if (name == k.name) key = &k;
    }
    if (!key) throw UserError(where + "unknown key '" + name + "'");
    if (seen[name]) throw UserError(where + name + " is given more than once");
    seen[name] = true;
    const char* first = value.data();
    const char* last = first + value.size();
    if (key->integer) {
      int parsed = 0;
      const auto [end, error] = std::from_chars(first, last, parsed);
      if (error != std::errc() || end != last || parsed < 1) {
        throw UserError(where + name + " = '" + value + "' must be a positive integer");
      }
      c.*key->integer = parsed;
    } else {
      double parsed = 0;
      const auto [end, error] = std::from_chars(first, last, parsed);
      if (error != std::errc() || end != last || !std::isfinite(parsed) || parsed < 0 ||
          (parsed == 0 && !key->may_be_zero)) {
        throw UserError(where + name + " = '" + value + "' must be a finite number " +
                        (key->may_be_zero ? ">= 0" : "> 0"));
      }
      c.*key->real = parsed;
    }
  }
  for (const Key& key : kKeys) {
    if (!seen[key.name]) throw UserError("calibration " + origin + ": " + key.name + " is missing");
  }
  if (c.d_model % c.heads != 0) {
    throw UserError("calibration " + origin + ": heads = " + std::to_string(c.heads) +
                    " does not divide d_model = " + std::to_string(c.d_model));
  }
  return c;
}

Calibration read_calibration(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw UserError("calibration: cannot open " + path);
  std::stringstream text;
  text << in.rdbuf();
  if (in.bad()) throw UserError("calibration: cannot read " + path);
  return parse_calibration(text.str(), path);
}

Calibration measure(const Config& config, int repeats, std::ostream& log) {
  const ModelConfig& model = config.model;
  const int B = config.train.micro_batch;
  Calibration c;
  c.d_model = model.d_model;
  c.heads = model.heads;
  c.d_ff = model.ff_width();
  c.seq_len = model.seq_len;
  c.vocab = model.vocab;
  c.micro_batch = B;
  c.threads = set_threads(config.run.threads);
  log << "calibrate: " << c.threads << " thread(s), micro-batch " << B << " x " << model.seq_len
      << " tokens, d_model " << model.d_model << ", " << repeats << " repeats\n";

  // Blocks: a middle stage of a few blocks, per block.
  const int blocks = std::min(model.layers, 4);
  const StageTimes middle = time_stage(model, B, blocks, false, false, repeats);
  c.forward = middle.forward / blocks;
  c.backward_input = middle.backward_input / blocks;
  c.backward_weight = middle.backward_weight / blocks;
  // The ends: a first and a last stage of as many blocks, less the middle one.
  const StageTimes first = time_stage(model, B, blocks, true, false, repeats);
  const StageTimes last = time_stage(model, B, blocks, false, true, repeats);
  c.embedding_forward = std::max(0.0, first.forward - middle.forward);
  c.embedding_backward = std::max(0.0, first.backward_input + first.backward_weight - middle.backward_input -
                                            middle.backward_weight);
  c.head_forward = std::max(0.0, last.forward - middle.forward);
  c.head_backward = std::max(0.0, last.backward_input + last.backward_weight - middle.backward_input -
                                       middle.backward_weight);
  log << "calibrate: per block F " << c.forward * 1e3 << " ms, B " << c.backward_input * 1e3 << " ms, W "
      << c.backward_weight * 1e3 << " ms; embedding " << (c.embedding_forward + c.embedding_backward) * 1e3
      << " ms, head " << (c.head_forward + c.head_backward) * 1e3 << " ms\n";

  // The update per parameter: zero the gradients, their norm, clipping, AdamW. Timed on the model
  // cut to the blocks above (embeddings and head included), not the whole model: the cost per
  // parameter does not depend on the count, and params, gradients, a host copy and two moments of a
  // model planned for a cluster would not fit in this machine's memory.
  {
    Cpu backend;
    BackendVectorOps<Cpu> ops(backend);
    ModelConfig cut = model;
    cut.layers = blocks;
    const ParamTable table(cut);
    const int64_t n = table.buffer_size();
    auto params = ops.alloc(n), grads = ops.alloc(n);
    std::vector<float> host(static_cast<size_t>(n));
    init_parameters(table, 3, host.data());
    ops.upload(host.data(), params->span());
    AdamW<float> adamw(table, config.train, 0, n, ops);
    int64_t step = 0;
    const double seconds = time_median(repeats, [&] {
      backend.zero(grads->span().data(), n);
      const double norm = std::sqrt(ops.sum_squares(grads->span()));
      clip_to_norm<float>(ops, grads->span(), norm, config.train.clip);
      adamw.update(params->span(), grads->span(), 1e-4, ++step);
    });
    c.update_per_param = seconds / double(table.parameter_count());
  }
  c.block_bytes = block_buffer_bytes(model, B);
  {
    const size_t bytes = size_t{64} << 20;
    std::vector<char> from(bytes, 1), to(bytes, 0);
    const double seconds = time_median(repeats, [&] { std::memcpy(to.data(), from.data(), bytes); });
    c.copy_bandwidth = double(bytes) / seconds;
  }
  log << "calibrate: update " << c.update_per_param * 1e9 << " ns per parameter, " << c.block_bytes / (1 << 20)
      << " MiB of activations per block, memcpy " << c.copy_bandwidth / 1e9 << " GB/s\n";
  return c;
}

}  // namespace kl::plan
