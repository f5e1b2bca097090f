#include "comm/comm.h"

#include <bit>
#include <string>

#include "src/util/error.h"

namespace kl {

bool same_on_all_ranks(Comm& comm, std::span<const float> values) {
  if (comm.size() == 1) return true;
  uint64_t hash = 0xCBF29CE484222325ull;
  for (float x : values) hash = (hash ^ std::bit_cast<uint32_t>(x)) * 0x100000001B3ull;
  const auto mine = static_cast<double>(hash >> 12);  // 52 bits: exact in a double
  double sums[2] = {mine, mine * mine / 1e30};
  comm.all_reduce_sum(sums);
  // All equal exactly when the sum and the sum of squares are n times this rank's.
  return sums[0] == mine * comm.size() && sums[1] == (mine * mine / 1e30) * comm.size();
}

void agree(Comm& comm, const std::function<void()>& check) {
  std::string error;
  try {
    check();
  } catch (const UserError& e) {
    error = e.what();
  }
  if (comm.size() == 1) {
    if (!error.empty()) throw UserError(error);
    return;
  }
  const bool failed = !error.empty();
  double flags[2] = {comm.rank() == 0 && failed ? 1.0 : 0.0, failed ? 1.0 : 0.0};
  comm.all_reduce_sum(flags);
  if (flags[1] == 0) return;
  if (flags[0] > 0) throw CollectiveError(comm.rank() == 0 ? error : "");  // rank 0's message
  throw CollectiveError(failed ? "rank " + std::to_string(comm.rank()) + ": " + error : "", failed);
}

}  // namespace kl
