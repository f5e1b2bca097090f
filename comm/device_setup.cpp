#include "comm/device_setup.h"

#include <charconv>

#include "src/util/error.h"

namespace kl {

std::optional<int> local_rank_from_env(const EnvLookup& env) {
  for (const char* name : {"OMPI_COMM_WORLD_LOCAL_RANK", "SLURM_LOCALID", "MPI_LOCALRANKID"}) {
    const char* value = env(name);
    if (!value) continue;
    const std::string text(value);
    int rank = -1;
    const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), rank);
    if (text.empty() || error != std::errc() || end != text.data() + text.size() || rank < 0) {
      throw UserError(std::string("environment: ") + name + " = '" + text +
                      "' is not a node-local rank (a non-negative integer)");
    }
    return rank;
  }
  return std::nullopt;
}

int choose_device(int local_rank, int device_count) {
  if (device_count <= 0) throw UserError("run.device = cuda: no CUDA device is visible to this process");
  if (device_count == 1) return 0;
  if (local_rank < 0 || local_rank >= device_count) {
    throw UserError("run.device = cuda: node-local rank " + std::to_string(local_rank) + " but only " +
                    std::to_string(device_count) +
                    " GPUs are visible on this node (start at most one rank per GPU)");
  }
  return local_rank;
}

void bootstrap(int rank, const BootstrapSteps& steps) {
  NcclId id{};
  if (rank == 0) id = steps.make_id();
  steps.broadcast_from_0(std::span<char>(id.data(), id.size()));
  steps.join(id);
}

std::string check_reduce_scatter(size_t in, size_t out, int ranks) {
  if (in != out * static_cast<size_t>(ranks)) {
    return "reduce_scatter: in holds " + std::to_string(in) + " elements, not size() x out = " +
           std::to_string(ranks) + " x " + std::to_string(out);
  }
  return "";
}

std::string check_all_gather(size_t in, size_t out, int ranks) {
  if (out != in * static_cast<size_t>(ranks)) {
    return "all_gather: out holds " + std::to_string(out) + " elements, not size() x in = " +
           std::to_string(ranks) + " x " + std::to_string(in);
  }
  return "";
}

std::string check_peer(int peer, int self, int ranks) {
  if (peer < 0 || peer >= ranks) {
    return "peer " + std::to_string(peer) + " is outside the group of " + std::to_string(ranks) + " ranks";
  }
  if (peer == self) return "peer " + std::to_string(peer) + " is this rank itself";
  return "";
}

std::string check_root(int root, int ranks) {
  if (root < 0 || root >= ranks) {
    return "broadcast root " + std::to_string(root) + " is outside the group of " + std::to_string(ranks) + " ranks";
  }
  return "";
}

}  // namespace kl
