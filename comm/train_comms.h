// The communicators one training rank uses, handed to the trainer and the pipeline explicitly.
// A host run uses the MPI groups of make_grid_comms (comm/mpi_comm.h) as they are; a device run
// (run.device = cuda) builds NCCL communicators over the same groups with make_device_comms and
// keeps the world on the host.
#pragma once

#include <memory>

#include "comm/comm.h"

#ifdef KL_HAVE_CUDA
#include <cuda_runtime_api.h>

#include "comm/nccl/nccl_comm.h"
#endif

namespace kl {

class MpiComm;

// This rank's data-parallel group, its pipeline (rank = stage), and the pair of its pipeline's
// first and last stage, which share a tied embedding (one-rank groups where there is nothing to
// share): these move the model's buffers, in dp.memory(). The world (every rank) is always host
// memory: checkpoints, agreement on errors, the preemption flag.
struct TrainComms {
  Comm& dp;
  Comm& pp;
  Comm& embedding;
  Comm& world;
  // `world` as MPI, for what needs the MPI communicator itself (parallel HDF5 writes one checkpoint
  // file through MPI-IO); null where the world is not MPI (a SoloComm: one rank, which writes alone).
  const MpiComm* world_mpi = nullptr;
  // The pipeline's messages to a lower stage on a communicator of their own (NCCL, whose operations
  // run one after another on one stream per communicator: with both directions on one, two stages
  // can each wait on a send queued before the receive the other needs; tests/test_schedule.cpp's
  // rendezvous check). Null: `pp` carries both directions (MPI progresses them independently).
  Comm* pp_down = nullptr;
  Comm& pipeline_down() const { return pp_down ? *pp_down : pp; }
};

#ifdef KL_HAVE_CUDA
// The NCCL communicators of a device run, owned; comms() lends them out with the host world.
struct DeviceComms {
  std::unique_ptr<NcclComm> dp, pp, pp_down, embedding;
  Comm* world = nullptr;
  const MpiComm* world_mpi = nullptr;

  TrainComms comms() const { return {*dp, *pp, *embedding, *world, world_mpi, pp_down.get()}; }
};

// Collective over every rank of host.world: an NCCL communicator over each of host.dp, host.pp
// (two: up and down the pipeline) and host.embedding (NCCL ids broadcast over those host groups),
// in that order on every rank. Each
// rank must have chosen its GPU first (cuda::select_device); `compute` is the stream the training
// work runs on. `host`'s communicators must outlive the result (barriers and host values use them).
DeviceComms make_device_comms(const TrainComms& host, cudaStream_t compute);
#endif

}  // namespace kl
