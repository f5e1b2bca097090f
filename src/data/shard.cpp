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

TokenShard::TokenShard(const std::string& path, int vocab) : path_(path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) reject(path, std::string("cannot open: ") + std::strerror(errno));
  struct stat info {};
  if (::fstat(fd, &info) != 0 || !S_ISREG(info.st_mode)) {
    ::close(fd);
    reject(path, "not a regular file");
  }
  const auto file_bytes = static_cast<int64_t>(info.st_size);
  if (file_bytes < kShardHeaderBytes) {
    ::close(fd);
    reject(path, "truncated: " + std::to_string(file_bytes) + " bytes, shorter than the " +
                     std::to_string(kShardHeaderBytes) + "-byte header");
  }
  map_bytes_ = static_cast<size_t>(file_bytes);
  map_ = ::mmap(nullptr, map_bytes_, PROT_READ, MAP_PRIVATE, fd, 0);
  ::close(fd);
  if (map_ == MAP_FAILED) {
    map_ = nullptr;
    reject(path, std::string("mmap failed: ") + std::strerror(errno));
  }
  int32_t header[3];
  std::memcpy(header, map_, sizeof header);
  try {
    if (header[0] != kShardMagic) {
      reject(path, "bad magic " + std::to_string(header[0]) + " (expected " +
                       std::to_string(kShardMagic) + "; not a token shard?)");
    }
    if (header[1] != kShardVersion) {
      reject(path, "unsupported version " + std::to_string(header[1]) + " (expected " +
                       std::to_string(kShardVersion) + ")");
    }
    if (header[2] < 0) reject(path, "negative token count " + std::to_string(header[2]));
    count_ = header[2];
    const int64_t expected = kShardHeaderBytes + 2 * count_;
    if (file_bytes != expected) {
      reject(path, "header says " + std::to_string(count_) + " tokens, so " +
                       std::to_string(expected) + " bytes, but the file has " +
                       std::to_string(file_bytes) + (file_bytes < expected ? " (truncated)" : ""));
    }
    tokens_ = reinterpret_cast<const uint16_t*>(static_cast<const char*>(map_) + kShardHeaderBytes);
    for (int64_t i = 0; i < count_; ++i) {
      if (tokens_[i] >= vocab) {
        reject(path, "token " + std::to_string(tokens_[i]) + " at position " + std::to_string(i) +
                         " is not below model.vocab = " + std::to_string(vocab));
      }
    }
  } catch (...) {
    ::munmap(map_, map_bytes_);
    map_ = nullptr;
    throw;
  }
}

TokenShard::TokenShard(TokenShard&& other) noexcept
    : path_(std::move(other.path_)),
      map_(other.map_),
      map_bytes_(other.map_bytes_),
      tokens_(other.tokens_),
      count_(other.count_) {
  other.map_ = nullptr;
  other.tokens_ = nullptr;
  other.count_ = 0;
}

TokenShard::~TokenShard() {
  if (map_) ::munmap(map_, map_bytes_);
}

void write_shard(const std::string& path, std::span<const uint16_t> tokens) {
  if (tokens.size() > static_cast<size_t>(INT32_MAX)) {
    throw UserError("data shard " + path + ": too many tokens for one shard");
  }
  int32_t header[256] = {};
  header[0] = kShardMagic;
  header[1] = kShardVersion;
  header[2] = static_cast<int32_t>(tokens.size());
  const std::string temporary = path + ".tmp";
  {
    std::ofstream out(temporary, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(header), sizeof header);
    out.write(reinterpret_cast<const char*>(tokens.data()),
              static_cast<std::streamsize>(tokens.size_bytes()));
    if (!out.flush()) throw UserError("data shard " + path + ": write failed");
  }
  std::filesystem::rename(temporary, path);
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
