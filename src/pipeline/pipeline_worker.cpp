// The stage worker on the CPU backend, and the choice of backend for a rank.
#include "src/pipeline/pipeline_worker.h"

#include "src/kernels/cpu/onednn.h"
#include "src/pipeline/pipeline_worker_impl.h"
#ifdef KL_HAVE_CUDA
#include "src/cuda/device.h"
#include "src/cuda/worker.h"
#endif

namespace kl {
namespace pipeline {

KL_INSTANTIATE_STAGE_WORKER(CpuBackend<float>)
KL_INSTANTIATE_STAGE_WORKER(CpuBf16Backend)

}  // namespace pipeline

void check_backend(const Config& config) {
  if (config.run.device != Device::kCuda) {
    if (config.run.precision == Precision::kBf16) {
      const std::string why = cpu::bf16_products_unavailable();
      if (!why.empty()) throw UserError("run.precision = bf16 with run.device = cpu: " + why);
      // Attention keeps its fp32 log-sum-exp among the bf16 activations: at even offsets when the
      // widths are even.
      if (config.model.d_model % 2 != 0 || config.model.ff_width() % 2 != 0) {
        throw UserError("run.precision = bf16 with run.device = cpu needs an even model.d_model and model.d_ff (got " +
                        std::to_string(config.model.d_model) + " and " + std::to_string(config.model.ff_width()) + ")");
      }
    }
    return;
  }
#ifdef KL_HAVE_CUDA
  std::string why;
  if (!cuda::device_available(&why)) throw UserError("run.device = cuda: no CUDA device: " + why);
#else
  throw UserError("run.device = cuda: this kilolayer was built without the CUDA backend (configure with "
                  "-DKL_CUDA=ON on a machine with the CUDA toolkit: nvcc >= 12, cuBLASLt and NCCL)");
#endif
}

std::unique_ptr<Worker> make_worker(const Config& config, const TrainComms& comms) {
  check_backend(config);
#ifdef KL_HAVE_CUDA
  if (config.run.device == Device::kCuda) return cuda::make_worker(config, comms);
#endif
  if (config.run.precision == Precision::kBf16) {
    return pipeline::make_stage_worker(config, comms, comms, std::make_unique<CpuBf16Backend>());
  }
  return pipeline::make_stage_worker(config, comms, comms, std::make_unique<CpuBackend<float>>());
}

}  // namespace kl
