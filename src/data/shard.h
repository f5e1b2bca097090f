// Token shards in llm.c's format: a header of 256 int32 (magic 20240520, version 1, token count,
// the rest zero), then `count` uint16 tokens. Opened by memory mapping and validated in full.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace kl {

inline constexpr int32_t kShardMagic = 20240520;
inline constexpr int32_t kShardVersion = 1;
inline constexpr int64_t kShardHeaderBytes = 256 * sizeof(int32_t);

class TokenShard {
 public:
  // Maps `path` and checks magic, version, file size and that every token is below `vocab`.
  // Throws UserError naming the file and the problem.
  TokenShard(const std::string& path, int vocab);
  ~TokenShard();
  TokenShard(TokenShard&& other) noexcept;
  TokenShard(const TokenShard&) = delete;
  TokenShard& operator=(const TokenShard&) = delete;
  TokenShard& operator=(TokenShard&&) = delete;

  std::span<const uint16_t> tokens() const { return {tokens_, static_cast<size_t>(count_)}; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  void* map_ = nullptr;
  size_t map_bytes_ = 0;
  const uint16_t* tokens_ = nullptr;
  int64_t count_ = 0;
};

// Writes a shard atomically (a temporary file renamed into place).
void write_shard(const std::string& path, std::span<const uint16_t> tokens);

// "a.bin,dir/*.bin" -> the matching files, sorted per glob. Throws UserError when a part matches
// nothing.
std::vector<std::string> expand_shard_list(const std::string& spec);

}  // namespace kl
