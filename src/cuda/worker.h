// The stage worker (src/pipeline/worker.h) on the GPU: the same walk, engine and trainer as the
// CPU's, on CudaBackend<float> (run.precision = fp32) or CudaBackend<bf16>.
#pragma once

#include <memory>

#include "src/pipeline/worker.h"

namespace kl::cuda {

// Chooses this rank's GPU (select_device: throws UserError without one). `comms`' dp, pp and
// embedding groups must take device memory (NCCL) where they have more than one rank.
std::unique_ptr<Worker> make_worker(const Config& config, const TrainComms& comms);

}  // namespace kl::cuda
