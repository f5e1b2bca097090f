// What a checkpoint records of the data it was trained on, to notice a resume on other data: per
// shard its token count and a hash of a sample of its tokens (the first 4096, 32 spans of 64
// spread evenly, the last 64), so that recording costs a few kilobytes of reading per shard
// whatever its size. A moved copy of the same shards is the same data; paths are only named.
#pragma once

#include <string>

#include "src/data/dataset.h"

namespace kl {

// One line per shard: "train 0 tokens 33102 hash 1f2e3d4c5b6a7980 /path/train.bin", then val's.
std::string data_fingerprint(const TokenDataset& train, const TokenDataset& val);

// "" when `now` holds the same shards as `saved` (paths aside); else what differs, one shard or
// count per line, naming the files.
std::string describe_data_change(const std::string& saved, const std::string& now);

}  // namespace kl
