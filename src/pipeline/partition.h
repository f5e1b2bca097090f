// Which layers each pipeline chunk holds: contiguous ranges, balanced by a cost model, or given.
#pragma once

#include <string>
#include <vector>

#include "src/config/config.h"

namespace kl::pipeline {

struct LayerRange {
  int begin, end;  // blocks [begin, end)
};

// Training FLOPs per token of one block, and of the extra work on the first chunk (embedding) and
// the last (final norm, LM head, softmax cross-entropy), in the same units (6 x multiply-adds of
// the forward pass, the 6N + 12 L d T convention).
struct ChunkCosts {
  double block, first_extra, last_extra;
};
ChunkCosts chunk_costs(const ModelConfig& model);
// The expected training FLOPs per token of block `layer`: c.block, times the probability that the
// block runs when stochastic depth skips dropped blocks, (1 - p_l).
double block_cost(const ModelConfig& model, const ChunkCosts& c, int layer);

// Splits model.layers blocks into `chunks` contiguous ranges (global chunk order) so that the
// most expensive chunk, extras included, is as cheap as possible; every chunk gets at least one
// block. `explicit_counts` (blocks per chunk), when not empty, is used instead after checking it.
// Throws UserError when impossible (fewer blocks than chunks, counts that do not add up).
std::vector<LayerRange> partition_layers(const ModelConfig& model, int chunks,
                                         const std::vector<int>& explicit_counts = {});

// "stage 0: layers 0-31 (32) | stage 1: ..." for the log.
std::string describe(const std::vector<LayerRange>& ranges, int stages);

}  // namespace kl::pipeline
