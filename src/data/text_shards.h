// Text files -> train/val token shards with a tokenizer.ini beside them (src/data/data_info.h):
// `kilolayer data` (one token a byte) and `kilolayer tokenize` (a SentencePiece BPE).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "src/data/tokenizer.h"

namespace kl {

// The text of `inputs` (each followed by a newline), cut into blocks of `block` bytes (a cut that
// would split a UTF-8 character moves back to its start); every `val_every`-th block is validation
// text, the rest training text. Interleaved blocks make the validation text the same mixture as
// the training text. Throws UserError on unreadable files, bad arguments or no validation block.
struct TextBlocks {
  std::vector<std::string> train, val;
  int64_t train_bytes = 0, val_bytes = 0;
};
TextBlocks split_text(const std::vector<std::string>& inputs, int val_every, int block);

// The lines of the training blocks (each at most `max_bytes`, longer ones cut at characters), the
// sentences a tokenizer is trained on.
std::vector<std::string> training_sentences(const TextBlocks& blocks, size_t max_bytes = 4096);

struct TextShardSummary {
  int64_t train_tokens = 0, val_tokens = 0, train_bytes = 0, val_bytes = 0;
};

// Encodes every block with `tokenizer` (blocks in parallel) into <out_dir>/train.bin and val.bin
// (GPT-2's uint16 format up to a vocabulary of 65536, else LLaMA-3's uint32) and writes
// <out_dir>/tokenizer.ini of `kind` naming `model` (a file in out_dir, "" for bytes).
TextShardSummary write_token_shards(const TextBlocks& blocks, const Tokenizer& tokenizer, const std::string& out_dir,
                                    const std::string& kind, const std::string& model);

// `kilolayer data`: byte-level shards (vocabulary 256).
TextShardSummary make_text_shards(const std::vector<std::string>& inputs, const std::string& out_dir,
                                  int val_every, int block);

}  // namespace kl
