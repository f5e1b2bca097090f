#include "comm/train_comms.h"

#include "src/util/error.h"

namespace kl {

#ifdef KL_HAVE_CUDA
DeviceComms make_device_comms(const TrainComms& host, cudaStream_t compute) {
  KL_CHECK(host.world.memory() == Memory::kHost, "the world communicator must be a host one");
  DeviceComms device;
  // The same order on every rank: each init waits for its whole group, and every rank belongs to
  // one group of each kind, so no rank waits in a dp init while its peer waits in a pp one.
  device.dp = make_nccl_comm(host.dp, compute);
  device.pp = make_nccl_comm(host.pp, compute);
  device.pp_down = make_nccl_comm(host.pp, compute);
  device.embedding = make_nccl_comm(host.embedding, compute);
  device.world = &host.world;
  device.world_mpi = host.world_mpi;
  return device;
}
#endif

}  // namespace kl
