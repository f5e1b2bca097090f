// Byte-level tokenisation: text files -> train/val token shards (vocabulary 256, one token a byte).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace kl {

struct TextShardSummary {
  int64_t train_tokens = 0, val_tokens = 0;
};

// Concatenates `inputs` (separated by a newline) and cuts the bytes into blocks of `block` bytes;
// every `val_every`-th block goes to <out_dir>/val.bin, the rest to <out_dir>/train.bin. Interleaved
// blocks make the validation text the same mixture as the training text.
TextShardSummary make_text_shards(const std::vector<std::string>& inputs, const std::string& out_dir,
                                  int val_every, int block);

}  // namespace kl
