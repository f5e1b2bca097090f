// The parameter table: every tensor of the model described once (global name, shape, init, weight
// decay) and placed in one flat buffer. Allocation, initialisation, the optimizer, and later the
// gradient buckets and checkpoint datasets all read this table; nothing indexes tensors by number.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "models/residual.h"
#include "src/config/config.h"

namespace kl {

enum class Init { kNormal, kOnes, kZeros, kConstant };

// A range [begin, end) of a flat buffer in this layout (a ZeRO-1 shard is a list of them).
struct BufferRange {
  int64_t begin = 0, end = 0;
  int64_t size() const { return end - begin; }
};

struct ParamSpec {
  std::string name;  // global and layout-independent: "layers/000123/attn.qkv.weight"
  std::vector<int64_t> shape;
  Init init = Init::kZeros;
  double init_std = 0.0;  // for kNormal
  double init_value = 0.0;  // for kConstant
  // kNormal: rows from this one on (a 2-D tensor's second index runs fastest) use init_std x
  // tail_gain (DeepNet's gain on the value part of the fused qkv projection); -1: none.
  int64_t tail_from_row = -1;
  double tail_gain = 1.0;
  // The vocabulary's tensors (token embedding, head): the rows of the true vocabulary (model.vocab);
  // rows past them, up to model.vocab_padded, are padding: initialised to zero, and they stay zero
  // (no pass reads them, their gradient is zero). -1 for every other tensor.
  int64_t vocab_rows = -1;
  bool decay = false;     // AdamW weight decay applies
  // Factors on AdamW's learning rate and epsilon for this tensor (model.depth_scaling: the block
  // tensors'; models/residual.h), 1 otherwise.
  double lr_scale = 1.0;
  double eps_scale = 1.0;
  int layer = -1;         // block index, -1 for embeddings, final norm and head
  int64_t offset = 0;     // first element in the flat buffer

  int64_t numel() const;
};

class ParamTable {
 public:
  // The whole model.
  explicit ParamTable(const ModelConfig& config);
  // One pipeline stage's share, under the same global names: the blocks `layers` (ascending), the
  // embeddings when `first`, the final norm and head when `last`. With tied embeddings the last
  // stage holds the token embedding too (as its head); the two copies are kept equal by summing
  // their gradients every step.
  ParamTable(const ModelConfig& config, const std::vector<int>& layers, bool first, bool last);

  const std::vector<ParamSpec>& specs() const { return specs_; }
  const ParamSpec& get(std::string_view name) const;   // KL_CHECKs that it exists
  const ParamSpec* find(std::string_view name) const;  // null when absent
  int64_t buffer_size() const { return buffer_size_; }  // elements, with alignment padding
  int64_t parameter_count() const;                      // N, the model's parameters

  static std::string layer_prefix(int layer);  // "layers/000123/"
  // First element of block `layer`'s tensors (they are contiguous); KL_CHECKs that it is here.
  int64_t layer_offset(int layer) const;

 private:
  ParamSpec& add(std::string name, std::vector<int64_t> shape, Init init, double std, bool decay, int layer);

  std::vector<ParamSpec> specs_;
  std::unordered_map<std::string, size_t> index_;  // name -> position in specs_
  std::unordered_map<int, int64_t> layer_offset_;  // block -> its first element
  DepthScale depth_;  // the block tensors' learning-rate and epsilon factors
  int64_t buffer_size_ = 0;
};

// Fills `params` (buffer_size elements) from the table: normal(0, std) keyed by (seed, name) and
// element index, so a tensor's initial value never depends on which rank or stage holds it.
template <class T>
void init_parameters(const ParamTable& table, uint64_t seed, T* params);

}  // namespace kl
