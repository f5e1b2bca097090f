// Text <-> token ids. One interface for the tokenizers a run's data can come from:
// bytes (`kilolayer data`, vocabulary 256), a SentencePiece model (`kilolayer tokenize`, the
// tokenizer.model written beside the shards) and llm.c's gpt2_tokenizer.bin (decoding only).
// `kilolayer sample`, run.sample_every and the main job's printout decode through it.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace kl {

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;
  // The true vocabulary: every id a shard of this tokenizer may hold is below it.
  virtual int vocab() const = 0;
  // Throws UserError when this tokenizer cannot encode (llm.c's file is for decoding only).
  virtual std::vector<int32_t> encode(std::string_view text) const = 0;
  virtual std::string decode(std::span<const int32_t> tokens) const = 0;
  // One line for logs and run records: "bytes", "sentencepiece bpe 2048 (data/x/tokenizer.model)".
  virtual std::string describe() const = 0;
};

// One token per byte, vocabulary 256.
std::unique_ptr<Tokenizer> make_byte_tokenizer();

// The tokenizer of the shards named by `shard_spec` (data.train's syntax): the tokenizer file found
// beside the first shard, else bytes when `vocab` is 256. Throws UserError naming what is missing
// or does not match `vocab`.
//
// Beside the shard it looks for, in order: tokenizer.ini (src/data/data_info.h, which names the
// kind and the file), tokenizer.model (SentencePiece), gpt2_tokenizer.bin (llm.c).
std::unique_ptr<Tokenizer> open_data_tokenizer(const std::string& shard_spec, int vocab);

// As open_data_tokenizer, but nullptr where there is no tokenizer file at all and `vocab` is not
// 256 (llm.c's shards are often downloaded without gpt2_tokenizer.bin): training does not need
// one. A tokenizer that is named but missing, or that does not match `vocab`, still throws.
std::unique_ptr<Tokenizer> find_data_tokenizer(const std::string& shard_spec, int vocab);

// The tokenizer file open_data_tokenizer would read for `shard_spec` ("" for bytes or none).
std::string data_tokenizer_file(const std::string& shard_spec);

// llm.c's gpt2_tokenizer.bin: a header of 256 uint32 (magic 20240328, version 1 or 2, vocabulary,
// version 2: the end-of-text id), then per token one length byte (> 0) and that many bytes.
// Decoding only. Throws UserError naming the file and what is wrong.
std::unique_ptr<Tokenizer> load_llmc_tokenizer(const std::string& path);

// A SentencePiece model file. Throws UserError naming it when it cannot be read, or when this
// kilolayer was built without SentencePiece.
std::unique_ptr<Tokenizer> load_sentencepiece_tokenizer(const std::string& path);

// Whether this build links SentencePiece (CMake: KL_SENTENCEPIECE).
bool sentencepiece_available();

// Trains a SentencePiece BPE model of `vocab` pieces on `sentences` (lines of text, each at most
// 4096 bytes) and returns the model file's bytes. Byte fallback and an identity normalisation, so
// that decode(encode(text)) == text for any text; "\n" is a piece of its own. Throws UserError
// with SentencePiece's reason when it cannot (a vocabulary too small or too large for the text).
std::string train_sentencepiece_bpe(const std::vector<std::string>& sentences, int vocab);

}  // namespace kl
