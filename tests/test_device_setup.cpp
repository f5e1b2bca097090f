// The GPU path's host-side logic, checked on any machine (no GPU, no CUDA needed): the GPU a rank
// picks from the launcher's environment, NCCL's bootstrap order, the collectives' argument checks,
// and the config's refusals for what run.device = cuda does not cover.
#include <gtest/gtest.h>

#include <map>
#include <string>
#include <vector>

#include "comm/device_setup.h"
#include "src/config/config.h"
#include "src/util/error.h"

namespace kl {
namespace {

EnvLookup env_of(std::map<std::string, std::string> values) {
  return [values = std::move(values)](const char* name) -> const char* {
    const auto it = values.find(name);
    return it == values.end() ? nullptr : it->second.c_str();
  };
}

TEST(DeviceSetup, LocalRankFromTheLaunchersEnvironment) {
  EXPECT_EQ(local_rank_from_env(env_of({})), std::nullopt);
  EXPECT_EQ(local_rank_from_env(env_of({{"OMPI_COMM_WORLD_LOCAL_RANK", "3"}})), 3);
  EXPECT_EQ(local_rank_from_env(env_of({{"SLURM_LOCALID", "5"}})), 5);
  EXPECT_EQ(local_rank_from_env(env_of({{"MPI_LOCALRANKID", "1"}})), 1);
  // Open MPI's variable wins over slurm's (mpirun inside an allocation sets both).
  EXPECT_EQ(local_rank_from_env(env_of({{"OMPI_COMM_WORLD_LOCAL_RANK", "2"}, {"SLURM_LOCALID", "0"}})), 2);
  for (const char* bad : {"", "x", "-1", "1.5", "2 ", "99999999999"}) {
    try {
      local_rank_from_env(env_of({{"SLURM_LOCALID", bad}}));
      ADD_FAILURE() << "accepted '" << bad << "'";
    } catch (const UserError& e) {
      EXPECT_NE(std::string(e.what()).find("SLURM_LOCALID"), std::string::npos) << e.what();
    }
  }
}

TEST(DeviceSetup, ChoosesOneGpuPerLocalRank) {
  EXPECT_EQ(choose_device(0, 8), 0);
  EXPECT_EQ(choose_device(7, 8), 7);
  EXPECT_EQ(choose_device(3, 1), 0);  // one visible GPU per task (CUDA_VISIBLE_DEVICES narrowed)
  EXPECT_THROW(choose_device(8, 8), UserError);
  EXPECT_THROW(choose_device(-1, 2), UserError);
  try {
    choose_device(0, 0);
    ADD_FAILURE() << "no device accepted";
  } catch (const UserError& e) {
    EXPECT_NE(std::string(e.what()).find("no CUDA device"), std::string::npos) << e.what();
  }
}

TEST(DeviceSetup, BootstrapMakesTheIdOnRankZeroThenBroadcastsThenJoins) {
  for (int rank : {0, 1, 3}) {
    std::vector<std::string> calls;
    NcclId joined{};
    BootstrapSteps steps;
    steps.make_id = [&] {
      calls.push_back("make_id");
      NcclId id{};
      id[0] = 'k', id[127] = 'l';
      return id;
    };
    steps.broadcast_from_0 = [&](std::span<char> bytes) {
      calls.push_back("broadcast");
      EXPECT_EQ(bytes.size(), kNcclIdBytes);
      bytes[0] = 'k', bytes[127] = 'l';  // what rank 0 sent
    };
    steps.join = [&](const NcclId& id) {
      calls.push_back("join");
      joined = id;
    };
    bootstrap(rank, steps);
    const std::vector<std::string> want =
        rank == 0 ? std::vector<std::string>{"make_id", "broadcast", "join"} : std::vector<std::string>{"broadcast", "join"};
    EXPECT_EQ(calls, want) << "rank " << rank;
    EXPECT_EQ(joined[0], 'k');
    EXPECT_EQ(joined[127], 'l');
  }
}

TEST(DeviceSetup, CollectiveArgumentChecks) {
  EXPECT_EQ(check_reduce_scatter(12, 3, 4), "");
  EXPECT_NE(check_reduce_scatter(12, 4, 4), "");
  EXPECT_EQ(check_all_gather(3, 12, 4), "");
  EXPECT_NE(check_all_gather(3, 13, 4), "");
  EXPECT_EQ(check_peer(1, 0, 2), "");
  EXPECT_NE(check_peer(2, 0, 2), "");
  EXPECT_NE(check_peer(-1, 0, 2), "");
  EXPECT_NE(check_peer(0, 0, 2), "");
  EXPECT_EQ(check_root(1, 2), "");
  EXPECT_NE(check_root(2, 2), "");
}

std::string config_error(std::vector<std::string> overrides) {
  try {
    load_config("", overrides);
  } catch (const UserError& e) {
    return e.what();
  }
  return "";
}

TEST(DeviceConfig, RefusesWhatTheGpuPathDoesNotCover) {
  EXPECT_EQ(config_error({"--run.device=cuda"}), "");
  EXPECT_EQ(config_error({"--run.device=cuda", "--run.precision=bf16", "--parallel.recompute=block"}), "");
  EXPECT_NE(config_error({"--run.device=gpu"}).find("run.device"), std::string::npos);
  EXPECT_NE(config_error({"--run.precision=bf16"}).find("needs run.device = cuda"), std::string::npos);
  EXPECT_NE(config_error({"--run.tf32=true"}).find("run.tf32"), std::string::npos);
  EXPECT_NE(config_error({"--run.device=cuda", "--parallel.pp=2", "--model.layers=4"}).find("parallel.pp"),
            std::string::npos);
  EXPECT_NE(config_error({"--run.device=cuda", "--model.residual=deepnorm"}).find("prenorm"), std::string::npos);
  EXPECT_NE(config_error({"--run.device=cuda", "--model.stochastic_depth=0.1"}).find("stochastic_depth"),
            std::string::npos);
  EXPECT_NE(config_error({"--run.device=cuda", "--run.diag_every=5"}).find("diag_every"), std::string::npos);
}

}  // namespace
}  // namespace kl
