// libFuzzer target: the checkpoint reader. The first input byte picks what the rest is:
//   even: a whole file, seal included. verify() must refuse it with a UserError (or, if it ever
//         accepts, the readers behind it must cope).
//   odd:  the bytes after the seal, which this target seals correctly: the hostile bytes get past
//         verify() and reach our readers (the index, src/checkpoint/index.h: header fields, tensor
//         entries, then each tensor's bytes and CRC) and the parsers of what the header holds as
//         text (the config, the data fingerprint, the spike window, the skipped batches). HDF5's
//         parser is never reached. Everything must load or be refused with a UserError.
// Anything else (another exception, a crash, a sanitizer report, a hang) is a finding.
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <ostream>
#include <string>
#include <vector>

#include "src/checkpoint/checkpoint.h"
#include "src/config/config.h"
#include "src/data/fingerprint.h"
#include "src/train/spike.h"
#include "src/util/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string path =
      (std::filesystem::temp_directory_path() / ("kl_fuzz_checkpoint_" + std::to_string(::getpid()) + ".h5")).string();
  if (size == 0) return 0;
  const bool sealed_here = data[0] & 1;
  std::vector<uint8_t> bytes(sealed_here ? kl::checkpoint::kSealBytes : 0, 0);
  bytes.insert(bytes.end(), data + 1, data + size);
  ::unlink(path.c_str());
  std::FILE* file = std::fopen(path.c_str(), "wb");
  if (!file) std::abort();
  if (!bytes.empty() && std::fwrite(bytes.data(), 1, bytes.size(), file) != bytes.size()) std::abort();
  std::fclose(file);
  if (sealed_here && bytes.size() > size_t(kl::checkpoint::kSealBytes)) kl::checkpoint::seal(path);
  try {
    kl::checkpoint::verify(path);
    const kl::checkpoint::Header header = kl::checkpoint::read_header(path);
    if (header.step < 0) std::abort();  // the reader promised a step >= 0
    kl::describe_data_change(header.data, header.data + "train 9 tokens 1 hash 0 x\n");
    kl::SpikeDetector spikes(5.0, 128);
    try {
      spikes.restore(header.spike_window, "fuzz");
    } catch (const kl::UserError&) {
    }
    kl::Config skips;
    skips.data.skip_batches = header.skipped_batches;
    try {
      kl::skip_batch_list(skips);
    } catch (const kl::UserError&) {
    }
    std::ostream discard(nullptr);
    kl::checkpoint::inspect(path, discard);
  } catch (const kl::UserError&) {
  }
  return 0;
}
