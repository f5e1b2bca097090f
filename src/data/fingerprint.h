// What a checkpoint records of the data it was trained on, to notice a resume on other data: the
// tokenizer (a hash of its file) and per shard its token count and a hash of a sample of its tokens (the first 4096, 32 spans of 64
// spread evenly, the last 64), so that recording costs a few kilobytes of reading per shard
// whatever its size. A moved copy of the same shards is the same data; paths are only named.
#pragma once

#include <string>

#include "src/data/dataset.h"
#include "src/data/tokenizer.h"

namespace kl {

// One line per shard: "train 0 tokens 33102 hash 1f2e3d4c5b6a7980 /path/train.bin", then val's,
// then the tokenizer's: "tokenizer 0 vocab 2048 hash 0123456789abcdef sentencepiece 2048 (data/x/tokenizer.model)",
// the hash of `tokenizer_file`'s bytes (0 without a file: bytes, or none found) and its description.
std::string data_fingerprint(const TokenDataset& train, const TokenDataset& val, const Tokenizer* tokenizer = nullptr,
                             const std::string& tokenizer_file = "");

// "" when `now` holds the same shards and tokenizer file as `saved` (paths aside); else what
// differs, one shard, count or tokenizer per line, naming the files.
std::string describe_data_change(const std::string& saved, const std::string& now);

}  // namespace kl
