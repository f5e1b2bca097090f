// DIR/tokenizer.ini, written beside the shards by `kilolayer data` and `kilolayer tokenize`: which
// tokenizer made them and how many bytes of text each split's tokens hold, so that a validation
// loss in nats per token can be turned into bits per byte (comparable across tokenizers):
//
//   kind = sentencepiece          bytes | sentencepiece | gpt2 (llm.c's gpt2_tokenizer.bin)
//   vocab = 2048
//   model = tokenizer.model       the tokenizer's file in DIR (none for bytes)
//   train_tokens = 812345
//   train_bytes = 2398765
//   val_tokens = 90123
//   val_bytes = 266432
#pragma once

#include <cstdint>
#include <optional>
#include <string>

namespace kl {

inline constexpr const char* kDataInfoFile = "tokenizer.ini";

struct DataInfo {
  std::string kind;   // "bytes", "sentencepiece" or "gpt2"
  int vocab = 0;
  std::string model;  // file name in the shards' directory; empty for bytes
  int64_t train_tokens = 0, train_bytes = 0, val_tokens = 0, val_bytes = 0;
};

// Writes <dir>/tokenizer.ini. Throws UserError when it cannot.
void write_data_info(const std::string& dir, const DataInfo& info);

// <dir>/tokenizer.ini, or nullopt when there is none. Throws UserError naming the file and the line
// when it is malformed.
std::optional<DataInfo> read_data_info(const std::string& dir);

// Bytes of text per validation token for the shards of `val_spec` (data.val's syntax): from the
// tokenizer.ini beside the first shard when its val_tokens equals the shards' `tokens`; 1 for byte
// shards without one when `vocab` is 256; else nullopt (unknown: no bits per byte).
std::optional<double> val_bytes_per_token(const std::string& val_spec, int64_t tokens, int vocab);

}  // namespace kl
