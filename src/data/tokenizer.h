// Text <-> token ids. One interface for the tokenizers a run's data can come from:
// bytes (`kilolayer data`, vocabulary 256), a SentencePiece model (`kilolayer tokenize`, the
// tokenizer.model written beside the shards) and llm.c's gpt2_tokenizer.bin (decoding only).
// `kilolayer sample`, run.sample_every and the main job's printout decode through it.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace kl {

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;
  // The true vocabulary: every id a shard of this tokenizer may hold is below it.
  virtual int vocab() const = 0;
  // Throws UserError when this tokenizer cannot encode (llm.c's file is for decoding only).
  virtual std::vector<int32_t> encode(std::string_view text) const = 0;
  virtual std::string decode(std::span<const int32_t> tokens) const = 0;
  // One line for logs and run records: "bytes", "sentencepiece bpe 2048 (data/x/tokenizer.model)".
  virtual std::string describe() const = 0;
};

// One token per byte, vocabulary 256.
std::unique_ptr<Tokenizer> make_byte_tokenizer();

// The tokenizer of the shards named by `shard_spec` (data.train's syntax): the tokenizer file found
// beside the first shard, else bytes when `vocab` is 256. Throws UserError naming what is missing
// or does not match `vocab`.
std::unique_ptr<Tokenizer> open_data_tokenizer(const std::string& shard_spec, int vocab);

}  // namespace kl
