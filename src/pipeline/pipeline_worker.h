// One pipeline stage as the trainer's Worker (src/train/worker.h): the stage's slice of the model,
// its schedule and the engine that runs it, and the tied embedding shared by the first and the
// last stage.
#pragma once

#include <memory>

#include "src/config/config.h"
#include "src/train/trainer.h"
#include "src/train/worker.h"

namespace kl::pipeline {

// For stage comms.pp.rank() of config's pipeline (parallel.pp > 1). Throws UserError when the
// layout is impossible (a bad parallel.stage_layers).
std::unique_ptr<Worker> make_pipeline_worker(const Config& config, const TrainComms& comms);

}  // namespace kl::pipeline
