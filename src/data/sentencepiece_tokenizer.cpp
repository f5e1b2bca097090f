// SentencePiece models behind the Tokenizer interface, and the BPE trainer `kilolayer tokenize`
// uses. Built only where SentencePiece is (CMake: KL_SENTENCEPIECE); elsewhere every entry point
// refuses with a UserError saying how to get it.
#include <cstdio>
#include <fstream>
#include <iterator>

#include "src/data/tokenizer.h"
#include "src/util/error.h"

#ifdef KL_HAVE_SENTENCEPIECE
#include <sentencepiece_processor.h>
#include <sentencepiece_trainer.h>
#endif

namespace kl {

#ifdef KL_HAVE_SENTENCEPIECE
namespace {

// SentencePiece's messages start with where in its source they came from: keep the sentence.
std::string reason(const sentencepiece::util::Status& status) {
  std::string message = status.ToString();
  const size_t bracket = message.find("] ");
  return bracket == std::string::npos ? message : message.substr(bracket + 2);
}

// The length of the valid UTF-8 character at text[i], or 0 when the byte there starts none.
size_t utf8_length(std::string_view text, size_t i) {
  const auto byte = [&](size_t k) { return static_cast<unsigned char>(text[k]); };
  const unsigned char lead = byte(i);
  size_t length = 0;
  uint32_t min = 0;
  if (lead < 0x80) return 1;
  if ((lead & 0xE0) == 0xC0) length = 2, min = 0x80;
  else if ((lead & 0xF0) == 0xE0) length = 3, min = 0x800;
  else if ((lead & 0xF8) == 0xF0) length = 4, min = 0x10000;
  else return 0;
  if (i + length > text.size()) return 0;
  uint32_t code = lead & (0x7F >> length);
  for (size_t k = 1; k < length; ++k) {
    if ((byte(i + k) & 0xC0) != 0x80) return 0;
    code = (code << 6) | (byte(i + k) & 0x3F);
  }
  if (code < min || code > 0x10FFFF || (code >= 0xD800 && code <= 0xDFFF)) return 0;
  return length;
}

class SentencePieceTokenizer final : public Tokenizer {
 public:
  explicit SentencePieceTokenizer(const std::string& path) : path_(path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw UserError("tokenizer " + path + ": cannot open");
    const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    const auto status = processor_.LoadFromSerializedProto(bytes);
    if (!status.ok()) throw UserError("tokenizer " + path + ": not a SentencePiece model (" + reason(status) + ")");
    for (int b = 0; b < 256; ++b) {
      char piece[8];
      std::snprintf(piece, sizeof piece, "<0x%02X>", b);
      byte_ids_[b] = processor_.PieceToId(piece);
      if (!processor_.IsByte(byte_ids_[b])) byte_ids_[b] = -1;
    }
  }

  int vocab() const override { return processor_.GetPieceSize(); }

  // Valid UTF-8 runs go through SentencePiece; a byte that starts no valid character (which
  // SentencePiece would turn into U+FFFD) becomes its byte piece, so that any text round-trips.
  std::vector<int32_t> encode(std::string_view text) const override {
    std::vector<int32_t> tokens;
    size_t start = 0, i = 0;
    auto flush = [&](size_t end) {
      if (end == start) return;
      std::vector<int> ids;
      const auto status = processor_.Encode(text.substr(start, end - start), &ids);
      if (!status.ok()) throw UserError("tokenizer " + path_ + ": " + reason(status));
      tokens.insert(tokens.end(), ids.begin(), ids.end());
    };
    while (i < text.size()) {
      const size_t length = utf8_length(text, i);
      if (length > 0) {
        i += length;
        continue;
      }
      flush(i);
      const int id = byte_ids_[static_cast<unsigned char>(text[i])];
      if (id < 0) {
        throw UserError("tokenizer " + path_ + ": the text holds a byte that is not UTF-8 and the model has no "
                        "byte pieces (train it with byte_fallback)");
      }
      tokens.push_back(id);
      start = ++i;
    }
    flush(i);
    return tokens;
  }

  std::string decode(std::span<const int32_t> tokens) const override {
    std::vector<int> ids(tokens.begin(), tokens.end());
    for (int id : ids) {
      if (id < 0 || id >= vocab()) {
        throw UserError("tokenizer " + path_ + ": token " + std::to_string(id) + " is outside its vocabulary of " +
                        std::to_string(vocab()));
      }
    }
    // SentencePiece turns byte pieces that make no valid UTF-8 into U+FFFD: byte pieces are
    // written as the bytes they are, the runs between them decoded by SentencePiece.
    std::string text;
    size_t start = 0;
    auto flush = [&](size_t end) {
      if (end == start) return;
      std::string run;
      const auto status = processor_.Decode(std::vector<int>(ids.begin() + static_cast<long>(start),
                                                             ids.begin() + static_cast<long>(end)), &run);
      if (!status.ok()) throw UserError("tokenizer " + path_ + ": " + reason(status));
      text += run;
    };
    for (size_t i = 0; i < ids.size(); ++i) {
      if (!processor_.IsByte(ids[i])) continue;
      flush(i);
      text.push_back(static_cast<char>(byte_of(ids[i])));
      start = i + 1;
    }
    flush(ids.size());
    return text;
  }

  std::string describe() const override { return "sentencepiece " + std::to_string(vocab()) + " (" + path_ + ")"; }

 private:
  int byte_of(int id) const {
    for (int b = 0; b < 256; ++b) {
      if (byte_ids_[b] == id) return b;
    }
    KL_CHECK(false, "a byte piece without a byte");
    return 0;
  }

  std::string path_;
  sentencepiece::SentencePieceProcessor processor_;
  int byte_ids_[256];
};

class Sentences final : public sentencepiece::SentenceIterator {
 public:
  explicit Sentences(const std::vector<std::string>& lines) : lines_(lines) {}
  bool done() const override { return next_ >= lines_.size(); }
  void Next() override { ++next_; }
  const std::string& value() const override { return lines_[next_]; }
  sentencepiece::util::Status status() const override { return {}; }

 private:
  const std::vector<std::string>& lines_;
  size_t next_ = 0;
};

}  // namespace

bool sentencepiece_available() { return true; }

std::unique_ptr<Tokenizer> load_sentencepiece_tokenizer(const std::string& path) {
  return std::make_unique<SentencePieceTokenizer>(path);
}

std::string train_sentencepiece_bpe(const std::vector<std::string>& sentences, int vocab) {
  Sentences iterator(sentences);
  std::string model;
  // identity normalisation, no dummy prefix, whitespace kept: decode(encode(x)) == x. Characters
  // rarer than the coverage fall back to byte pieces. At most 4M sentences, a sample when there
  // are more, keeps the trainer's memory bounded.
  const auto status = sentencepiece::SentencePieceTrainer::Train(
      {{"model_type", "bpe"}, {"vocab_size", std::to_string(vocab)}, {"byte_fallback", "true"},
       {"normalization_rule_name", "identity"}, {"add_dummy_prefix", "false"}, {"remove_extra_whitespaces", "false"},
       {"allow_whitespace_only_pieces", "true"}, {"split_digits", "true"}, {"user_defined_symbols", "\n"},
       {"unk_id", "0"}, {"bos_id", "-1"}, {"eos_id", "-1"}, {"pad_id", "-1"}, {"max_sentence_length", "4096"},
       {"input_sentence_size", "4000000"}, {"shuffle_input_sentence", "true"}, {"minloglevel", "2"}},
      &iterator, &model);
  if (!status.ok()) {
    throw UserError("tokenize: SentencePiece cannot train a BPE vocabulary of " + std::to_string(vocab) +
                    " on this text: " + reason(status));
  }
  return model;
}

#else

namespace {
[[noreturn]] void refuse(const std::string& what) {
  throw UserError(what + ": this kilolayer was built without SentencePiece (-DKL_SENTENCEPIECE=OFF, or "
                  "libsentencepiece-dev missing): run ./launch/setup.sh and rebuild");
}
}  // namespace

bool sentencepiece_available() { return false; }

std::unique_ptr<Tokenizer> load_sentencepiece_tokenizer(const std::string& path) { refuse("tokenizer " + path); }

std::string train_sentencepiece_bpe(const std::vector<std::string>&, int) { refuse("tokenize"); }

#endif

}  // namespace kl
