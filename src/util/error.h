// One error reporter for the whole project.
//
// Two kinds of failure, kept apart on purpose:
//   - UserError: something the user handed us is wrong (a config key, a data file, a command-line
//     argument). It is thrown, caught once in main(), printed as one line naming the culprit, and the
//     process exits with status 2. Tests catch it and check the message.
//   - KL_CHECK / kl::fatal: an internal invariant or a library call failed. It prints rank, file,
//     line, the failed expression and a sentence, then ends the whole job (MPI_Abort when MPI is up).
#pragma once

#include <stdexcept>
#include <string>

namespace kl {

class UserError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// A UserError that every rank reaches together, from values they all share (a reduced loss, or a
// verdict agreed by agree() in comm/comm.h): one message is printed (rank 0's, or a rank's own when
// `report_here`) and all ranks exit normally, with no MPI_Abort and no flood of copies.
class CollectiveError : public UserError {
 public:
  explicit CollectiveError(const std::string& what, bool report_here = false)
      : UserError(what), report_here_(report_here) {}
  // Printed by this rank even if it is not rank 0 (rank 0 then holds an empty message).
  bool report_here() const { return report_here_; }

 private:
  bool report_here_;
};

[[noreturn]] void fatal(const char* file, int line, const char* expression, const std::string& message);

// Exit codes the launch scripts can rely on.
inline constexpr int kExitUserError = 2;
inline constexpr int kExitInternalError = 3;
// A communication operation passed its deadline (parallel.timeout_s): see comm/watchdog.h.
inline constexpr int kExitCommTimeout = 4;
// Preempted (SIGTERM/SIGUSR1): the state is saved, run the same command again to continue.
// 75 is EX_TEMPFAIL, "temporary failure; the user is invited to retry".
inline constexpr int kExitRequeue = 75;

}  // namespace kl

#define KL_CHECK(condition, message)                                  \
  do {                                                                \
    if (!(condition)) ::kl::fatal(__FILE__, __LINE__, #condition, (message)); \
  } while (0)
