#include "src/data/tokenizer.h"

#include <filesystem>

#include "src/data/data_info.h"
#include "src/data/shard.h"
#include "src/util/error.h"

namespace kl {
namespace {

namespace fs = std::filesystem;

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

// Where the tokenizer of a shard directory is: its kind and file (empty file: bytes or none), and
// who said so (tokenizer.ini, or the file's presence).
struct Located {
  std::string kind, file, named_by;
};

Located locate(const std::string& shard_spec) {
  const fs::path first(expand_shard_list(shard_spec).front());
  const fs::path dir = first.parent_path().empty() ? fs::path(".") : first.parent_path();
  if (const auto info = read_data_info(dir.string())) {
    if (info->kind == "bytes") return {"bytes", "", ""};
    return {info->kind, (dir / info->model).string(), (dir / kDataInfoFile).string()};
  }
  if (fs::exists(dir / "tokenizer.model")) return {"sentencepiece", (dir / "tokenizer.model").string(), ""};
  if (fs::exists(dir / "gpt2_tokenizer.bin")) return {"gpt2", (dir / "gpt2_tokenizer.bin").string(), ""};
  return {"", "", dir.string()};
}

std::unique_ptr<Tokenizer> open(const std::string& shard_spec, int vocab, bool required) {
  const Located where = locate(shard_spec);
  std::unique_ptr<Tokenizer> tokenizer;
  if (where.kind.empty()) {
    if (vocab == 256) return make_byte_tokenizer();
    if (!required) return nullptr;
    throw UserError("data: no tokenizer beside the shards of " + shard_spec + ": " + where.named_by +
                    " holds none of " + kDataInfoFile + ", tokenizer.model (SentencePiece) or gpt2_tokenizer.bin "
                    "(llm.c), and model.vocab = " + std::to_string(vocab) + " is not the byte vocabulary 256");
  }
  if (!where.file.empty() && !fs::exists(where.file)) {
    throw UserError("data: the tokenizer model " + where.file + " named by " + where.named_by + " is missing");
  }
  if (where.kind == "bytes") {
    tokenizer = make_byte_tokenizer();
  } else if (where.kind == "sentencepiece") {
    tokenizer = load_sentencepiece_tokenizer(where.file);
  } else {
    tokenizer = load_llmc_tokenizer(where.file);
  }
  if (tokenizer->vocab() != vocab) {
    throw UserError("data: model.vocab = " + std::to_string(vocab) + " but the shards of " + shard_spec +
                    " were made by " + tokenizer->describe() + ", a vocabulary of " +
                    std::to_string(tokenizer->vocab()) + "; set model.vocab = " + std::to_string(tokenizer->vocab()));
  }
  return tokenizer;
}

}  // namespace

std::unique_ptr<Tokenizer> make_byte_tokenizer() { return std::make_unique<ByteTokenizer>(); }

std::unique_ptr<Tokenizer> open_data_tokenizer(const std::string& shard_spec, int vocab) {
  return open(shard_spec, vocab, true);
}

std::unique_ptr<Tokenizer> find_data_tokenizer(const std::string& shard_spec, int vocab) {
  return open(shard_spec, vocab, false);
}

std::string data_tokenizer_file(const std::string& shard_spec) { return locate(shard_spec).file; }

}  // namespace kl
