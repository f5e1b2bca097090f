// libFuzzer target: the token-shard reader on arbitrary file contents. Every input must either open
// (and then every token must be readable) or be refused with a UserError; a dataset over it must
// either refuse a token outside the vocabulary with a UserError or give only tokens below it.
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "src/data/dataset.h"
#include "src/data/shard.h"
#include "src/util/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string path =
      (std::filesystem::temp_directory_path() / ("kl_fuzz_shard_" + std::to_string(::getpid()) + ".bin")).string();
  std::FILE* file = std::fopen(path.c_str(), "wb");
  if (!file) std::abort();
  if (size > 0 && std::fwrite(data, 1, size, file) != size) std::abort();
  std::fclose(file);
  try {
    const kl::TokenShard shard(path);
    uint64_t sum = 0;
    for (int64_t i = 0; i < shard.size(); ++i) sum += shard.token(i);
    if (sum == 0xFFFFFFFFFFFFFFFFull) std::abort();  // keeps the loop from being optimised away
    constexpr int kSeqLen = 4;
    const kl::TokenDataset set(path, 256, kSeqLen, 1);
    std::vector<int32_t> inputs(kSeqLen), targets(kSeqLen);
    for (int64_t step = 0; step < std::min<int64_t>(set.windows(), 256); ++step) {  // one window a step
      set.training_batch(7, step, 0, 1, inputs.data(), targets.data());
      for (int t = 0; t < kSeqLen; ++t) {
        if (inputs[t] < 0 || inputs[t] >= 256 || targets[t] < 0 || targets[t] >= 256) std::abort();
      }
    }
  } catch (const kl::UserError&) {
  }
  return 0;
}
