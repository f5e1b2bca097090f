#include "src/data/fingerprint.h"

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <span>
#include <sstream>
#include <vector>

namespace kl {
namespace {

// FNV-1a, 64 bits: not cryptographic, which is not the point: an accidental change is what it finds.
class Hash {
 public:
  void add(std::span<const unsigned char> bytes) {
    for (unsigned char byte : bytes) value_ = (value_ ^ byte) * 0x100000001b3ull;
  }
  uint64_t value() const { return value_; }

 private:
  uint64_t value_ = 0xcbf29ce484222325ull;
};

// Over the tokens' bytes as stored, so a uint16 shard hashes as it always has.
uint64_t sample_hash(const TokenShard& shard) {
  const int64_t n = shard.size();
  Hash hash;
  hash.add(shard.raw(0, std::min<int64_t>(n, 4096)));
  constexpr int64_t kSpans = 32, kSpan = 64;
  for (int64_t i = 0; i < kSpans && n > kSpan; ++i) hash.add(shard.raw((n - kSpan) * i / (kSpans - 1), kSpan));
  if (n > kSpan) hash.add(shard.raw(n - kSpan, kSpan));
  return hash.value();
}

uint64_t file_hash(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  Hash hash;
  hash.add({reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size()});
  return hash.value();
}

struct Line {
  std::string role, tokens, hash, path;
};

std::vector<Line> parse(const std::string& text) {
  std::vector<Line> lines;
  std::istringstream in(text);
  std::string row;
  while (std::getline(in, row)) {
    std::istringstream words(row);
    Line line;
    std::string index, tokens_word, hash_word;
    words >> line.role >> index >> tokens_word >> line.tokens >> hash_word >> line.hash;
    std::getline(words >> std::ws, line.path);
    lines.push_back(line);
  }
  return lines;
}

}  // namespace

std::string data_fingerprint(const TokenDataset& train, const TokenDataset& val, const Tokenizer* tokenizer,
                             const std::string& tokenizer_file) {
  std::string text;
  char line[96];
  for (const auto& [role, set] : {std::pair{"train", &train}, std::pair{"val", &val}}) {
    int index = 0;
    for (const TokenShard& shard : set->shards()) {
      std::snprintf(line, sizeof line, "%s %d tokens %lld hash %016llx ", role, index++,
                    static_cast<long long>(shard.size()), static_cast<unsigned long long>(sample_hash(shard)));
      text += line + shard.path() + "\n";
    }
  }
  std::snprintf(line, sizeof line, "tokenizer 0 vocab %d hash %016llx ", tokenizer ? tokenizer->vocab() : 0,
                static_cast<unsigned long long>(tokenizer_file.empty() ? 0 : file_hash(tokenizer_file)));
  return text + line + (tokenizer ? tokenizer->describe() : "none found") + "\n";
}

std::string describe_data_change(const std::string& saved, const std::string& now) {
  const std::vector<Line> before = parse(saved), after = parse(now);
  std::string changes;
  for (const char* role : {"train", "val"}) {
    std::vector<const Line*> a, b;
    for (const Line& l : before) if (l.role == role) a.push_back(&l);
    for (const Line& l : after) if (l.role == role) b.push_back(&l);
    const std::string key = std::string("data.") + role;
    if (a.size() != b.size()) {
      changes += "\n  " + key + ": " + std::to_string(a.size()) + " shard(s) at the save, " +
                 std::to_string(b.size()) + " now";
      continue;
    }
    for (size_t i = 0; i < a.size(); ++i) {
      if (a[i]->tokens != b[i]->tokens) {
        changes += "\n  " + key + " shard " + std::to_string(i) + ": " + a[i]->tokens + " tokens in " + a[i]->path +
                   " at the save, " + b[i]->tokens + " in " + b[i]->path + " now";
      } else if (a[i]->hash != b[i]->hash) {
        changes += "\n  " + key + " shard " + std::to_string(i) + ": " + b[i]->path +
                   " has the same length as " + a[i]->path + " at the save but other tokens";
      }
    }
  }
  const auto tokenizer = [](const std::vector<Line>& lines) -> const Line* {
    for (const Line& l : lines) if (l.role == "tokenizer") return &l;
    return nullptr;
  };
  // Checkpoints from before the tokenizer was recorded have no line: nothing to compare.
  const Line *then = tokenizer(before), *current = tokenizer(after);
  if (then && current && (then->hash != current->hash || then->tokens != current->tokens)) {
    changes += "\n  tokenizer: " + then->path + " at the save, " + current->path + " now";
  }
  return changes;
}

}  // namespace kl
