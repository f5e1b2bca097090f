// The `kilolayer plan` command line (docs/planning.md):
//   kilolayer plan --config FILE --gpus N [--preset h100|h200] [--gpu-memory GB] [--peak-tflops X]
//                  [--intra-gbps A] [--inter-gbps B] [--gpus-per-node G] [--efficiency E]
//                  [--latency-us L] [--calibration FILE] [--dp N] [--pp N] [--schedule S]
//                  [--virtual V] [--micro-batch B] [--recompute none|block] [--zero 0|1]
//                  [--top K] [--out FILE] [--section.key=value ...]
//   kilolayer plan --config FILE --evaluate [hardware flags] [--calibration FILE] [...]
//   kilolayer plan --config FILE --calibrate [--out FILE] [--repeats N] [...]
#pragma once

#include <ostream>
#include <string>
#include <vector>

namespace kl::plan {

extern const char* const kPlanUsage;

// Runs the command; throws UserError (exit status 2) on any bad input.
int run_plan(std::vector<std::string> args, std::ostream& out);

}  // namespace kl::plan
