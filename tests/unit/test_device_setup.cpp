// The GPU path's host-side logic, checked on any machine (no GPU, no CUDA needed): the GPU a rank
// picks from the launcher's environment, NCCL's bootstrap order, the collectives' argument checks,
// the config's refusals for what run.device = cuda does not cover, a one-rank SoloComm's memory
// kinds, and the watchdog's polled waits (how NcclComm waits: tests/gpu/test_nccl_comm.cpp runs
// the real thing).
#include <gtest/gtest.h>

#include <array>
#include <chrono>
#include <cstdio>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "comm/device_setup.h"
#include "comm/solo_comm.h"
#include "comm/watchdog.h"
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

// The GPU runs the same model walk as the CPU: only GPU-only settings without the GPU are refused.
TEST(DeviceConfig, RefusesOnlyGpuSettingsWithoutTheGpu) {
  EXPECT_EQ(config_error({"--run.device=cuda"}), "");
  EXPECT_EQ(config_error({"--run.device=cuda", "--run.precision=bf16", "--parallel.recompute=block"}), "");
  EXPECT_NE(config_error({"--run.device=gpu"}).find("run.device"), std::string::npos);
  // bf16 on the CPU is a config that loads anywhere; training refuses it where the CPU or the build
  // lacks what it needs (check_backend, tests/unit/test_bf16_cpu.cpp).
  EXPECT_EQ(config_error({"--run.precision=bf16"}), "");
  EXPECT_NE(config_error({"--run.tf32=true"}).find("run.tf32"), std::string::npos);
  EXPECT_EQ(config_error({"--run.device=cuda", "--parallel.pp=2", "--model.layers=4"}), "");
  EXPECT_EQ(config_error({"--run.device=cuda", "--model.residual=deepnorm"}), "");
  EXPECT_EQ(config_error({"--run.device=cuda", "--model.stochastic_depth=0.1"}), "");
  // pp 2 x dp 2, every variant, every schedule that takes it, diagnostics, ZeRO-1: all accepted.
  for (const char* residual : {"prenorm", "postnorm", "plain", "rezero", "layerscale", "deepnorm", "highway"}) {
    for (const char* schedule : {"gpipe", "1f1b", "interleaved", "zb1"}) {
      if (std::string(schedule) == "zb1" && std::string(residual) != "prenorm") continue;  // refused on the CPU too
      std::vector<std::string> overrides = {
          "--run.device=cuda", "--run.precision=bf16", "--parallel.dp=2", "--parallel.pp=2",
          std::string("--parallel.schedule=") + schedule, "--model.layers=8", "--train.global_batch=8",
          "--train.micro_batch=2", std::string("--model.residual=") + residual, "--model.stochastic_depth=0.1",
          "--parallel.zero=1", "--parallel.recompute=block",
          std::string("--parallel.virtual=") + (std::string(schedule) == "interleaved" ? "2" : "1")};
#ifdef KL_HAVE_HDF5
      overrides.push_back("--run.diag_every=5");  // diagnostics.h5 needs HDF5 (refused for that alone)
#endif
      EXPECT_EQ(config_error(overrides), "") << residual << " " << schedule;
    }
  }
}

TEST(SoloComm, CopiesHostMemoryByDefault) {
  SoloComm solo;
  EXPECT_EQ(solo.memory(), Memory::kHost);
  const std::vector<float> in = {1.5f, -2.0f, 3.25f, 4.0f};
  std::vector<float> out(in.size(), 0.0f);
  auto handle = solo.all_gather(in, out);
  EXPECT_TRUE(handle->test());
  EXPECT_EQ(out, in);
  std::vector<float> scattered(in.size(), 0.0f);
  solo.reduce_scatter_sum(in, scattered)->wait();
  EXPECT_EQ(scattered, in);
  std::vector<float> buffer = in;
  solo.all_reduce_sum(std::span<float>(buffer))->wait();  // the sum over one rank
  solo.broadcast(buffer, 0)->wait();
  EXPECT_EQ(buffer, in);
  std::array<std::byte, 3> bytes = {std::byte{1}, std::byte{2}, std::byte{3}};
  solo.broadcast_bytes(bytes, 0);
  EXPECT_EQ(bytes[2], std::byte{3});
  EXPECT_DOUBLE_EQ(solo.all_reduce_sum(2.5), 2.5);
}

TEST(SoloCommDeathTest, RefusesWhatOneRankCannotDo) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  SoloComm solo;
  std::array<std::byte, 3> bytes{};
  EXPECT_EXIT(solo.broadcast_bytes(bytes, 1), ::testing::ExitedWithCode(kExitInternalError), "only root is rank 0");
  std::vector<float> in(4), out(3);
  EXPECT_EXIT(solo.all_gather(in, out), ::testing::ExitedWithCode(kExitInternalError), "the whole buffer");
#ifdef KL_HAVE_CUDA
  EXPECT_EQ(SoloComm(Memory::kDevice).memory(), Memory::kDevice);  // its copies: tests/gpu/test_nccl_comm.cpp
#else
  EXPECT_EXIT(SoloComm{Memory::kDevice}, ::testing::ExitedWithCode(kExitInternalError), "no device memory");
#endif
}

// An NcclComm waiting on a stuck operation: it polls, finds itself overdue at the deadline, and
// expire() prints the same report as an MPI wait, runs the abort, and exits 4.
TEST(WatchdogDeathTest, APolledWaiterPastItsDeadlineReportsAbortsAndExits) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(
      {
        Watchdog& watchdog = Watchdog::get();
        watchdog.arm(0.3, 3);
        const uint64_t seq = watchdog.started("all-reduce", -1, 4096);
        Watchdog::Blocked blocked(seq, Watchdog::kPolled);
        if (watchdog.overdue()) std::_Exit(10);  // not yet
        while (!watchdog.overdue()) std::this_thread::sleep_for(std::chrono::milliseconds(5));
        watchdog.expire([] { std::fprintf(stderr, "the waiter aborted its communicator\n"); });
      },
      ::testing::ExitedWithCode(kExitCommTimeout),
      "error on rank 3: communication stuck for 0 s \\(parallel.timeout_s = 0.3\\): waiting for #[0-9]+ all-reduce, "
      "4096 bytes; last started #[0-9]+ all-reduce.*the waiter aborted its communicator");
}

// A polled waiter that never gets to expire() (stuck inside a library call): the watchdog thread
// ends the process itself, kPolledGrace seconds after the deadline rather than at it.
TEST(WatchdogDeathTest, APolledWaiterThatNeverExpiresIsEndedAfterItsGrace) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(
      {
        Watchdog& watchdog = Watchdog::get();
        watchdog.arm(0.3, 1);
        const uint64_t seq = watchdog.started("send", 2, 64);
        Watchdog::Blocked blocked(seq, Watchdog::kPolled);
        std::this_thread::sleep_for(std::chrono::seconds(30));
      },
      ::testing::ExitedWithCode(kExitCommTimeout),
      "error on rank 1: communication stuck for [23] s .*waiting for #[0-9]+ send peer 2, 64 bytes");
}

}  // namespace
}  // namespace kl
