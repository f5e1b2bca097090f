#include "src/data/shard.h"

#include <fcntl.h>
#include <glob.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "src/util/error.h"

namespace kl {
namespace {

[[noreturn]] void reject(const std::string& path, const std::string& problem) {
  throw UserError("data shard " + path + ": " + problem);
}

}  // namespace

TokenShard::TokenShard(const std::string& path) : path_(path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) reject(path, std::string("cannot open: ") + std::strerror(errno));
  struct stat info {};
  if (::fstat(fd, &info) != 0 || !S_ISREG(info.st_mode)) {
    ::close(fd);
    reject(path, "not a regular file");
  }
  const auto file_bytes = static_cast<int64_t>(info.st_size);
  int32_t header[3] = {};
  if (file_bytes < kShardHeaderBytes || ::pread(fd, header, sizeof header, 0) != sizeof header) {
    ::close(fd);
    reject(path, "truncated: " + std::to_string(file_bytes) + " bytes, shorter than the " +
                     std::to_string(kShardHeaderBytes) + "-byte header");
  }
  try {
    if (header[0] == kShardMagic) {
      if (header[1] != kShardVersion) {
        reject(path, "unsupported version " + std::to_string(header[1]) + " for magic " + std::to_string(kShardMagic) +
                         " (GPT-2 shards are version " + std::to_string(kShardVersion) + ")");
      }
      token_bytes_ = 2;
    } else if (header[0] == kShardMagic32) {
      if (header[1] != kShardVersion32) {
        reject(path, "unsupported version " + std::to_string(header[1]) + " for magic " +
                         std::to_string(kShardMagic32) + " (LLaMA-3 shards are version " +
                         std::to_string(kShardVersion32) + ")");
      }
      token_bytes_ = 4;
    } else {
      reject(path, "bad magic " + std::to_string(header[0]) + " (expected " + std::to_string(kShardMagic) +
                       " or " + std::to_string(kShardMagic32) + "; not a token shard?)");
    }
    if (header[2] < 0) reject(path, "negative token count " + std::to_string(header[2]));
    count_ = header[2];
    const int64_t expected = kShardHeaderBytes + token_bytes_ * count_;
    if (file_bytes != expected) {
      reject(path, "header says " + std::to_string(count_) + " tokens of " + std::to_string(token_bytes_) +
                       " bytes, so " + std::to_string(expected) + " bytes, but the file has " +
                       std::to_string(file_bytes) + (file_bytes < expected ? " (truncated)" : ""));
    }
  } catch (...) {
    ::close(fd);
    throw;
  }
  // Mapped, not read: pages come in as windows touch them.
  map_bytes_ = static_cast<size_t>(file_bytes);
  map_ = ::mmap(nullptr, map_bytes_, PROT_READ, MAP_PRIVATE, fd, 0);
  ::close(fd);
  if (map_ == MAP_FAILED) {
    map_ = nullptr;
    reject(path, std::string("mmap failed: ") + std::strerror(errno));
  }
  // Training reads windows at random: no read-around (the kernel's default reads up to
  // read_ahead_kb around every fault, megabytes per window of a few hundred bytes).
  ::madvise(map_, map_bytes_, MADV_RANDOM);
  tokens_ = static_cast<const char*>(map_) + kShardHeaderBytes;
}

TokenShard::TokenShard(TokenShard&& other) noexcept
    : path_(std::move(other.path_)),
      map_(other.map_),
      map_bytes_(other.map_bytes_),
      tokens_(other.tokens_),
      count_(other.count_),
      token_bytes_(other.token_bytes_) {
  other.map_ = nullptr;
  other.tokens_ = nullptr;
  other.count_ = 0;
}

TokenShard::~TokenShard() {
  if (map_) ::munmap(map_, map_bytes_);
}

namespace {

template <class T>
void write_tokens(const std::string& path, std::span<const T> tokens, int32_t magic, int32_t version) {
  if (tokens.size() > static_cast<size_t>(INT32_MAX)) {
    throw UserError("data shard " + path + ": too many tokens for one shard");
  }
  int32_t header[256] = {};
  header[0] = magic;
  header[1] = version;
  header[2] = static_cast<int32_t>(tokens.size());
  const std::string temporary = path + ".tmp";
  {
    std::ofstream out(temporary, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(header), sizeof header);
    out.write(reinterpret_cast<const char*>(tokens.data()), static_cast<std::streamsize>(tokens.size_bytes()));
    if (!out.flush()) throw UserError("data shard " + path + ": write failed");
  }
  std::filesystem::rename(temporary, path);
}

}  // namespace

void write_shard(const std::string& path, std::span<const uint16_t> tokens) {
  write_tokens(path, tokens, kShardMagic, kShardVersion);
}

void write_shard(const std::string& path, std::span<const uint32_t> tokens) {
  write_tokens(path, tokens, kShardMagic32, kShardVersion32);
}

std::vector<std::string> expand_shard_list(const std::string& spec) {
  std::vector<std::string> files;
  size_t start = 0;
  while (start <= spec.size()) {
    size_t comma = spec.find(',', start);
    if (comma == std::string::npos) comma = spec.size();
    const std::string part = spec.substr(start, comma - start);
    start = comma + 1;
    if (part.empty()) continue;
    glob_t matches{};
    const int status = ::glob(part.c_str(), 0, nullptr, &matches);
    if (status != 0) {
      ::globfree(&matches);
      throw UserError("data: no file matches '" + part + "'");
    }
    for (size_t i = 0; i < matches.gl_pathc; ++i) files.emplace_back(matches.gl_pathv[i]);
    ::globfree(&matches);
  }
  if (files.empty()) throw UserError("data: no shard files given");
  return files;
}

}  // namespace kl
