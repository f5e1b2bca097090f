// llm.c's gpt2_tokenizer.bin (the format of llm.c's llmc/tokenizer.h, read by our own code): a
// header of 256 uint32 (magic 20240328, version, vocabulary size, version 2: the end-of-text id),
// then for each token a length byte (never 0) and the token's bytes. Version 1 has no end-of-text
// field and is GPT-2's vocabulary of 50257, end of text 50256.
#include <cstdint>
#include <cstring>
#include <fstream>
#include <iterator>

#include "src/data/tokenizer.h"
#include "src/util/error.h"

namespace kl {
namespace {

constexpr uint32_t kLlmcTokenizerMagic = 20240328;
constexpr uint32_t kGpt2Vocab = 50257;

class LlmcTokenizer final : public Tokenizer {
 public:
  LlmcTokenizer(std::string path, std::vector<std::string> table, int end_of_text)
      : path_(std::move(path)), table_(std::move(table)), end_of_text_(end_of_text) {}

  int vocab() const override { return static_cast<int>(table_.size()); }
  std::vector<int32_t> encode(std::string_view) const override {
    throw UserError("tokenizer " + path_ + ": llm.c's gpt2_tokenizer.bin can only decode (it holds no merges); "
                    "encode text with a SentencePiece model (kilolayer tokenize) instead");
  }
  std::string decode(std::span<const int32_t> tokens) const override {
    std::string text;
    for (int32_t token : tokens) {
      if (token < 0 || token >= vocab()) {
        throw UserError("tokenizer " + path_ + ": token " + std::to_string(token) + " is outside its vocabulary of " +
                        std::to_string(vocab()));
      }
      text += table_[static_cast<size_t>(token)];
    }
    return text;
  }
  std::string describe() const override {
    return "llm.c gpt2 " + std::to_string(vocab()) + ", end of text " + std::to_string(end_of_text_) + " (" + path_ + ")";
  }

 private:
  std::string path_;
  std::vector<std::string> table_;
  int end_of_text_;
};

}  // namespace

std::unique_ptr<Tokenizer> load_llmc_tokenizer(const std::string& path) {
  auto reject = [&](const std::string& why) { return UserError("tokenizer " + path + ": " + why); };
  std::ifstream in(path, std::ios::binary);
  if (!in) throw reject("cannot open");
  const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  uint32_t header[256];
  if (bytes.size() < sizeof header) throw reject("truncated: " + std::to_string(bytes.size()) + " bytes, shorter than the 1024-byte header");
  std::memcpy(header, bytes.data(), sizeof header);
  if (header[0] != kLlmcTokenizerMagic) {
    throw reject("bad magic " + std::to_string(header[0]) + " (expected " + std::to_string(kLlmcTokenizerMagic) +
                 ", llm.c's gpt2_tokenizer.bin)");
  }
  const uint32_t version = header[1], vocab = header[2];
  uint32_t end_of_text = 0;
  if (version == 1) {
    if (vocab != kGpt2Vocab) {
      throw reject("version 1 must hold GPT-2's " + std::to_string(kGpt2Vocab) + " tokens, not " + std::to_string(vocab));
    }
    end_of_text = kGpt2Vocab - 1;
  } else if (version == 2) {
    end_of_text = header[3];
  } else {
    throw reject("unsupported version " + std::to_string(version) + " (1 or 2)");
  }
  if (vocab == 0 || vocab > (1u << 24)) throw reject("implausible vocabulary " + std::to_string(vocab));
  if (end_of_text >= vocab) {
    throw reject("end-of-text id " + std::to_string(end_of_text) + " outside the vocabulary of " + std::to_string(vocab));
  }
  std::vector<std::string> table;
  table.reserve(vocab);
  size_t at = sizeof header;
  for (uint32_t i = 0; i < vocab; ++i) {
    if (at >= bytes.size()) throw reject("truncated in token " + std::to_string(i) + " of " + std::to_string(vocab));
    const size_t length = static_cast<unsigned char>(bytes[at++]);
    if (length == 0) throw reject("token " + std::to_string(i) + " has length 0");
    if (at + length > bytes.size()) throw reject("truncated in token " + std::to_string(i) + " of " + std::to_string(vocab));
    table.emplace_back(bytes, at, length);
    at += length;
  }
  if (at != bytes.size()) throw reject(std::to_string(bytes.size() - at) + " bytes after the last token");
  return std::make_unique<LlmcTokenizer>(path, std::move(table), static_cast<int>(end_of_text));
}

}  // namespace kl
