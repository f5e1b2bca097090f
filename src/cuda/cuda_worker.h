// The trainer's Worker (src/train/worker.h) for run.device = cuda: the whole model on this rank's
// GPU (parallel.pp = 1), in fp32 or bf16.
#pragma once

#include <memory>

#include "comm/comm.h"
#include "src/config/config.h"
#include "src/train/worker.h"

namespace kl::cuda {

// Chooses the GPU (throws UserError, exit 2, when there is none) and builds the model on it.
std::unique_ptr<Worker> make_worker(const Config& config, const Comm& dp);

}  // namespace kl::cuda
