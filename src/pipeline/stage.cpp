// A stage's layout, and the walk (stage_impl.h) instantiated for the CPU backends.
#include "src/pipeline/stage.h"

#include "src/pipeline/stage_impl.h"

namespace kl::pipeline {

std::vector<int> StageLayout::layers() const {
  std::vector<int> all;
  for (const LayerRange& r : ranges) {
    for (int l = r.begin; l < r.end; ++l) all.push_back(l);
  }
  return all;
}

StageLayout stage_layout(const Config& c, int stage) {
  StageLayout layout;
  layout.stage = stage;
  layout.stages = c.parallel.pp;
  layout.chunks = c.parallel.virtual_chunks;
  const auto global = partition_layers(c.model, layout.stages * layout.chunks, stage_layer_counts(c));
  for (int local = 0; local < layout.chunks; ++local) {
    layout.ranges.push_back(global[static_cast<size_t>(layout.global_chunk(local))]);
  }
  return layout;
}

KL_INSTANTIATE_STAGE(CpuBackend<float>)
KL_INSTANTIATE_STAGE(CpuBf16Backend)
KL_INSTANTIATE_STAGE(CpuBackend<double>)

}  // namespace kl::pipeline
