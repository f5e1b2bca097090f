// The checkpoint directory and its commit protocol. A checkpoint of step N is written into
// <dir>/step_0000000N.tmp/, flushed, renamed to <dir>/step_0000000N/, the directory fsynced, and
// only then the `latest` pointer (a one-line text file naming it) atomically replaced through
// latest.tmp. A crash at any moment leaves `latest` naming a complete checkpoint (the old or the
// new); whatever ends in .tmp is unfinished, never read, and removed at the next start.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

namespace kl::checkpoint {

inline constexpr const char* kFileName = "checkpoint.h5";

class Store {
 public:
  explicit Store(std::string dir, bool allow_world_writable = false)
      : dir_(std::move(dir)), allow_world_writable_(allow_world_writable) {}
  const std::string& dir() const { return dir_; }

  // Run on one rank. Creates the directory if needed and removes unfinished (.tmp) entries.
  // Throws UserError when the directory cannot be made or used, or is world-writable (unless
  // allowed): anyone could plant a file or a link there for the next save or resume.
  void prepare() const;
  // Run on one rank (on any thread): a fresh <dir>/step_N.tmp/ (any leftover removed). Returns its
  // path. Throws std::runtime_error when it cannot be made.
  std::string begin(int64_t step) const;
  // Run on one rank (on any thread), after every rank's data is durable: publishes step N and keeps
  // the newest `keep` checkpoints. Throws std::runtime_error when a rename or fsync fails.
  void commit(int64_t step, int keep) const;
  // The directory `latest` names, when there is one. A `latest` or a step directory that is a
  // symbolic link is refused (UserError): the store never follows links it did not make.
  std::optional<std::string> latest() const;

  static std::string step_name(int64_t step);  // "step_00000100"

 private:
  std::string dir_;
  bool allow_world_writable_;
};

// The checkpoint file behind PATH: a checkpoint file itself, a step directory, or a checkpoint
// directory with a `latest` pointer. Throws UserError naming PATH when it is none of these.
std::string resolve(const std::string& path);

}  // namespace kl::checkpoint
