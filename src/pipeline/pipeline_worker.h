// One pipeline stage as the trainer's Worker (src/pipeline/worker.h), on a backend: the stage's
// slice of the model, its schedule and the engine that runs it, and the tied embedding shared by
// the first and the last stage. Definitions in pipeline_worker_impl.h, instantiated per backend.
#pragma once

#include <memory>

#include "src/pipeline/worker.h"

namespace kl::pipeline {

// For stage data.pp.rank() of config's pipeline, on `backend` (which the worker owns). `data`: the
// groups that move the backend's buffers; `host`: the same groups over host memory (the same
// communicators on the CPU); `owned`: kept alive with the worker. Throws UserError when the layout
// is impossible (a bad parallel.stage_layers).
template <class Backend>
std::unique_ptr<Worker> make_stage_worker(const Config& config, const TrainComms& host, const TrainComms& data,
                                          std::unique_ptr<Backend> backend, std::shared_ptr<void> owned = nullptr);

}  // namespace kl::pipeline
