#include "src/data/tokenizer.h"

#include "src/util/error.h"

namespace kl {
namespace {

class ByteTokenizer final : public Tokenizer {
 public:
  int vocab() const override { return 256; }
  std::vector<int32_t> encode(std::string_view text) const override {
    std::vector<int32_t> tokens;
    tokens.reserve(text.size());
    for (unsigned char byte : text) tokens.push_back(byte);
    return tokens;
  }
  std::string decode(std::span<const int32_t> tokens) const override {
    std::string text;
    text.reserve(tokens.size());
    for (int32_t token : tokens) text.push_back(static_cast<char>(token & 0xff));
    return text;
  }
  std::string describe() const override { return "bytes"; }
};

}  // namespace

std::unique_ptr<Tokenizer> make_byte_tokenizer() { return std::make_unique<ByteTokenizer>(); }

std::unique_ptr<Tokenizer> open_data_tokenizer(const std::string& shard_spec, int vocab) {
  if (vocab == 256) return make_byte_tokenizer();
  throw UserError("data: no tokenizer found for " + shard_spec + " (model.vocab = " + std::to_string(vocab) +
                  "); only byte shards (vocabulary 256) can be decoded so far");
}

}  // namespace kl
