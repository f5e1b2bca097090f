// The hook through which the trainer gets a GPU worker (run.device = cuda). Compiled in every build:
// without the CUDA backend it explains how to get one.
#pragma once

#include <memory>

#include "comm/comm.h"
#include "src/config/config.h"
#include "src/train/worker.h"

namespace kl {

// The whole model on this rank's GPU (parallel.pp = 1). Throws UserError (exit status 2) when this
// binary was built without the CUDA backend or the machine has no usable GPU.
std::unique_ptr<Worker> make_device_worker(const Config& config, const Comm& dp);

}  // namespace kl
