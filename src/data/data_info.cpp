#include "src/data/data_info.h"

#include <filesystem>
#include <fstream>
#include <sstream>

#include "src/data/shard.h"
#include "src/util/error.h"

namespace kl {
namespace fs = std::filesystem;

void write_data_info(const std::string& dir, const DataInfo& info) {
  const std::string path = (fs::path(dir) / kDataInfoFile).string();
  std::ofstream out(path, std::ios::trunc);
  out << "# written by kilolayer beside the shards: their tokenizer and their text's size\n"
      << "kind = " << info.kind << "\nvocab = " << info.vocab << "\n";
  if (!info.model.empty()) out << "model = " << info.model << "\n";
  out << "train_tokens = " << info.train_tokens << "\ntrain_bytes = " << info.train_bytes
      << "\nval_tokens = " << info.val_tokens << "\nval_bytes = " << info.val_bytes << "\n";
  if (!out.flush()) throw UserError("cannot write " + path);
}

std::optional<DataInfo> read_data_info(const std::string& dir) {
  const std::string path = (fs::path(dir) / kDataInfoFile).string();
  std::ifstream in(path);
  if (!in) return std::nullopt;
  DataInfo info;
  std::string line;
  for (int number = 1; std::getline(in, line); ++number) {
    if (line.empty() || line[0] == '#') continue;
    const size_t equals = line.find('=');
    auto trim = [](std::string s) {
      s.erase(0, s.find_first_not_of(" \t"));
      s.erase(s.find_last_not_of(" \t\r") + 1);
      return s;
    };
    const std::string key = trim(line.substr(0, equals)), value = equals == std::string::npos ? "" : trim(line.substr(equals + 1));
    auto bad = [&](const std::string& why) {
      return UserError(path + " line " + std::to_string(number) + ": " + why + " ('" + line + "')");
    };
    if (equals == std::string::npos) throw bad("not key = value");
    auto number_of = [&]() -> int64_t {
      try {
        size_t used = 0;
        const long long v = std::stoll(value, &used);
        if (used == value.size() && v >= 0) return v;
      } catch (const std::exception&) {
      }
      throw bad(key + " must be a non-negative integer");
    };
    if (key == "kind") {
      if (value != "bytes" && value != "sentencepiece" && value != "gpt2") {
        throw bad("kind must be bytes, sentencepiece or gpt2");
      }
      info.kind = value;
    } else if (key == "vocab") {
      info.vocab = static_cast<int>(number_of());
    } else if (key == "model") {
      if (value.empty() || value.find('/') != std::string::npos) throw bad("model must be a file name in " + dir);
      info.model = value;
    } else if (key == "train_tokens") {
      info.train_tokens = number_of();
    } else if (key == "train_bytes") {
      info.train_bytes = number_of();
    } else if (key == "val_tokens") {
      info.val_tokens = number_of();
    } else if (key == "val_bytes") {
      info.val_bytes = number_of();
    } else {
      throw bad("unknown key " + key);
    }
  }
  if (info.kind.empty()) throw UserError(path + ": no kind");
  if (info.kind != "bytes" && info.model.empty()) throw UserError(path + ": kind " + info.kind + " but no model file");
  return info;
}

std::optional<double> val_bytes_per_token(const std::string& val_spec, int64_t tokens, int vocab) {
  const std::string dir = fs::path(expand_shard_list(val_spec).front()).parent_path().string();
  const auto info = read_data_info(dir.empty() ? "." : dir);
  if (!info) return vocab == 256 ? std::optional<double>(1.0) : std::nullopt;
  if (info->kind == "bytes") return 1.0;
  if (info->val_tokens != tokens || tokens == 0) return std::nullopt;
  return static_cast<double>(info->val_bytes) / static_cast<double>(tokens);
}

}  // namespace kl
