// One block's activations, scratch and output gradients, carved from vectors on a CPU backend: the
// memory of the tests that run a single block through the model walk.
#pragma once

#include <vector>

#include "models/block_impl.h"

namespace kl::test {

template <class Be>
struct BlockMemory {
  std::vector<typename Be::Act> act;
  std::vector<typename Be::Acc> acc;
  BlockActivations<Be> a;
  BlockScratch<Be> scratch;
  BlockOutputGrads<Be> grads;  // kept apart from the scratch, as a split backward pass needs

  explicit BlockMemory(const BlockShape& s) {
    const Sizes size = BlockActivations<Be>::size(s) + BlockScratch<Be>::size(s) + BlockOutputGrads<Be>::size(s);
    act.resize(static_cast<size_t>(size.act));
    acc.resize(static_cast<size_t>(size.acc));
    Carver<Be> memory{act.data(), acc.data()};
    a = BlockActivations<Be>::carve(memory, s);
    scratch = BlockScratch<Be>::carve(memory, s);
    grads = BlockOutputGrads<Be>::carve(memory, s);
  }
  BlockMemory(const BlockMemory&) = delete;  // the carved pointers point into the vectors
  BlockMemory& operator=(const BlockMemory&) = delete;
};

}  // namespace kl::test
