#include "src/checkpoint/checkpoint.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <map>
#include <mutex>
#include <ostream>
#include <sstream>
#include <stdexcept>

#include "src/checkpoint/h5.h"
#include "src/util/error.h"

namespace kl::checkpoint {
namespace {

// The three datasets of every tensor, in the order they are written.
constexpr std::array<const char*, 3> kGroups = {"model/", "optim/exp_avg/", "optim/exp_avg_sq/"};

uLong crc_update(uLong crc, const void* data, int64_t bytes) {
  const auto* p = static_cast<const Bytef*>(data);
  for (int64_t done = 0; done < bytes;) {
    const auto chunk = static_cast<uInt>(std::min<int64_t>(bytes - done, 1 << 30));
    crc = crc32(crc, p + done, chunk);
    done += chunk;
  }
  return crc;
}

uint32_t crc_of(const float* data, int64_t n) {
  static_assert(std::endian::native == std::endian::little, "checksums are of little-endian bytes");
  return static_cast<uint32_t>(crc_update(crc32(0L, Z_NULL, 0), data, n * int64_t{sizeof(float)}));
}

// --- the seal in the user block ---

constexpr char kSealMagic[] = "kilolayer checkpoint ";

struct Seal {
  int64_t size = 0;
  uint32_t crc = 0;
};

// An open file descriptor that closes itself.
struct Fd {
  int fd;
  explicit Fd(int f) : fd(f) {}
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
  Fd(Fd&& other) noexcept : fd(other.fd) { other.fd = -1; }
  Fd& operator=(Fd&&) = delete;
};

// An I/O failure of a save's phases, which may run on a background thread: thrown, for the
// training thread to rethrow (see checkpoint.h).
void io_check(bool ok, const std::string& message) {
  if (!ok) throw std::runtime_error(message + (errno ? std::string(": ") + std::strerror(errno) : ""));
}

// CRC-32 of the bytes [from, to) of `fd`; false on a read error or early end.
bool crc_of_range(int fd, int64_t from, int64_t to, uint32_t* crc) {
  std::vector<char> buffer(static_cast<size_t>(std::min<int64_t>(std::max<int64_t>(to - from, 1), int64_t{4} << 20)));
  uLong c = crc32(0L, Z_NULL, 0);
  for (int64_t at = from; at < to;) {
    const ssize_t got = ::pread(fd, buffer.data(), std::min<int64_t>(int64_t(buffer.size()), to - at), at);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) return false;
    c = crc_update(c, buffer.data(), got);
    at += got;
  }
  *crc = static_cast<uint32_t>(c);
  return true;
}

// Writes the seal of a file of `size` bytes whose bytes after the seal have CRC-32 `crc`, and
// fsyncs the file.
void write_seal(int fd, const std::string& path, int64_t size, uint32_t crc) {
  char block[kSealBytes] = {};
  std::snprintf(block, sizeof block, "%s%lld\nsize %lld\ncrc32 %08x\n", kSealMagic,
                static_cast<long long>(kFormatVersion), static_cast<long long>(size), crc);
  io_check(::pwrite(fd, block, kSealBytes, 0) == kSealBytes && ::fsync(fd) == 0,
           "cannot write the seal of " + path + " (disk full?)");
}

// Reads and parses the seal of an open file; throws UserError naming `path` and the problem.
Seal read_seal(int fd, const std::string& path) {
  const std::string where = "checkpoint " + path;
  struct stat st {};
  if (::fstat(fd, &st) != 0) throw UserError(where + ": cannot stat: " + std::strerror(errno));
  char block[kSealBytes + 1] = {};
  const ssize_t got = ::pread(fd, block, kSealBytes, 0);
  if (got != kSealBytes) throw UserError(where + ": shorter than its header (" + std::to_string(st.st_size) + " bytes)");
  const std::string text(block, strnlen(block, kSealBytes));
  if (text.rfind(kSealMagic, 0) != 0) {
    // The user block is zeros until the save completes: all of it, not just its first byte (a file
    // of random bytes starts with a zero one time in 256).
    const bool unsealed = std::all_of(block, block + kSealBytes, [](char c) { return c == 0; });
    throw UserError(where + (unsealed ? ": not sealed: the save that wrote it never finished"
                                      : ": not a kilolayer checkpoint (no seal; or written before format 2)"));
  }
  long long version = 0, size = -1;
  unsigned crc = 0;
  if (std::sscanf(text.c_str() + sizeof kSealMagic - 1, "%lld\nsize %lld\ncrc32 %8x", &version, &size, &crc) != 3) {
    throw UserError(where + ": its seal is damaged");
  }
  if (version != kFormatVersion) {
    throw UserError(where + ": format version " + std::to_string(version) + ", this kilolayer reads " +
                    std::to_string(kFormatVersion));
  }
  if (size != static_cast<long long>(st.st_size)) {
    throw UserError(where + ": " + std::to_string(st.st_size) + " bytes, its seal says " + std::to_string(size) +
                    (st.st_size < size ? " (truncated)" : " (appended to)"));
  }
  return {size, crc};
}

Fd open_readonly(const std::string& path) {
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.fd < 0) throw UserError("checkpoint " + path + ": cannot open: " + std::strerror(errno));
  return fd;
}

}  // namespace

void seal(const std::string& path) {
  Fd fd(::open(path.c_str(), O_RDWR | O_CLOEXEC));
  KL_CHECK(fd.fd >= 0, "cannot reopen " + path + " to seal it: " + std::strerror(errno));
  struct stat st {};
  KL_CHECK(::fstat(fd.fd, &st) == 0, "cannot stat " + path);
  uint32_t crc = 0;
  KL_CHECK(crc_of_range(fd.fd, kSealBytes, st.st_size, &crc), "cannot read back " + path + " to seal it");
  write_seal(fd.fd, path, st.st_size, crc);
}

namespace {

bool inside(const ParamSpec& spec, std::pair<int64_t, int64_t> range) {
  return spec.offset >= range.first && spec.offset < range.second;
}

std::span<float> part(const RankState& s, size_t group) {
  return group == 0 ? s.params : group == 1 ? s.exp_avg : s.exp_avg_sq;
}

// An index of 256 MiB lists about two million tensors (a 1000-layer model has 50,000); a forged
// larger one would cost every rank gigabytes to parse.
constexpr int64_t kMaxIndexBytes = int64_t{256} << 20;

// The seal and the index of `path`, checked; the open file with them, for reading tensors.
struct Opened {
  Fd fd;
  Index index;
};

Opened open_checked(const std::string& path) {
  const std::string where = "checkpoint " + path;
  Fd fd = open_readonly(path);
  const Seal seal = read_seal(fd.fd, path);
  char first[kIndexLineBytes] = {};
  const int64_t length = ::pread(fd.fd, first, sizeof first, kSealBytes) == kIndexLineBytes
                             ? index_length(std::string_view(first, sizeof first))
                             : -1;
  if (length < 0) throw UserError(where + ": no index after its seal (not written by this kilolayer?)");
  if (length > seal.size - kSealBytes || length > kMaxIndexBytes) {
    throw UserError(where + ": its index claims " + std::to_string(length) + " bytes, more than the file holds");
  }
  std::string text(static_cast<size_t>(length), '\0');
  if (::pread(fd.fd, text.data(), text.size(), kSealBytes) != length) throw UserError(where + ": cannot read its index");
  Index index = parse_index(text, kSealBytes + length, seal.size, where);
  return {std::move(fd), std::move(index)};
}

// The index entry of dataset `name`; throws UserError (`where`) when it is missing.
const TensorEntry& entry(const Opened& file, const std::string& where, const std::string& name) {
  const auto it = file.index.tensors.find(name);
  if (it == file.index.tensors.end()) throw UserError(where + " is missing");
  return it->second;
}

// Reads the dataset of `t` into out (all its floats) and checks its CRC-32.
void read_entry(const Opened& file, const std::string& where, const TensorEntry& t, float* out) {
  auto* bytes = reinterpret_cast<char*>(out);
  for (int64_t done = 0; done < t.bytes;) {
    const ssize_t got = ::pread(file.fd.fd, bytes + done, static_cast<size_t>(t.bytes - done), t.offset + done);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) throw UserError(where + " cannot be read (truncated?)");
    done += got;
  }
  if (crc_of(out, t.bytes / int64_t{sizeof(float)}) != t.crc) {
    throw UserError(where + ": checksum mismatch (the data is corrupt)");
  }
}

// Reads dataset `name` of `shape` into out (numel floats) and checks its CRC-32.
void read_dataset(const Opened& file, const std::string& path, const std::string& name,
                  const std::vector<int64_t>& shape, float* out) {
  const std::string where = "checkpoint " + path + ": dataset " + name;
  const TensorEntry& t = entry(file, where, name);
  if (t.shape != shape) throw UserError(where + " has another shape than the model expects");
  read_entry(file, where, t, out);
}

// A vocabulary tensor (`spec.vocab_rows` set) saved with another model.vocab_padded than the
// model's: its true rows are read, the model's padding rows set to zero. The saved padding must be
// zero, as every padded run keeps it.
void read_repadded(const Opened& file, const std::string& path, const std::string& name, const ParamSpec& spec,
                   float* out) {
  const std::string where = "checkpoint " + path + ": dataset " + name;
  const TensorEntry& t = entry(file, where, name);
  const int64_t rows = spec.vocab_rows, width = spec.shape[1];
  if (t.shape.size() != 2 || t.shape[1] != width || t.shape[0] < rows) {
    throw UserError(where + " has another shape than the model expects");
  }
  std::vector<float> saved(static_cast<size_t>(t.shape[0] * width));
  read_entry(file, where, t, saved.data());
  const auto true_end = saved.begin() + rows * width;
  if (std::any_of(true_end, saved.end(), [](float x) { return x != 0.0f; })) {
    throw UserError(where + ": its rows past model.vocab = " + std::to_string(rows) +
                    " are not zero, so they are not padding: it cannot load with another model.vocab_padded");
  }
  std::copy(saved.begin(), true_end, out);
  std::fill(out + rows * width, out + spec.numel(), 0.0f);
}

// Refuses a table whose three copies (parameters, two moments) could not fit in the file: a hostile
// or mismatched config must not make the reader allocate more than the file could ever fill.
void check_room(const std::string& path, const ParamTable& table) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) throw UserError("checkpoint " + path + ": cannot stat: " + std::strerror(errno));
  const double needed = 3.0 * double(sizeof(float)) * double(table.buffer_size());
  if (needed > double(st.st_size)) {
    throw UserError("checkpoint " + path + ": the model needs " + std::to_string(int64_t(needed)) +
                    " bytes of tensors, the file holds " + std::to_string(st.st_size));
  }
}

std::map<std::string, std::string> ini_values(const std::string& ini) {
  std::map<std::string, std::string> values;
  std::istringstream in(ini);
  std::string line, section;
  while (std::getline(in, line)) {
    if (line.size() > 2 && line.front() == '[' && line.back() == ']') {
      section = line.substr(1, line.size() - 2);
    } else if (const auto eq = line.find(" = "); eq != std::string::npos) {
      values[section + "." + line.substr(0, eq)] = line.substr(eq + 3);
    }
  }
  return values;
}

}  // namespace

FilePlan plan_file(const std::string& path, const Header& header, const ModelConfig& model) {
  // Offsets and CRC-32s still 0: the index's length depends on neither (fixed-width fields), and
  // it sizes the user block, which HDF5 needs before the file exists.
  FilePlan plan;
  plan.path = path;
  plan.index.header = header;
  plan.index.header.format_version = kFormatVersion;
  const ParamTable global(model);
  for (const char* group : kGroups) {
    for (const ParamSpec& spec : global.specs()) {
      plan.index.tensors[group + spec.name] = {0, spec.numel() * int64_t{sizeof(float)}, 0, spec.shape};
    }
  }
  plan.index_bytes = static_cast<int64_t>(format_index(plan.index).size());
  return plan;
}

void create_file(FilePlan& plan) {
  const std::string& path = plan.path;
  const Header& header = plan.index.header;
  hsize_t userblock = 1024;
  while (userblock < hsize_t(kSealBytes + plan.index_bytes)) userblock *= 2;
  const std::lock_guard<std::mutex> lock(h5::library_lock());
  h5::quiet();
  h5::Id fapl(KL_CHECK_H5(H5Pcreate(H5P_FILE_ACCESS)), H5Pclose);
  // HDF5 1.8's object format: the oldest keeps each attribute within 64 KiB of the object header, and
  // the data fingerprint of a thousand shards or a long spike window is larger.
  KL_CHECK_H5(H5Pset_libver_bounds(fapl.get(), H5F_LIBVER_V18, H5F_LIBVER_V18));
  h5::Id fcpl(KL_CHECK_H5(H5Pcreate(H5P_FILE_CREATE)), H5Pclose);
  KL_CHECK_H5(H5Pset_userblock(fcpl.get(), userblock));  // zeros until the index and the seal are written
  // Exclusive: the file is new in a directory this run just made; a planted file or link fails it.
  h5::Id file(H5Fcreate(path.c_str(), H5F_ACC_EXCL, fcpl.get(), fapl.get()), H5Fclose);
  io_check(file.valid(), "cannot create checkpoint file " + path);
  h5::write_attribute(file.get(), "format_version", kFormatVersion);
  h5::write_attribute(file.get(), "step", header.step);
  h5::write_attribute(file.get(), "tokens_seen", header.tokens_seen);
  h5::write_attribute(file.get(), "config", header.config);
  h5::write_attribute(file.get(), "layout", header.layout);
  h5::write_attribute(file.get(), "data", header.data);
  h5::write_attribute(file.get(), "spike_window", header.spike_window);
  h5::write_attribute(file.get(), "skipped_batches", header.skipped_batches);

  h5::Id lcpl(KL_CHECK_H5(H5Pcreate(H5P_LINK_CREATE)), H5Pclose);
  KL_CHECK_H5(H5Pset_create_intermediate_group(lcpl.get(), 1));
  h5::Id dcpl(KL_CHECK_H5(H5Pcreate(H5P_DATASET_CREATE)), H5Pclose);
  KL_CHECK_H5(H5Pset_fill_time(dcpl.get(), H5D_FILL_TIME_NEVER));
  KL_CHECK_H5(H5Pset_obj_track_times(dcpl.get(), false));  // no timestamps: same state, same bytes
  // Space allocated at creation, so that every dataset's offset is known before any value is written.
  KL_CHECK_H5(H5Pset_alloc_time(dcpl.get(), H5D_ALLOC_TIME_EARLY));
  for (auto& [name, entry] : plan.index.tensors) {
    std::vector<hsize_t> dims(entry.shape.begin(), entry.shape.end());
    h5::Id space(KL_CHECK_H5(H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr)), H5Sclose);
    h5::Id ds(H5Dcreate2(file.get(), name.c_str(), H5T_IEEE_F32LE, space.get(), lcpl.get(), dcpl.get(), H5P_DEFAULT),
              H5Dclose);
    io_check(ds.valid(), "cannot create dataset " + name + " in " + path + " (disk full?)");
    const haddr_t offset = H5Dget_offset(ds.get());  // from the start of the file, user block included
    io_check(offset != HADDR_UNDEF, "dataset " + name + " in " + path + " has no storage");
    entry.offset = static_cast<int64_t>(offset);
    h5::write_attribute(ds.get(), "crc32", int64_t{0});  // set by finish_file
    io_check(ds.close(), "cannot close dataset " + name + " in " + path + " (disk full?)");
  }
  io_check(file.close(), "cannot finish creating " + path + " (disk full?)");
}

void share_offsets(FilePlan& plan, Comm& world) {
  std::vector<int64_t> offsets;
  for (const auto& [name, entry] : plan.index.tensors) offsets.push_back(entry.offset);
  world.broadcast_bytes(std::as_writable_bytes(std::span(offsets)), 0);
  size_t i = 0;
  for (auto& [name, entry] : plan.index.tensors) entry.offset = offsets[i++];
}

std::vector<Piece> pieces_of(const FilePlan& plan, const RankState& mine) {
  std::vector<Piece> pieces;
  for (size_t g = 0; g < kGroups.size(); ++g) {
    const std::span<float> values = part(mine, g);
    int64_t local = 0;  // where the range's values start in the spans
    for (const BufferRange& range : mine.writes) {
      for (const ParamSpec& spec : mine.table->specs()) {
        if (inside(spec, mine.duplicate)) continue;
        const int64_t from = std::max(spec.offset, range.begin);
        const int64_t to = std::min(spec.offset + spec.numel(), range.end);
        if (from >= to) continue;
        const int64_t offset = plan.index.tensors.at(kGroups[g] + spec.name).offset;
        pieces.push_back({offset + (from - spec.offset) * int64_t{sizeof(float)},
                          values.data() + local + (from - range.begin), to - from});
      }
      local += range.size();
    }
  }
  return pieces;
}

std::vector<Region> write_pieces(const std::string& path, const std::vector<Piece>& pieces) {
  const auto fail = [&](const std::string& what) {
    throw std::runtime_error("cannot " + what + " " + path + ": " + std::strerror(errno) + " (disk full?)");
  };
  std::vector<Region> regions;
  const Fd fd(::open(path.c_str(), O_WRONLY | O_CLOEXEC));
  if (fd.fd < 0) fail("open");
  for (const Piece& piece : pieces) {
    const auto* bytes = reinterpret_cast<const char*>(piece.data);
    const int64_t size = piece.count * int64_t{sizeof(float)};
    for (int64_t done = 0; done < size;) {
      const ssize_t put = ::pwrite(fd.fd, bytes + done, static_cast<size_t>(size - done), piece.offset + done);
      if (put < 0 && errno == EINTR) continue;
      if (put <= 0) fail("write a tensor to");
      done += put;
    }
    regions.push_back({piece.offset, size, crc_of(piece.data, piece.count)});
  }
  if (::fsync(fd.fd) != 0) fail("fsync");
  return regions;
}

std::vector<Region> gather_regions(const std::vector<Region>& mine, Comm& world) {
  // Sums of doubles, each rank filling its own slots: exact for offsets below 2^53 and 32-bit CRCs.
  std::vector<double> counts(static_cast<size_t>(world.size()), 0.0);
  counts[static_cast<size_t>(world.rank())] = double(mine.size());
  world.all_reduce_sum(counts);
  size_t first = 0, total = 0;
  for (int r = 0; r < world.size(); ++r) {
    if (r < world.rank()) first += static_cast<size_t>(counts[static_cast<size_t>(r)]);
    total += static_cast<size_t>(counts[static_cast<size_t>(r)]);
  }
  std::vector<double> values(3 * total, 0.0);
  for (size_t i = 0; i < mine.size(); ++i) {
    values[3 * (first + i)] = double(mine[i].offset);
    values[3 * (first + i) + 1] = double(mine[i].bytes);
    values[3 * (first + i) + 2] = double(mine[i].crc);
  }
  world.all_reduce_sum(values);
  std::vector<Region> all(total);
  for (size_t i = 0; i < total; ++i) {
    all[i] = {static_cast<int64_t>(values[3 * i]), static_cast<int64_t>(values[3 * i + 1]),
              static_cast<uint32_t>(values[3 * i + 2])};
  }
  return all;
}

void finish_file(FilePlan plan, std::vector<Region> regions) {
  const std::string& path = plan.path;
  std::sort(regions.begin(), regions.end(), [](const Region& a, const Region& b) { return a.offset < b.offset; });
  // Each tensor's CRC-32, combined from the pieces that cover its bytes, in order.
  std::vector<TensorEntry*> by_offset;
  for (auto& [name, entry] : plan.index.tensors) by_offset.push_back(&entry);
  std::sort(by_offset.begin(), by_offset.end(), [](const auto* a, const auto* b) { return a->offset < b->offset; });
  size_t next = 0;
  for (TensorEntry* entry : by_offset) {
    uLong crc = crc32(0L, Z_NULL, 0);
    int64_t at = entry->offset;
    for (; next < regions.size() && regions[next].offset < entry->offset + entry->bytes; ++next) {
      KL_CHECK(regions[next].offset == at, "checkpoint " + path + ": the written pieces do not tile a tensor");
      crc = crc32_combine(crc, regions[next].crc, static_cast<z_off_t>(regions[next].bytes));
      at += regions[next].bytes;
    }
    KL_CHECK(at == entry->offset + entry->bytes, "checkpoint " + path + ": the written pieces do not cover a tensor");
    entry->crc = static_cast<uint32_t>(crc);
  }
  {  // the attributes, for h5py and the PyTorch export (kilolayer itself reads the index)
    const std::lock_guard<std::mutex> lock(h5::library_lock());
    h5::Id file(H5Fopen(path.c_str(), H5F_ACC_RDWR, H5P_DEFAULT), H5Fclose);
    io_check(file.valid(), "cannot reopen " + path + " to write its checksums");
    for (const auto& [name, entry] : plan.index.tensors) {
      // Through the dataset: HDF5 1.10 cannot write an attribute opened by path (H5Aopen_by_name).
      h5::Id ds(H5Dopen2(file.get(), name.c_str(), H5P_DEFAULT), H5Dclose);
      h5::Id attr(ds.valid() ? H5Aopen(ds.get(), "crc32", H5P_DEFAULT) : -1, H5Aclose);
      const int64_t crc = entry.crc;
      io_check(attr.valid() && H5Awrite(attr.get(), H5T_NATIVE_INT64, &crc) >= 0,
               "cannot write the checksum of " + name + " in " + path + " (disk full?)");
    }
    io_check(file.close(), "cannot finish writing the checksums of " + path + " (disk full?)");
  }
  const Fd fd(::open(path.c_str(), O_RDWR | O_CLOEXEC));
  io_check(fd.fd >= 0, "cannot reopen " + path + " to seal it");
  const std::string text = format_index(plan.index);
  KL_CHECK(static_cast<int64_t>(text.size()) == plan.index_bytes, "the checkpoint index changed length");
  io_check(::pwrite(fd.fd, text.data(), text.size(), kSealBytes) == plan.index_bytes,
           "cannot write the index of " + path + " (disk full?)");
  // The whole file's CRC-32: the pieces' combined, the bytes between them read back.
  struct stat st {};
  io_check(::fstat(fd.fd, &st) == 0, "cannot stat " + path);
  uLong crc = crc32(0L, Z_NULL, 0);
  int64_t at = kSealBytes;
  for (size_t i = 0; i <= regions.size(); ++i) {
    const int64_t gap_end = i < regions.size() ? regions[i].offset : st.st_size;
    KL_CHECK(gap_end >= at && gap_end <= st.st_size, "checkpoint " + path + ": a written piece lies outside the file");
    uint32_t gap = 0;
    io_check(crc_of_range(fd.fd, at, gap_end, &gap), "cannot read back " + path + " to seal it");
    crc = crc32_combine(crc, gap, static_cast<z_off_t>(gap_end - at));
    if (i == regions.size()) break;
    crc = crc32_combine(crc, regions[i].crc, static_cast<z_off_t>(regions[i].bytes));
    at = regions[i].offset + regions[i].bytes;
  }
  write_seal(fd.fd, path, st.st_size, static_cast<uint32_t>(crc));
}

int64_t write_file(const std::string& path, const Header& header, const ModelConfig& model,
                   const RankState& mine, Comm& world) {
  FilePlan plan = plan_file(path, header, model);
  std::vector<Region> regions;
  try {
    if (world.rank() == 0) create_file(plan);
    share_offsets(plan, world);
    regions = write_pieces(path, pieces_of(plan, mine));
  } catch (const std::runtime_error& e) {
    KL_CHECK(false, e.what());
  }
  int64_t bytes = 0;
  for (const Region& r : regions) bytes += r.bytes;
  std::vector<Region> all = gather_regions(regions, world);  // also: every rank's part is durable
  if (world.rank() == 0) {
    try {
      finish_file(std::move(plan), std::move(all));
    } catch (const std::runtime_error& e) {
      KL_CHECK(false, e.what());
    }
  }
  return bytes;
}

void verify(const std::string& path) {
  const Fd fd = open_readonly(path);
  const Seal expected = read_seal(fd.fd, path);
  uint32_t crc = 0;
  if (!crc_of_range(fd.fd, kSealBytes, expected.size, &crc)) throw UserError("checkpoint " + path + ": cannot read it through");
  if (crc != expected.crc) {
    char line[96];
    std::snprintf(line, sizeof line, ": checksum mismatch over the file (CRC-32 %08x, sealed as %08x): corrupt", crc,
                  expected.crc);
    throw UserError("checkpoint " + path + line);
  }
}

Header read_header(const std::string& path) { return open_checked(path).index.header; }

void read_tensors(const std::string& path, const RankState& mine) {
  check_room(path, *mine.table);
  const Opened file = open_checked(path);
  for (const ParamSpec& spec : mine.table->specs()) {
    for (size_t g = 0; g < kGroups.size(); ++g) {
      const std::string name = kGroups[g] + spec.name;
      float* out = part(mine, g).data() + spec.offset;
      const auto saved = file.index.tensors.find(name);
      const bool repadded = spec.vocab_rows >= 0 && saved != file.index.tensors.end() && saved->second.shape != spec.shape;
      repadded ? read_repadded(file, path, name, spec, out) : read_dataset(file, path, name, spec.shape, out);
    }
  }
}

std::string compare_configs(const std::string& saved_ini, const Config& now, const std::string& where) {
  const Config saved = load_config_text(saved_ini, where);
  const auto before = ini_values(saved.to_ini()), after = ini_values(now.to_ini());
  std::string refused, changed;
  for (const auto& [key, old_value] : before) {
    const auto it = after.find(key);
    const std::string new_value = it == after.end() ? "(absent)" : it->second;
    if (new_value == old_value) continue;
    const std::string line = key + ": " + old_value + " -> " + new_value;
    // model.vocab_padded changes the tensors' padding only, which read_tensors adapts.
    const bool architecture = key.rfind("model.", 0) == 0 && key != "model.dropout" && key != "model.vocab_padded";
    (architecture ? refused : changed) += (architecture ? (refused.empty() ? "" : ", ") : "\n  ") + line;
  }
  if (!refused.empty()) {
    throw UserError(where + " holds another architecture than the config: " + refused);
  }
  return changed;
}

int inspect(const std::string& path, std::ostream& out) {
  verify(path);
  const Opened file = open_checked(path);
  const Header& header = file.index.header;
  const Config saved = load_config_text(header.config, "checkpoint " + path);
  out << "checkpoint " << path << "\nformat version " << header.format_version << ", step " << header.step
      << ", tokens seen " << header.tokens_seen << "\nsaved from layout: " << header.layout << "\n";
  if (!header.data.empty()) out << "data it was trained on:\n" << header.data;
  if (!header.skipped_batches.empty()) out << "batches skipped: " << header.skipped_batches << "\n";
  out << "\n" << header.config << "\n";
  const ParamTable table(saved.model);
  check_room(path, table);
  int problems = 0;
  int64_t checked = 0;
  std::vector<float> data;
  for (const ParamSpec& spec : table.specs()) {
    data.resize(static_cast<size_t>(spec.numel()));
    std::string shape;
    for (int64_t d : spec.shape) shape += (shape.empty() ? "" : " x ") + std::to_string(d);
    for (size_t g = 0; g < kGroups.size(); ++g) {
      const std::string name = kGroups[g] + spec.name;
      try {
        read_dataset(file, path, name, spec.shape, data.data());
        double sum = 0.0;
        for (float x : data) sum += double(x) * x;
        char line[64];
        std::snprintf(line, sizeof line, "norm %.6g", std::sqrt(sum));
        out << name << " [" << shape << "] " << line << "\n";
        ++checked;
      } catch (const UserError& e) {
        out << "PROBLEM: " << e.what() << "\n";
        ++problems;
      }
    }
  }
  out << checked << " datasets verified (CRC-32), " << problems << " problem(s)\n";
  return problems;
}

}  // namespace kl::checkpoint
