// The checkpoint file: one HDF5 file, laid out by rank 0 (serial HDF5) and filled by every writer
// rank at once (pwrite at the datasets' offsets; see the phases below), holding the whole training
// state under the parameter table's GLOBAL names, so any layout (dp, pp, schedule, virtual chunks,
// ZeRO) can read what any other wrote:
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
#include <vector>

#include "comm/comm.h"
#include "models/params.h"
#include "src/checkpoint/index.h"
#include "src/config/config.h"

namespace kl::checkpoint {

inline constexpr int64_t kSealBytes = 512;  // the start of the HDF5 user block holding the seal

// One rank's part of the state: its tensors (a stage's table, or the whole model's) laid out in
// flat buffers, moments in the same layout as the parameters. A reader fills whole buffers; a writer
// holds only the elements it writes, the ranges of `writes` one after the other in each span (all
// of them in one range, or ZeRO-1's slice of every bucket).
struct RankState {
  const ParamTable* table = nullptr;
  std::span<float> params, exp_avg, exp_avg_sq;
  std::pair<int64_t, int64_t> duplicate{0, 0};  // elements another rank writes (a tied copy)
  std::vector<BufferRange> writes;              // the elements of the table this rank writes, ascending
};

// A save runs in phases, so that all but the snapshot of the state can run on a thread of its own
// per rank, which never calls MPI (initialised MPI_THREAD_FUNNELED); HDF5, which is not built
// thread-safe, is entered under h5::library_lock() (src/checkpoint/h5.h):
//   1. create_file, rank 0: serial HDF5 makes the file with every dataset allocated (contiguous)
//      and its attributes, no values yet; the datasets' offsets go into the plan's index.
//   2. share_offsets, collective: every rank learns the offsets; pieces_of says which runs of its
//      state go where, and write_pieces writes them with pwrite, computes the CRC-32 of each piece
//      and fsyncs (the byte-level form of an HDF5 hyperslab write into a contiguous dataset: under
//      ZeRO-1 each rank writes its own shard of every tensor, nothing is gathered).
//   3. gather_regions, collective, then finish_file on rank 0: each tensor's CRC-32 combined from
//      its pieces' (zlib's crc32_combine), written as its `crc32` attribute and into the index, and
//      the whole file's CRC-32 combined from the pieces' and the bytes between them (HDF5's
//      metadata, the index: all that rank 0 reads back); then the seal.
// The phases that may run on a background thread (create_file, write_pieces, finish_file) report
// I/O errors by throwing std::runtime_error naming the file ("disk full?").

// A run of float32 values one rank writes, and where in the file.
struct Piece {
  int64_t offset = 0;
  const float* data = nullptr;
  int64_t count = 0;
};

// A byte range of the file and zlib's CRC-32 of its bytes.
struct Region {
  int64_t offset = 0, bytes = 0;
  uint32_t crc = 0;
};

struct FilePlan {
  std::string path;
  Index index;              // every dataset's offset (0 until known) and size; CRC-32s set by finish_file
  int64_t index_bytes = 0;  // the index's length, fixed before the file exists
};

// The plan of a file for `model`'s table and `header`, offsets still unknown (every rank).
FilePlan plan_file(const std::string& path, const Header& header, const ModelConfig& model);
// Phase 1, rank 0: creates the file and sets the plan's offsets.
void create_file(FilePlan& plan);
// Phase 2, collective: rank 0's offsets into every rank's plan.
void share_offsets(FilePlan& plan, Comm& world);
// This rank's pieces: the elements of each tensor inside each range of `mine.writes` (a tensor may
// be split over several ranks and ranges), pointing into `mine`'s spans.
std::vector<Piece> pieces_of(const FilePlan& plan, const RankState& mine);
// Phase 2, any rank (even without pieces: MPI ranks share hosts and the file's metadata needs no
// more than rank 0's fsync, but every writer flushes its own part): writes, fsyncs, one region per
// piece.
std::vector<Region> write_pieces(const std::string& path, const std::vector<Piece>& pieces);
// Phase 3, collective: every rank's regions, on every rank.
std::vector<Region> gather_regions(const std::vector<Region>& mine, Comm& world);
// Phase 3, rank 0, once every rank's regions are durable: the checksums, the index and the seal.
// The regions must cover every tensor's bytes exactly.
void finish_file(FilePlan plan, std::vector<Region> regions);

// All phases at once, collective over `world`: every tensor of `model`'s table is written exactly
// once, by the rank whose `writes` range holds it. Returns the bytes this rank wrote. Fails hard
// (KL_CHECK) on an I/O error: the caller's commit protocol then never publishes the file.
int64_t write_file(const std::string& path, const Header& header, const ModelConfig& model,
                   const RankState& mine, Comm& world);

// Writes the seal of a complete file, reading every byte of it back (the fuzzer seals what it made).
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
