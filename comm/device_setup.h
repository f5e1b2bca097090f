// The host-side decisions of the GPU communicator (comm/nccl/nccl_comm.h), kept free of CUDA and
// NCCL so that the CPU build compiles them and kl_tests checks them on machines without a GPU:
// which GPU a rank takes, the order of NCCL's bootstrap, and the argument checks of each call.
#pragma once

#include <array>
#include <cstddef>
#include <functional>
#include <optional>
#include <span>
#include <string>

namespace kl {

// Reads an environment variable; null when unset (std::getenv, or a map in tests).
using EnvLookup = std::function<const char*(const char*)>;

// This process's rank among those on its node, from the launcher's environment: Open MPI's
// OMPI_COMM_WORLD_LOCAL_RANK, then slurm's SLURM_LOCALID, then MPICH's MPI_LOCALRANKID. nullopt
// when none is set. Throws UserError naming the variable when its value is not a non-negative
// integer.
std::optional<int> local_rank_from_env(const EnvLookup& env);

// The GPU for a process with node-local rank `local_rank` among `device_count` visible ones: one
// visible GPU (CUDA_VISIBLE_DEVICES narrowed per task, as slurm's --gpus-per-task does) is taken
// by everyone; otherwise local rank r takes GPU r. Throws UserError when there is no GPU or more
// ranks on the node than GPUs (two ranks on one GPU would serialise NCCL and exhaust its memory).
int choose_device(int local_rank, int device_count);

// NCCL's bootstrap, in the only order that works: rank 0 alone makes the unique id, every rank
// takes part in broadcasting it from rank 0 (over MPI), then every rank joins the communicator
// with it. The steps are passed in so that tests can check the order with fakes.
inline constexpr size_t kNcclIdBytes = 128;  // NCCL_UNIQUE_ID_BYTES
using NcclId = std::array<char, kNcclIdBytes>;
struct BootstrapSteps {
  std::function<NcclId()> make_id;                       // rank 0 only
  std::function<void(std::span<char>)> broadcast_from_0;  // collective
  std::function<void(const NcclId&)> join;               // collective (ncclCommInitRank)
};
void bootstrap(int rank, const BootstrapSteps& steps);

// Argument checks shared by the collectives (element counts, never bytes). Each throws nothing and
// returns an empty string when fine, else the sentence for kl::fatal.
std::string check_reduce_scatter(size_t in, size_t out, int ranks);
std::string check_all_gather(size_t in, size_t out, int ranks);
std::string check_peer(int peer, int self, int ranks);
std::string check_root(int root, int ranks);

}  // namespace kl
