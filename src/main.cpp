// kilolayer: the command-line entry point.
//
//   kilolayer train --config FILE [--section.key=value ...]
//   kilolayer eval --config FILE --checkpoint PATH [--section.key=value ...]
//   kilolayer lesion --config FILE --checkpoint PATH [--out CSV] [--section.key=value ...]
//   kilolayer inspect PATH
//   kilolayer data  --out DIR [--val-every K] [--block BYTES] TEXT_FILE...
//   kilolayer tokenize --out DIR (--vocab N | --model FILE) [--val-every K] [--block BYTES] TEXT_FILE...
//   kilolayer plan  --config FILE --gpus N [...]   (src/plan/plan_cli.h)
//   kilolayer --help
//
// A build without MPI (CMake: -DKL_MPI=OFF) is one process: every communicator is a SoloComm and
// parallel.dp x parallel.pp must be 1.
#ifdef KL_HAVE_MPI
#include <mpi.h>
#endif

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <optional>
#include <string>
#include <vector>

#ifdef KL_HAVE_MPI
#include "comm/mpi_comm.h"
#else
#include "comm/solo_comm.h"
#endif
#include "comm/watchdog.h"
#include "src/checkpoint/checkpoint.h"
#include "src/checkpoint/store.h"
#include "src/config/config.h"
#include "src/data/text_shards.h"
#include "src/data/tokenizer.h"
#include "src/plan/plan_cli.h"
#include "src/train/preemption.h"
#include "src/train/trainer.h"
#include "src/util/error.h"

namespace {

const char* kUsage =
    "usage:\n"
    "  kilolayer train --config FILE [--section.key=value ...]   train (world size = dp x pp)\n"
    "  kilolayer eval --config FILE --checkpoint PATH [...]     validation loss of a checkpoint\n"
    "  kilolayer lesion --config FILE --checkpoint PATH [--out CSV] [...]\n"
    "                                                           the loss with each block removed\n"
    "  kilolayer inspect PATH                                   a checkpoint: config, step, layout,\n"
    "                                                           tensors, checksums verified\n"
    "  kilolayer data --out DIR [--val-every K] [--block BYTES] TEXT_FILE...\n"
    "                                                           byte-level train/val token shards\n"
    "  kilolayer tokenize --out DIR (--vocab N | --model FILE) [--val-every K] [--block BYTES] TEXT_FILE...\n"
    "                                                           SentencePiece BPE train/val token shards\n"
    "  kilolayer plan --config FILE --gpus N [...]              the fastest dp x pp x schedule layouts\n"
    "                                                           for a cluster (plan --help: every flag)\n"
    "  kilolayer --help                                         this text and every option\n";

// Splits "--config FILE" / "--config=FILE" out of args; the rest are option overrides.
std::string take_flag(std::vector<std::string>& args, const std::string& flag) {
  for (size_t i = 0; i < args.size(); ++i) {
    if (args[i] == flag) {
      if (i + 1 >= args.size()) throw kl::UserError("command line: " + flag + " needs a value");
      std::string value = args[i + 1];
      args.erase(args.begin() + static_cast<long>(i), args.begin() + static_cast<long>(i) + 2);
      return value;
    }
    if (args[i].rfind(flag + "=", 0) == 0) {
      std::string value = args[i].substr(flag.size() + 1);
      args.erase(args.begin() + static_cast<long>(i));
      return value;
    }
  }
  return "";
}

#ifdef KL_HAVE_MPI
// Before MPI_Init, the deadline of MPI's start-up: the config's parallel.timeout_s when the command
// line names a config that loads, else the default. Nothing is reported here: job_config reports a
// bad config after MPI_Init, from rank 0 alone.
double startup_timeout(std::vector<std::string> args) {
  try {
    const std::string file = take_flag(args, "--config");
    take_flag(args, "--checkpoint");
    take_flag(args, "--out");
    if (!file.empty()) return kl::load_config(file, args).parallel.timeout_s;
  } catch (const std::exception&) {
  }
  return kl::Config{}.parallel.timeout_s;
}

// Before MPI_Init, this process's rank as the launcher gave it (for the watchdog's report).
int launcher_rank() {
  for (const char* name : {"OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMI_RANK", "SLURM_PROCID"}) {
    if (const char* value = std::getenv(name)) return std::atoi(value);
  }
  return 0;
}
#endif

// This process's rank in the job and the job's size (0 and 1 without MPI).
int world_rank() {
  int rank = 0;
#ifdef KL_HAVE_MPI
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
#endif
  return rank;
}
int world_size() {
  int size = 1;
#ifdef KL_HAVE_MPI
  MPI_Comm_size(MPI_COMM_WORLD, &size);
#endif
  return size;
}

// The job's config from --config FILE and overrides, checked against the world's size. Every rank
// reads the same command line and file and reaches the same verdict before any communication, so
// only rank 0 reports a problem, and every rank returns kExitUserError.
std::optional<kl::Config> job_config(std::vector<std::string>& args, const char* command) {
  const int rank = world_rank();
  try {
    const std::string config_file = take_flag(args, "--config");
    if (config_file.empty()) throw kl::UserError(std::string(command) + ": --config FILE is required");
    kl::Config config = kl::load_config(config_file, args);
#ifndef KL_HAVE_MPI
    if (config.parallel.dp * config.parallel.pp != 1) {
      throw kl::UserError("config: parallel.dp x parallel.pp = " +
                          std::to_string(config.parallel.dp * config.parallel.pp) +
                          ", but this kilolayer was built without MPI (-DKL_MPI=OFF) and runs one process: "
                          "set parallel.dp = parallel.pp = 1, or use a build with MPI");
    }
#endif
    kl::check_layout(config, world_size());
    kl::Watchdog::get().arm(config.parallel.timeout_s, rank);
    return config;
  } catch (const kl::UserError& e) {
    if (rank == 0) std::fprintf(stderr, "kilolayer: error: %s\n", e.what());
    return std::nullopt;
  }
}

// The communicators of this rank for the config's grid: MPI's, or one SoloComm for every group of
// a one-process build.
class RankComms {
 public:
#ifdef KL_HAVE_MPI
  explicit RankComms(const kl::Config& c) : grid_(kl::make_grid_comms(kl::Grid(c.parallel.dp, c.parallel.pp))) {}
  kl::TrainComms train() { return {*grid_.dp, *grid_.pp, *grid_.embedding, *grid_.world, grid_.world.get()}; }

 private:
  kl::GridComms grid_;
#else
  explicit RankComms(const kl::Config&) {}
  kl::TrainComms train() { return {solo_, solo_, solo_, solo_}; }

 private:
  kl::SoloComm solo_;
#endif
};

int run_train(std::vector<std::string> args) {
  const auto config = job_config(args, "train");
  if (!config) return kl::kExitUserError;
  RankComms comms(*config);
  const bool leader = comms.train().world.rank() == 0;
  std::ostream silent(nullptr);
  // Tests ask for faults through the environment: KL_INJECT_NAN=RANK:STEP puts a NaN into world
  // rank RANK's gradient at step STEP (1-based), before the reduction; KL_INJECT_SPIKE=RANK:STEP[:VALUE[:repeat]]
  // adds VALUE (default 1000) to one element of it instead, once per process (or each time with repeat).
  kl::FaultInjection faults;
  if (const char* spec = std::getenv("KL_INJECT_NAN")) {
    long long step = 0;
    if (std::sscanf(spec, "%d:%lld", &faults.nan_rank, &step) == 2) faults.nan_step = step;
  }
  if (const char* spec = std::getenv("KL_INJECT_SPIKE")) {
    long long step = 0;
    char repeat[8] = {};
    const int fields = std::sscanf(spec, "%d:%lld:%f:%7s", &faults.spike_rank, &step, &faults.spike_value, repeat);
    if (fields >= 2) faults.spike_step = step;
    faults.spike_repeat = fields == 4 && std::string(repeat) == "repeat";
  }
  const kl::TrainSummary summary = kl::train(*config, comms.train(), leader ? std::cout : silent, faults);
  if (summary.preempted) return kl::kExitRequeue;
  if (leader) {
    // Nats per token depend on the tokenizer; bits per byte of text do not.
    auto measure = [&](double nats) {
      char text[80];
      if (summary.val_bytes_per_token) {
        std::snprintf(text, sizeof text, "%.4f nats/token = %.4f bits/byte", nats,
                      nats / std::log(2.0) / *summary.val_bytes_per_token);
      } else {
        std::snprintf(text, sizeof text, "%.4f nats/token", nats);
      }
      return std::string(text);
    };
    std::printf("final validation loss %s | unigram entropy of the validation text %s\n",
                measure(summary.final_val_loss).c_str(), measure(summary.unigram_entropy).c_str());
    // (issue 15: a generated sample from the final model goes here, under the loss line.)
  }
  return 0;
}

// eval: the validation loss of a checkpoint. lesion: also with each block removed in turn, written
// as CSV (layer, val_loss, delta against the intact model) to --out or <run.dir>/lesion.csv.
int run_eval(std::vector<std::string> args, bool lesion) {
  const char* command = lesion ? "lesion" : "eval";
  std::string checkpoint, out;
  try {
    checkpoint = take_flag(args, "--checkpoint");
    if (lesion) out = take_flag(args, "--out");
  } catch (const kl::UserError&) {  // a flag without a value: reported like a missing one
  }
  const auto config = job_config(args, command);
  if (!config) return kl::kExitUserError;
  if (checkpoint.empty()) {
    if (world_rank() == 0) std::fprintf(stderr, "kilolayer: error: %s: --checkpoint PATH is required\n", command);
    return kl::kExitUserError;
  }
  RankComms comms(*config);
  const bool leader = comms.train().world.rank() == 0;
  std::ostream silent(nullptr);
  const std::vector<double> losses =
      kl::lesion_study(*config, comms.train(), checkpoint, leader ? std::cout : silent, lesion);
  if (!leader) return 0;
  std::printf("validation loss %.6f nats\n", losses[0]);
  if (!lesion) return 0;
  if (out.empty()) out = config->run.dir + "/lesion.csv";
  std::filesystem::create_directories(std::filesystem::path(out).parent_path().empty()
                                          ? std::filesystem::path(".")
                                          : std::filesystem::path(out).parent_path());
  std::ofstream csv(out);
  csv << "layer,val_loss,delta\n";
  char line[96];
  std::snprintf(line, sizeof line, "none,%.9g,0\n", losses[0]);
  csv << line;
  for (size_t l = 1; l < losses.size(); ++l) {
    std::snprintf(line, sizeof line, "%zu,%.9g,%.9g\n", l - 1, losses[l], losses[l] - losses[0]);
    csv << line;
  }
  if (!csv.flush()) throw kl::UserError("lesion: cannot write " + out);
  std::printf("lesion: %zu blocks, written to %s\n", losses.size() - 1, out.c_str());
  return 0;
}

int run_inspect(const std::vector<std::string>& args) {
  if (args.size() != 1) throw kl::UserError("inspect: give one checkpoint PATH (a checkpoint directory or file)");
  const std::string file = kl::checkpoint::resolve(args[0]);
  const int problems = kl::checkpoint::inspect(file, std::cout);
  if (problems > 0) throw kl::UserError("checkpoint " + file + ": " + std::to_string(problems) + " problem(s), listed above");
  return 0;
}

// Parses an integer flag's value ("" gives `fallback`).
int int_flag(const std::string& text, const std::string& command, const char* name, int fallback) {
  if (text.empty()) return fallback;
  try {
    size_t used = 0;
    const int value = std::stoi(text, &used);
    if (used == text.size()) return value;
  } catch (const std::exception&) {
  }
  throw kl::UserError(command + ": " + name + " must be an integer, got '" + text + "'");
}

int run_data(std::vector<std::string> args) {
  const std::string out = take_flag(args, "--out");
  if (out.empty()) throw kl::UserError("data: --out DIR is required");
  const std::string val_every = take_flag(args, "--val-every");
  const std::string block = take_flag(args, "--block");
  for (const auto& a : args) {
    if (a.rfind("--", 0) == 0) throw kl::UserError("data: unknown option " + a);
  }
  const auto summary = kl::make_text_shards(args, out, int_flag(val_every, "data", "--val-every", 10),
                                            int_flag(block, "data", "--block", 2048));
  std::printf("wrote %s/train.bin (%lld tokens) and %s/val.bin (%lld tokens)\n", out.c_str(),
              static_cast<long long>(summary.train_tokens), out.c_str(),
              static_cast<long long>(summary.val_tokens));
  return 0;
}

// tokenize: trains a SentencePiece BPE on the training text (or takes --model), writes it as
// <out>/tokenizer.model beside train.bin, val.bin and tokenizer.ini.
int run_tokenize(std::vector<std::string> args) {
  const std::string out = take_flag(args, "--out");
  const std::string vocab_text = take_flag(args, "--vocab");
  const std::string model = take_flag(args, "--model");
  const int val_every = int_flag(take_flag(args, "--val-every"), "tokenize", "--val-every", 10);
  const int block = int_flag(take_flag(args, "--block"), "tokenize", "--block", 2048);
  for (const auto& a : args) {
    if (a.rfind("--", 0) == 0) throw kl::UserError("tokenize: unknown option " + a);
  }
  if (out.empty()) throw kl::UserError("tokenize: --out DIR is required");
  if (vocab_text.empty() == model.empty()) {
    throw kl::UserError("tokenize: give either --vocab N (train a BPE on the text) or --model FILE (an existing "
                        "SentencePiece model), not " + std::string(model.empty() ? "neither" : "both"));
  }
  if (args.empty()) throw kl::UserError("tokenize: no input text files");
  if (!kl::sentencepiece_available()) {
    throw kl::UserError("tokenize: this kilolayer was built without SentencePiece (-DKL_SENTENCEPIECE=OFF, or "
                        "libsentencepiece-dev missing): run ./launch/setup.sh and rebuild");
  }
  if (!model.empty() && !std::filesystem::is_regular_file(model)) {
    throw kl::UserError("tokenize: the tokenizer model " + model + " does not exist");
  }
  const int vocab = int_flag(vocab_text, "tokenize", "--vocab", 0);
  if (model.empty() && (vocab < 1 || vocab > (1 << 24))) {
    throw kl::UserError("tokenize: --vocab must be between 1 and 16777216, got " + vocab_text);
  }
  kl::TextBlocks blocks;
  try {
    blocks = kl::split_text(args, val_every, block);
  } catch (const kl::UserError& e) {
    throw kl::UserError(std::string("tokenize: ") + e.what());
  }
  std::error_code error;
  std::filesystem::create_directories(out, error);
  if (error) throw kl::UserError("tokenize: cannot create " + out + ": " + error.message());
  const std::string model_file = out + "/tokenizer.model";
  // Written to a temporary file and renamed, like the shards: an interrupted run leaves no half model.
  const std::string bytes = model.empty() ? kl::train_sentencepiece_bpe(kl::training_sentences(blocks), vocab) : "";
  if (model.empty() || !std::filesystem::equivalent(model, model_file, error)) {
    const std::string temporary = model_file + ".tmp";
    if (model.empty()) {
      std::ofstream file(temporary, std::ios::binary | std::ios::trunc);
      file.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
      if (!file.flush()) throw kl::UserError("tokenize: cannot write " + temporary);
    } else {
      std::filesystem::copy_file(model, temporary, std::filesystem::copy_options::overwrite_existing);
    }
    std::filesystem::rename(temporary, model_file);
  }
  const auto tokenizer = kl::load_sentencepiece_tokenizer(model_file);
  const auto s = kl::write_token_shards(blocks, *tokenizer, out, "sentencepiece", "tokenizer.model");
  std::printf("wrote %s/train.bin (%lld tokens, %.3f bytes of text a token) and %s/val.bin (%lld tokens, %.3f "
              "bytes a token); tokenizer %s\n",
              out.c_str(), static_cast<long long>(s.train_tokens), double(s.train_bytes) / double(s.train_tokens),
              out.c_str(), static_cast<long long>(s.val_tokens), double(s.val_bytes) / double(s.val_tokens),
              tokenizer->describe().c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.empty()) {
    std::fprintf(stderr, "%s", kUsage);
    return kl::kExitUserError;
  }
  if (args[0] == "--help" || args[0] == "-h" || args[0] == "help") {
    std::cout << kUsage << "\n" << kl::options_help();
    return 0;
  }
  const std::string command = args[0];
  args.erase(args.begin());

  // A preemption signal (SIGTERM, SIGUSR1) that arrives during start-up is kept for the first step,
  // which saves and exits 75, instead of killing the rank before train() would install the handlers.
  if (command == "train") kl::install_preemption_handlers();
#ifdef KL_HAVE_MPI
  // MPI_Init, the communicators made after it and MPI_Finalize wait for every rank of the job: one
  // that stops or stalls there (a frozen node) would keep the others waiting forever. The
  // watchdog watches them like any other wait, with the config's deadline.
  kl::Watchdog::get().arm(startup_timeout(args), launcher_rank());
  int provided = 0;
  kl::Watchdog::get().watch_call("MPI_Init", [&] { MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided); });
#endif
  const int rank = world_rank(), ranks = world_size();
  int status = 0;
  bool failed_alone = false;  // an exception: possibly on this rank only
  try {
    if (command == "train") {
      status = run_train(args);
    } else if (command == "eval" || command == "lesion") {
      status = run_eval(args, command == "lesion");
    } else if (command == "inspect") {
      status = run_inspect(args);
    } else if (command == "data") {
      status = run_data(args);
    } else if (command == "tokenize") {
      if (ranks > 1) throw kl::UserError("tokenize: runs as one process, not under mpirun");
      status = run_tokenize(args);
    } else if (command == "plan") {
      if (!args.empty() && (args[0] == "--help" || args[0] == "-h")) {
        std::cout << kl::plan::kPlanUsage;
      } else {
        if (ranks > 1) throw kl::UserError("plan: runs as one process, not under mpirun");
        status = kl::plan::run_plan(args, std::cout);
      }
    } else {
      throw kl::UserError("unknown command '" + command + "'\n" + kUsage);
    }
  } catch (const kl::CollectiveError& e) {
    if (*e.what() && (rank == 0 || e.report_here())) std::fprintf(stderr, "kilolayer: error: %s\n", e.what());
    status = kl::kExitUserError;
  } catch (const kl::UserError& e) {
    if (ranks == 1) {
      std::fprintf(stderr, "kilolayer: error: %s\n", e.what());
    } else {
      std::fprintf(stderr, "kilolayer: error on rank %d: %s\n", rank, e.what());
    }
    status = kl::kExitUserError;
    failed_alone = true;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "kilolayer: internal error on rank %d: %s\n", rank, e.what());
    status = kl::kExitInternalError;
    failed_alone = true;
  }
  // After the configuration, a rank can fail alone (a file it cannot read) and leave the others
  // blocked in a collective: end the whole job.
#ifdef KL_HAVE_MPI
  if (failed_alone && ranks > 1) {
    std::fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, status);
  }
  kl::Watchdog::get().watch_call("MPI_Finalize", [] { MPI_Finalize(); });
#else
  (void)failed_alone;
#endif
  return status;
}
