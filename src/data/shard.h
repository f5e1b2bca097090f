// Token shards in llm.c's two formats: a header of 256 int32 (magic, version, token count, the rest
// zero), then `count` tokens,
//
//   GPT-2   magic 20240520, version 1, uint16 tokens (vocabularies up to 65536)
//   LLaMA-3 magic 20240801, version 7, uint32 tokens
//
// (llm.c's dev/data/data_common.py). Opening checks the header and the file's size against the
// count, and maps the file: nothing else is read, so opening a shard costs the same at 1 MB as at
// 10 GB. Tokens are read, and held to the vocabulary, when a window is copied
// (src/data/dataset.h).
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "src/util/error.h"

namespace kl {

inline constexpr int32_t kShardMagic = 20240520;  // GPT-2: uint16 tokens
inline constexpr int32_t kShardVersion = 1;
inline constexpr int32_t kShardMagic32 = 20240801;  // LLaMA-3: uint32 tokens
inline constexpr int32_t kShardVersion32 = 7;
inline constexpr int64_t kShardHeaderBytes = 256 * sizeof(int32_t);

class TokenShard {
 public:
  // Maps `path` and checks magic, version and the file size. Throws UserError naming the file
  // and the problem.
  explicit TokenShard(const std::string& path);
  ~TokenShard();
  TokenShard(TokenShard&& other) noexcept;
  TokenShard(const TokenShard&) = delete;
  TokenShard& operator=(const TokenShard&) = delete;
  TokenShard& operator=(TokenShard&&) = delete;

  int64_t size() const { return count_; }
  int token_bytes() const { return token_bytes_; }  // 2 (GPT-2) or 4 (LLaMA-3)
  // The tokens as stored; T must be uint16_t for a 2-byte shard, uint32_t for a 4-byte one.
  template <class T>
  std::span<const T> tokens() const {
    KL_CHECK(sizeof(T) == static_cast<size_t>(token_bytes_), "shard " + path_ + " read with the wrong token width");
    return {static_cast<const T*>(tokens_), static_cast<size_t>(count_)};
  }
  // Token `i`, whatever the width (a slow path: loops use tokens<T>()).
  uint32_t token(int64_t i) const {
    return token_bytes_ == 2 ? static_cast<const uint16_t*>(tokens_)[i] : static_cast<const uint32_t*>(tokens_)[i];
  }
  // Bytes [first, first + count) tokens of the token array, as stored (for hashing).
  std::span<const unsigned char> raw(int64_t first, int64_t count) const {
    return {static_cast<const unsigned char*>(tokens_) + first * token_bytes_, static_cast<size_t>(count * token_bytes_)};
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  void* map_ = nullptr;
  size_t map_bytes_ = 0;
  const void* tokens_ = nullptr;
  int64_t count_ = 0;
  int token_bytes_ = 2;
};

// Writes a shard atomically (a temporary file renamed into place): uint16 tokens as GPT-2's
// format, uint32 tokens as LLaMA-3's.
void write_shard(const std::string& path, std::span<const uint16_t> tokens);
void write_shard(const std::string& path, std::span<const uint32_t> tokens);

// "a.bin,dir/*.bin" -> the matching files, sorted per glob. Throws UserError when a part matches
// nothing.
std::vector<std::string> expand_shard_list(const std::string& spec);

}  // namespace kl
