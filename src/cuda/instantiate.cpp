// The one model walk (models/block_impl.h, src/pipeline/stage_impl.h, engine_impl.h and the stage
// worker) instantiated for the CUDA backends.
#include "models/block_impl.h"
#include "src/cuda/backend.h"
#include "src/cuda/worker.h"
#include "comm/train_comms.h"
#include "src/pipeline/pipeline_worker_impl.h"
#include "src/util/error.h"

namespace kl {

KL_INSTANTIATE_BLOCK(cuda::CudaBackend<float>)
KL_INSTANTIATE_BLOCK(cuda::CudaBackend<cuda::bf16>)

namespace pipeline {
KL_INSTANTIATE_STAGE(cuda::CudaBackend<float>)
KL_INSTANTIATE_STAGE(cuda::CudaBackend<cuda::bf16>)
KL_INSTANTIATE_STAGE_WORKER(cuda::CudaBackend<float>)
KL_INSTANTIATE_STAGE_WORKER(cuda::CudaBackend<cuda::bf16>)
}  // namespace pipeline

namespace cuda {

namespace {

// The backend first (its stream orders the NCCL work), then NCCL communicators over the host groups.
template <class T>
std::unique_ptr<Worker> make(const Config& config, const TrainComms& host, int device) {
  auto backend = std::make_unique<CudaBackend<T>>(device, config.run.tf32);
  auto nccl = std::make_shared<DeviceComms>(make_device_comms(host, backend->stream()));
  const TrainComms data = nccl->comms();
  return pipeline::make_stage_worker(config, host, data, std::move(backend), std::move(nccl));
}

}  // namespace

std::unique_ptr<Worker> make_worker(const Config& config, const TrainComms& comms) {
  const int device = select_device();
  if (config.run.precision == Precision::kBf16) return make<bf16>(config, comms, device);
  return make<float>(config, comms, device);
}

}  // namespace cuda
}  // namespace kl
