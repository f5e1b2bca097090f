// Tokenizers: SentencePiece BPE trained by kilolayer round-trips any text through shards; llm.c's
// gpt2_tokenizer.bin (written here in its format) decodes known ids to known strings; the tokenizer
// beside a run's shards is found, checked against model.vocab and recorded in the fingerprint.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>

#include "src/data/data_info.h"
#include "src/data/dataset.h"
#include "src/data/fingerprint.h"
#include "src/data/shard.h"
#include "src/data/text_shards.h"
#include "src/data/tokenizer.h"
#include "src/util/error.h"

namespace kl {
namespace {

namespace fs = std::filesystem;

class TokenizerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("kl_tokenizer_" + std::to_string(::getpid()));
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }

  // The message of the UserError `f` throws ("" if none).
  template <class F>
  static std::string error_of(F f) {
    try {
      f();
    } catch (const UserError& e) {
      return e.what();
    }
    return "";
  }

  // A text file of varied English with UTF-8 (two- to four-byte characters), tabs, CR LF, runs of
  // spaces, digits, and bytes that are not UTF-8 at all.
  std::string write_text() const {
    std::string text;
    std::ifstream gpl("/usr/share/common-licenses/GPL-3");
    text.assign(std::istreambuf_iterator<char>(gpl), std::istreambuf_iterator<char>());
    text = text.substr(0, 60000);
    text += "caf\xc3\xa9 na\xc3\xafve \xe2\x98\x83 \xf0\x9f\x98\x80 tabs\there  three   spaces\r\n0123456789\n";
    text += std::string("bad bytes \xff\xfe\x80 and a lone \xc3 lead\n");
    std::ofstream(path("text.txt"), std::ios::binary) << text;
    return text;
  }

  // Tokens of a shard, as ids.
  static std::vector<int32_t> ids(const std::string& shard_path) {
    const TokenShard shard(shard_path);
    std::vector<int32_t> out(static_cast<size_t>(shard.size()));
    for (int64_t i = 0; i < shard.size(); ++i) out[static_cast<size_t>(i)] = static_cast<int32_t>(shard.token(i));
    return out;
  }

  fs::path dir_;
};

std::string joined(const std::vector<std::string>& parts) {
  std::string all;
  for (const auto& p : parts) all += p;
  return all;
}

TEST_F(TokenizerTest, SplitTextKeepsEveryByteAndEveryCharacterWhole) {
  const std::string text = write_text() + "\n";  // split_text adds a newline after each file
  const TextBlocks blocks = split_text({path("text.txt")}, 5, 100);
  EXPECT_EQ(blocks.train_bytes + blocks.val_bytes, static_cast<int64_t>(text.size()));
  // Blocks interleave 4 train : 1 val; rebuilt in that order they are the text.
  std::string rebuilt;
  for (size_t b = 0, t = 0, v = 0; t < blocks.train.size() || v < blocks.val.size(); ++b) {
    rebuilt += b % 5 == 4 ? blocks.val.at(v++) : blocks.train.at(t++);
  }
  EXPECT_EQ(rebuilt, text);
  for (const auto* set : {&blocks.train, &blocks.val}) {
    for (const std::string& block : *set) {
      EXPECT_LE(block.size(), 100u);
      EXPECT_NE(static_cast<unsigned char>(block[0]) & 0xC0, 0x80) << "a block starts inside a character";
    }
  }
}

// The round trip: text -> kilolayer's BPE -> shards -> decode is the text, split by split.
TEST_F(TokenizerTest, SentencePieceRoundTripThroughShards) {
  if (!sentencepiece_available()) GTEST_SKIP() << "built without SentencePiece";
  const std::string text = write_text();
  const TextBlocks blocks = split_text({path("text.txt")}, 10, 512);
  const std::string model = train_sentencepiece_bpe(training_sentences(blocks), 400);
  fs::create_directories(path("out"));
  std::ofstream(path("out/tokenizer.model"), std::ios::binary) << model;
  const auto tokenizer = load_sentencepiece_tokenizer(path("out/tokenizer.model"));
  EXPECT_EQ(tokenizer->vocab(), 400);
  const TextShardSummary s = write_token_shards(blocks, *tokenizer, path("out"), "sentencepiece", "tokenizer.model");
  EXPECT_LT(s.train_tokens, s.train_bytes * 7 / 10) << "BPE should merge: " << s.train_tokens << " tokens";
  const auto found = open_data_tokenizer(path("out/train.bin"), 400);
  EXPECT_EQ(found->decode(ids(path("out/train.bin"))), joined(blocks.train));
  EXPECT_EQ(found->decode(ids(path("out/val.bin"))), joined(blocks.val));
  // Any bytes at all, including what is not UTF-8.
  std::string bytes;
  for (int b = 0; b < 256; ++b) bytes.push_back(static_cast<char>(b));
  EXPECT_EQ(found->decode(found->encode(bytes + bytes)), bytes + bytes);
  // tokenizer.ini records the split's text size, for bits per byte.
  const auto info = read_data_info(path("out"));
  ASSERT_TRUE(info);
  EXPECT_EQ(info->vocab, 400);
  EXPECT_EQ(info->val_bytes, blocks.val_bytes);
  EXPECT_EQ(info->val_tokens, s.val_tokens);
  EXPECT_DOUBLE_EQ(*val_bytes_per_token(path("out/val.bin"), s.val_tokens, 400),
                   double(blocks.val_bytes) / double(s.val_tokens));
  EXPECT_FALSE(val_bytes_per_token(path("out/val.bin"), s.val_tokens + 1, 400));  // other shards: unknown
}

TEST_F(TokenizerTest, SentencePieceTrainerExplainsABadVocabulary) {
  if (!sentencepiece_available()) GTEST_SKIP() << "built without SentencePiece";
  write_text();
  const auto sentences = training_sentences(split_text({path("text.txt")}, 10, 512));
  for (int vocab : {100, 200000}) {
    const std::string message = error_of([&] { train_sentencepiece_bpe(sentences, vocab); });
    EXPECT_NE(message.find("cannot train a BPE vocabulary of " + std::to_string(vocab)), std::string::npos) << message;
    EXPECT_NE(message.find("ocabulary size"), std::string::npos) << message;  // SentencePiece's reason
  }
}

// llm.c's file, written here from the format: header, then length-prefixed token bytes.
void write_llmc(const std::string& path, uint32_t version, const std::vector<std::string>& tokens,
                uint32_t end_of_text, uint32_t magic = 20240328) {
  uint32_t header[256] = {};
  header[0] = magic;
  header[1] = version;
  header[2] = static_cast<uint32_t>(tokens.size());
  header[3] = end_of_text;
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(header), sizeof header);
  for (const std::string& t : tokens) {
    out.put(static_cast<char>(t.size()));
    out.write(t.data(), static_cast<std::streamsize>(t.size()));
  }
}

TEST_F(TokenizerTest, LlmcTokenizerDecodesKnownIds) {
  write_llmc(path("v2.bin"), 2, {"Hello", ",", " world", "\xe2\x98", "\x83", "<|endoftext|>"}, 5);
  const auto t = load_llmc_tokenizer(path("v2.bin"));
  EXPECT_EQ(t->vocab(), 6);
  const std::vector<int32_t> hello{0, 1, 2}, snowman{3, 4}, eot{5};
  EXPECT_EQ(t->decode(hello), "Hello, world");
  EXPECT_EQ(t->decode(snowman), "\xe2\x98\x83");  // a character split over two tokens, as GPT-2's bytes are
  EXPECT_EQ(t->decode(eot), "<|endoftext|>");
  EXPECT_NE(t->describe().find("end of text 5"), std::string::npos);
  EXPECT_NE(error_of([&] { t->encode("Hello"); }).find("can only decode"), std::string::npos);
  const std::vector<int32_t> outside{6};
  EXPECT_NE(error_of([&] { t->decode(outside); }).find("token 6"), std::string::npos);

  // Version 1: GPT-2's 50257 tokens, end of text 50256 implied.
  std::vector<std::string> gpt2(50257);
  for (size_t i = 0; i < gpt2.size(); ++i) gpt2[i] = "<" + std::to_string(i) + ">";
  write_llmc(path("v1.bin"), 1, gpt2, 0);
  const auto v1 = load_llmc_tokenizer(path("v1.bin"));
  EXPECT_EQ(v1->vocab(), 50257);
  const std::vector<int32_t> some{7, 50256};
  EXPECT_EQ(v1->decode(some), "<7><50256>");
  EXPECT_NE(v1->describe().find("end of text 50256"), std::string::npos);
}

TEST_F(TokenizerTest, LlmcTokenizerRefusesBrokenFiles) {
  write_llmc(path("magic.bin"), 2, {"a"}, 0, 20240520);
  EXPECT_NE(error_of([&] { load_llmc_tokenizer(path("magic.bin")); }).find("bad magic 20240520"), std::string::npos);
  write_llmc(path("version.bin"), 3, {"a"}, 0);
  EXPECT_NE(error_of([&] { load_llmc_tokenizer(path("version.bin")); }).find("version 3"), std::string::npos);
  write_llmc(path("v1small.bin"), 1, {"a", "b"}, 0);
  EXPECT_NE(error_of([&] { load_llmc_tokenizer(path("v1small.bin")); }).find("50257"), std::string::npos);
  write_llmc(path("empty.bin"), 2, {"a", ""}, 0);
  EXPECT_NE(error_of([&] { load_llmc_tokenizer(path("empty.bin")); }).find("token 1 has length 0"), std::string::npos);
  write_llmc(path("eot.bin"), 2, {"a"}, 4);
  EXPECT_NE(error_of([&] { load_llmc_tokenizer(path("eot.bin")); }).find("end-of-text id 4"), std::string::npos);
  write_llmc(path("cut.bin"), 2, {"abc", "def"}, 0);
  fs::resize_file(path("cut.bin"), fs::file_size(path("cut.bin")) - 2);
  const std::string cut = error_of([&] { load_llmc_tokenizer(path("cut.bin")); });
  EXPECT_NE(cut.find("truncated in token 1 of 2"), std::string::npos) << cut;
  EXPECT_NE(cut.find(path("cut.bin")), std::string::npos) << cut;
}

// Which tokenizer a shard directory has, and the refusals: a vocabulary that does not match
// model.vocab (both numbers and the files named), a model that tokenizer.ini names but is missing,
// no tokenizer at all for a vocabulary that is not bytes.
TEST_F(TokenizerTest, DataTokenizerIsFoundAndChecked) {
  fs::create_directories(path("llmc"));
  write_shard(path("llmc/train.bin"), std::vector<uint16_t>(100, 1));
  EXPECT_EQ(open_data_tokenizer(path("llmc/train.bin"), 256)->describe(), "bytes");  // nothing beside: bytes
  const std::string none = error_of([&] { open_data_tokenizer(path("llmc/train.bin"), 6); });
  EXPECT_NE(none.find("no tokenizer beside"), std::string::npos) << none;
  EXPECT_NE(none.find("model.vocab = 6"), std::string::npos) << none;
  EXPECT_EQ(find_data_tokenizer(path("llmc/train.bin"), 6), nullptr);  // training goes on without one

  write_llmc(path("llmc/gpt2_tokenizer.bin"), 2, {"a", "b", "c", "d", "e", "<eot>"}, 5);
  EXPECT_EQ(open_data_tokenizer(path("llmc/train.bin"), 6)->vocab(), 6);
  EXPECT_EQ(data_tokenizer_file(path("llmc/train.bin")), path("llmc/gpt2_tokenizer.bin"));
  const std::string mismatch = error_of([&] { find_data_tokenizer(path("llmc/train.bin"), 50257); });
  EXPECT_NE(mismatch.find("model.vocab = 50257"), std::string::npos) << mismatch;
  EXPECT_NE(mismatch.find("a vocabulary of 6"), std::string::npos) << mismatch;
  EXPECT_NE(mismatch.find(path("llmc/gpt2_tokenizer.bin")), std::string::npos) << mismatch;
  EXPECT_NE(mismatch.find(path("llmc/train.bin")), std::string::npos) << mismatch;

  write_data_info(path("llmc"), {"sentencepiece", 6, "tokenizer.model", 0, 0, 0, 0});
  const std::string missing = error_of([&] { find_data_tokenizer(path("llmc/train.bin"), 6); });
  EXPECT_NE(missing.find("tokenizer model " + path("llmc/tokenizer.model")), std::string::npos) << missing;
  EXPECT_NE(missing.find("is missing"), std::string::npos) << missing;

  write_data_info(path("llmc"), {"bytes", 256, "", 0, 0, 0, 0});
  const std::string bytes = error_of([&] { open_data_tokenizer(path("llmc/train.bin"), 512); });
  EXPECT_NE(bytes.find("made by bytes, a vocabulary of 256"), std::string::npos) << bytes;
  std::ofstream(path("llmc/tokenizer.ini")) << "kind = words\n";
  EXPECT_NE(error_of([&] { open_data_tokenizer(path("llmc/train.bin"), 256); }).find("tokenizer.ini line 1"),
            std::string::npos);
}

// The fingerprint a checkpoint keeps names the tokenizer: another tokenizer file is a change.
TEST_F(TokenizerTest, FingerprintRecordsTheTokenizer) {
  fs::create_directories(path("d"));
  write_shard(path("d/train.bin"), std::vector<uint16_t>(100, 1));
  write_llmc(path("d/gpt2_tokenizer.bin"), 2, {"a", "b", "c"}, 2);
  const TokenDataset set(path("d/train.bin"), 3, 8);
  const auto t = open_data_tokenizer(path("d/train.bin"), 3);
  const std::string saved = data_fingerprint(set, set, t.get(), path("d/gpt2_tokenizer.bin"));
  EXPECT_NE(saved.find("tokenizer 0 vocab 3 hash "), std::string::npos) << saved;
  EXPECT_EQ(describe_data_change(saved, data_fingerprint(set, set, t.get(), path("d/gpt2_tokenizer.bin"))), "");
  write_llmc(path("d/gpt2_tokenizer.bin"), 2, {"x", "b", "c"}, 2);
  const std::string change =
      describe_data_change(saved, data_fingerprint(set, set, t.get(), path("d/gpt2_tokenizer.bin")));
  EXPECT_NE(change.find("tokenizer: llm.c gpt2 3"), std::string::npos) << change;
  // A checkpoint from before tokenizers were recorded has no line: not a change.
  EXPECT_EQ(describe_data_change(saved.substr(0, saved.find("\ntokenizer ") + 1),
                                 data_fingerprint(set, set, t.get(), path("d/gpt2_tokenizer.bin"))),
            "");
}

}  // namespace
}  // namespace kl
