#include "src/data/text_shards.h"

#include <filesystem>
#include <fstream>
#include <iterator>

#include "src/data/shard.h"
#include "src/util/error.h"

namespace kl {

TextShardSummary make_text_shards(const std::vector<std::string>& inputs, const std::string& out_dir,
                                  int val_every, int block) {
  if (inputs.empty()) throw UserError("data: no input text files");
  if (val_every < 2) throw UserError("data: --val-every must be at least 2");
  if (block < 1) throw UserError("data: --block must be at least 1");
  std::vector<uint16_t> train, val;
  int64_t position = 0;
  for (const std::string& path : inputs) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw UserError("data: cannot read " + path);
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    text.push_back('\n');
    for (unsigned char byte : text) {
      const bool to_val = (position / block) % val_every == val_every - 1;
      (to_val ? val : train).push_back(byte);
      ++position;
    }
  }
  if (val.empty()) {
    throw UserError("data: " + std::to_string(position) + " bytes of text make no validation block of " +
                    std::to_string(block) + " bytes at --val-every " + std::to_string(val_every) +
                    "; give a smaller --block");
  }
  std::error_code error;
  std::filesystem::create_directories(out_dir, error);
  if (error) throw UserError("data: cannot create " + out_dir + ": " + error.message());
  write_shard(out_dir + "/train.bin", train);
  write_shard(out_dir + "/val.bin", val);
  return {static_cast<int64_t>(train.size()), static_cast<int64_t>(val.size())};
}

}  // namespace kl
