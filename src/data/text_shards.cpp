#include "src/data/text_shards.h"

#include <filesystem>
#include <fstream>
#include <iterator>

#include "src/data/data_info.h"
#include "src/data/shard.h"
#include "src/util/error.h"

namespace kl {
namespace {

bool continuation(char c) { return (static_cast<unsigned char>(c) & 0xC0) == 0x80; }

template <class T>
std::vector<T> concatenate(const std::vector<std::vector<int32_t>>& parts) {
  size_t total = 0;
  for (const auto& p : parts) total += p.size();
  std::vector<T> all;
  all.reserve(total);
  for (const auto& p : parts) all.insert(all.end(), p.begin(), p.end());
  return all;
}

// Encodes the blocks in parallel and writes them, in order, as one shard.
int64_t encode_into(const std::vector<std::string>& blocks, const Tokenizer& tokenizer, const std::string& path) {
  std::vector<std::vector<int32_t>> parts(blocks.size());
  std::string failure;
#pragma omp parallel for schedule(dynamic, 16)
  for (size_t i = 0; i < blocks.size(); ++i) {
    try {
      parts[i] = tokenizer.encode(blocks[i]);
    } catch (const UserError& e) {
#pragma omp critical
      failure = e.what();
    }
  }
  if (!failure.empty()) throw UserError(failure);
  if (tokenizer.vocab() <= 65536) {
    const auto tokens = concatenate<uint16_t>(parts);
    write_shard(path, std::span<const uint16_t>(tokens));
    return static_cast<int64_t>(tokens.size());
  }
  const auto tokens = concatenate<uint32_t>(parts);
  write_shard(path, std::span<const uint32_t>(tokens));
  return static_cast<int64_t>(tokens.size());
}

}  // namespace

TextBlocks split_text(const std::vector<std::string>& inputs, int val_every, int block) {
  if (inputs.empty()) throw UserError("no input text files");
  if (val_every < 2) throw UserError("--val-every must be at least 2");
  if (block < 4) throw UserError("--block must be at least 4 bytes");
  std::string text;
  for (const std::string& path : inputs) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw UserError("cannot read " + path);
    text.append(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    text.push_back('\n');
  }
  TextBlocks blocks;
  int64_t index = 0;
  for (size_t start = 0; start < text.size(); ++index) {
    size_t end = std::min(text.size(), start + static_cast<size_t>(block));
    while (end < text.size() && end > start + 1 && continuation(text[end])) --end;
    const bool to_val = index % val_every == val_every - 1;
    (to_val ? blocks.val : blocks.train).push_back(text.substr(start, end - start));
    (to_val ? blocks.val_bytes : blocks.train_bytes) += static_cast<int64_t>(end - start);
    start = end;
  }
  if (blocks.val.empty()) {
    throw UserError(std::to_string(text.size()) + " bytes of text make no validation block of " +
                    std::to_string(block) + " bytes at --val-every " + std::to_string(val_every) +
                    "; give a smaller --block");
  }
  return blocks;
}

std::vector<std::string> training_sentences(const TextBlocks& blocks, size_t max_bytes) {
  std::vector<std::string> sentences;
  std::string line;
  auto emit = [&] {
    if (!line.empty()) sentences.push_back(line);
    line.clear();
  };
  for (const std::string& b : blocks.train) {
    for (char c : b) {
      if (c == '\n') {
        emit();
      } else {
        // A cut before a character start, so that no sentence holds half a character.
        if (line.size() >= max_bytes && !continuation(c)) emit();
        line.push_back(c);
      }
    }
  }
  emit();
  return sentences;
}

TextShardSummary write_token_shards(const TextBlocks& blocks, const Tokenizer& tokenizer, const std::string& out_dir,
                                    const std::string& kind, const std::string& model) {
  std::error_code error;
  std::filesystem::create_directories(out_dir, error);
  if (error) throw UserError("cannot create " + out_dir + ": " + error.message());
  TextShardSummary s;
  s.train_tokens = encode_into(blocks.train, tokenizer, out_dir + "/train.bin");
  s.val_tokens = encode_into(blocks.val, tokenizer, out_dir + "/val.bin");
  s.train_bytes = blocks.train_bytes;
  s.val_bytes = blocks.val_bytes;
  write_data_info(out_dir, {kind, tokenizer.vocab(), model, s.train_tokens, s.train_bytes, s.val_tokens, s.val_bytes});
  return s;
}

TextShardSummary make_text_shards(const std::vector<std::string>& inputs, const std::string& out_dir,
                                  int val_every, int block) {
  try {
    return write_token_shards(split_text(inputs, val_every, block), *make_byte_tokenizer(), out_dir, "bytes", "");
  } catch (const UserError& e) {
    throw UserError(std::string("data: ") + e.what());
  }
}

}  // namespace kl
