// The checkpoint file: one HDF5 file, written by every rank at once through MPI-IO (parallel
// HDF5), holding the whole training state under the parameter table's GLOBAL names, so any
// layout (dp, pp, schedule, virtual chunks, ZeRO) can read what any other wrote:
//
//   /model/<name>                 fp32 parameters, e.g. /model/layers/000123/attn.qkv.weight; the
//                                 token embedding and head as the model holds them, padded to
//                                 model.vocab_padded rows (zero past model.vocab, which the config records)
//   /optim/exp_avg/<name>         AdamW first moments
//   /optim/exp_avg_sq/<name>      AdamW second moments
//   each dataset: attribute `crc32` (zlib's CRC-32 of its little-endian float32 bytes)
//   root attributes: format_version, step (optimizer steps done), tokens_seen, config (the full
//                    effective INI), layout (the parallel layout it was saved from), data (the
//                    shards' fingerprints, src/data/fingerprint.h), spike_window
//                    (src/train/spike.h), skipped_batches (data.skip_batches and rollbacks)
//
// The file starts with an HDF5 user block (HDF5 and h5py skip it): its first 512 bytes are our
// seal, a few text lines written last, once every rank's part is durable,
//
//   kilolayer checkpoint 3
//   size 81234567            the file's size in bytes
//   crc32 1a2b3c4d           zlib's CRC-32 of every byte after these 512
//
// and the index follows (src/checkpoint/index.h): the same header and, per dataset, where its bytes
// are, how many, their CRC-32 and its shape. kilolayer reads checkpoints through the seal and the
// index alone: HDF5's parser never sees a file we load, since HDF5 is not hardened against hostile
// or damaged files (a fuzzer found a heap overflow in its attribute decoding behind a valid seal).
// A truncated, bit-flipped or never-finished file is refused by the seal, naming what is wrong; a
// forged seal over damaged bytes is refused by the index's strict parser or a tensor's CRC-32.
//
// Every other piece of state is a pure function of these: the learning rate of (config, step),
// the data position and every dropout mask of (train.seed, batch, sample), the batch of (step,
// skipped_batches), so a resumed run continues bit for bit.
#pragma once

#include <cstdint>
#include <iosfwd>
#include <span>
#include <string>
#include <utility>

#include "comm/comm.h"
#include "models/params.h"
#include "src/checkpoint/index.h"
#include "src/config/config.h"

namespace kl {
class MpiComm;
}

namespace kl::checkpoint {

inline constexpr int64_t kSealBytes = 512;  // the start of the HDF5 user block holding the seal

// One rank's part of the state: its tensors (a stage's table, or the whole model's) laid out in
// flat buffers, moments in the same layout as the parameters.
struct RankState {
  const ParamTable* table = nullptr;
  std::span<float> params, exp_avg, exp_avg_sq;
  std::pair<int64_t, int64_t> duplicate{0, 0};  // elements another rank writes (a tied copy)
  bool writer = false;                          // this rank writes its tensors (one per stage)
};

// Collective over `world`: every rank calls it with its own state; every tensor of `model`'s
// table is written exactly once, by the writer holding it. Returns the bytes this rank wrote.
// `world_mpi` is `world` as MPI, through which parallel HDF5 opens the one file on every rank; it
// may be null only for a world of one rank (a SoloComm), which then writes alone.
// Fails hard (KL_CHECK) on an I/O error: the caller's commit protocol then never publishes it.
int64_t write_file(const std::string& path, const Header& header, const ModelConfig& model,
                   const RankState& mine, Comm& world, const MpiComm* world_mpi);

// Writes the seal of a complete file (write_file does, on rank 0, once every part is durable).
void seal(const std::string& path);

// Checks the seal: the header, the size and the CRC-32 of the whole file (reads it once). Throws
// UserError naming the file and the problem. The readers below check the seal's header and size,
// the index and each tensor's CRC-32, not the whole file's; call this once before them (one rank
// can do it for all, the others learning the verdict through agree() in comm/comm.h).
void verify(const std::string& path);

// Readers, one rank at a time, through the index (never HDF5). Throw UserError naming the file
// and what is wrong (no seal or index, a malformed index, a missing dataset, a wrong shape, a
// checksum mismatch, another format version). read_tensors reads only the tensors of `mine`; a
// vocabulary tensor saved with another model.vocab_padded loads by its true rows (the padding zero).
Header read_header(const std::string& path);
void read_tensors(const std::string& path, const RankState& mine);

// The differences between a checkpoint's config and this run's: architecture keys (model.*
// except dropout and vocab_padded) that differ make the checkpoint unusable (UserError listing them); the others
// are returned as "key: old -> new" lines for the log.
std::string compare_configs(const std::string& saved_ini, const Config& now, const std::string& where);

// `kilolayer inspect`: config, step, layout, every tensor with shape and norm, checksums
// verified. Returns the number of problems found (0: all good).
int inspect(const std::string& path, std::ostream& out);

}  // namespace kl::checkpoint
