// The checkpoint's index (format 3): what kilolayer itself reads back, so that loading never runs
// HDF5's parser over the file. The HDF5 part stays for everyone else (h5py, h5dump, the PyTorch
// export); HDF5 1.10's parser is not safe on hostile bytes (the fuzzer found a heap overflow in its
// attribute decoding behind a valid seal), while this text is small, strict and ours.
//
// It sits in the HDF5 user block right after the 512-byte seal, which covers it with the rest of
// the file:
//
//   kilolayer index 000000012345        its own length in bytes, this line included
//   int format_version 3
//   int step 120
//   int tokens_seen 245760
//   string config 1834                  then that many bytes and a newline
//   string layout 39 ...  (also data, spike_window, skipped_batches)
//   tensor model/wte.weight 00000000000000004096 65536 1a2b3c4d 256,64
//   ...                                 one per dataset: name, byte offset in the file (20 digits,
//   end                                 so the length is known before the offsets), bytes, CRC-32
//                                       of those bytes, shape
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace kl::checkpoint {

inline constexpr int64_t kFormatVersion = 3;

struct Header {
  int64_t format_version = kFormatVersion;
  int64_t step = 0;
  int64_t tokens_seen = 0;
  std::string config;  // INI text
  std::string layout;  // "dp=2 pp=2 schedule=1f1b virtual=1 zero=0"
  std::string data;             // the shards' fingerprints (src/data/fingerprint.h)
  std::string spike_window;     // src/train/spike.h; "" when empty
  std::string skipped_batches;  // "7,12"; "" when none
};

struct TensorEntry {
  int64_t offset = 0, bytes = 0;  // where its little-endian float32 values are in the file
  uint32_t crc = 0;               // zlib's CRC-32 of those bytes
  std::vector<int64_t> shape;
};

struct Index {
  Header header;
  std::map<std::string, TensorEntry> tensors;  // by dataset name, e.g. "optim/exp_avg/wte.weight"
};

// The index as text (format above).
std::string format_index(const Index& index);

// Parses `text` (the whole index, its first line included). Every entry must lie inside
// [data_begin, file_size); names are plain paths; strings are at most 64 MiB; shapes have at most 8
// dimensions whose product times 4 is the entry's bytes. Throws UserError naming `where` and what
// is wrong.
Index parse_index(std::string_view text, int64_t data_begin, int64_t file_size, const std::string& where);

// The length an index announces in its first line (which is kIndexLineBytes long), or -1 when
// `first_line` is not one.
inline constexpr int64_t kIndexLineBytes = 29;  // "kilolayer index " + 12 digits + "\n"
int64_t index_length(std::string_view first_line);

}  // namespace kl::checkpoint
