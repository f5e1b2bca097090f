// libFuzzer target: the token-shard reader on arbitrary file contents. Every input must either open
// (and then every token must be readable and below the vocabulary) or be refused with a UserError.
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

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
    const kl::TokenShard shard(path, 256);
    uint64_t sum = 0;
    for (uint16_t token : shard.tokens()) {
      if (token >= 256) std::abort();  // the reader promised every token < vocab
      sum += token;
    }
    if (sum == 0xFFFFFFFFFFFFFFFFull) std::abort();  // keeps the loop from being optimised away
  } catch (const kl::UserError&) {
  }
  return 0;
}
