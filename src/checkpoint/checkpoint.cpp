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
#include <ostream>
#include <sstream>

#include "comm/mpi_comm.h"
#include "comm/watchdog.h"
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

// CRC-32 of the bytes of `fd` from kSealBytes to `size`; false on a read error or early end.
bool crc_after_seal(int fd, int64_t size, uint32_t* crc) {
  std::vector<char> buffer(size_t{4} << 20);
  uLong c = crc32(0L, Z_NULL, 0);
  for (int64_t at = kSealBytes; at < size;) {
    const ssize_t got = ::pread(fd, buffer.data(), std::min<int64_t>(int64_t(buffer.size()), size - at), at);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) return false;
    c = crc_update(c, buffer.data(), got);
    at += got;
  }
  *crc = static_cast<uint32_t>(c);
  return true;
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
    const bool unsealed = text.empty();  // the user block is zeros until the save completes
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
  KL_CHECK(crc_after_seal(fd.fd, st.st_size, &crc), "cannot read back " + path + " to seal it");
  char block[kSealBytes] = {};
  std::snprintf(block, sizeof block, "%s%lld\nsize %lld\ncrc32 %08x\n", kSealMagic,
                static_cast<long long>(kFormatVersion), static_cast<long long>(st.st_size), crc);
  KL_CHECK(::pwrite(fd.fd, block, kSealBytes, 0) == kSealBytes && ::fsync(fd.fd) == 0,
           "cannot write the seal of " + path + " (disk full?)");
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

int64_t write_file(const std::string& path, const Header& header, const ModelConfig& model,
                   const RankState& mine, Comm& world, const MpiComm* world_mpi) {
  KL_CHECK(world_mpi ? world_mpi->size() == world.size() && world_mpi->rank() == world.rank() : world.size() == 1,
           "checkpoint::write_file: world_mpi must be the world's ranks as MPI (null only for one rank)");
  h5::quiet();
  const ParamTable global(model);
  const auto& specs = global.specs();
  const size_t n = specs.size();
  // Which global tensors this rank writes, and every tensor's checksums: each is computed by its
  // one writer and summed over the world (exact: 32-bit values in doubles), because attributes
  // are metadata, which parallel HDF5 writes collectively with the same value on every rank.
  std::vector<const ParamSpec*> local(n, nullptr);
  std::vector<double> crcs(kGroups.size() * n, 0.0);
  for (size_t i = 0; mine.writer && i < n; ++i) {
    const ParamSpec* spec = mine.table->find(specs[i].name);
    if (!spec || inside(*spec, mine.duplicate)) continue;
    local[i] = spec;
    for (size_t g = 0; g < kGroups.size(); ++g) crcs[g * n + i] = crc_of(part(mine, g).data() + spec->offset, spec->numel());
  }
  world.all_reduce_sum(crcs);
  // The index (src/checkpoint/index.h), offsets still 0: its length does not depend on them, and
  // it sizes the user block, which HDF5 needs before the file exists (a power of two).
  Index index;
  index.header = header;
  index.header.format_version = kFormatVersion;
  for (size_t g = 0; g < kGroups.size(); ++g) {
    for (size_t i = 0; i < n; ++i) {
      index.tensors[kGroups[g] + specs[i].name] = {0, specs[i].numel() * int64_t{sizeof(float)},
                                                   static_cast<uint32_t>(crcs[g * n + i]), specs[i].shape};
    }
  }
  const int64_t index_bytes = static_cast<int64_t>(format_index(index).size());
  hsize_t userblock = 1024;
  while (userblock < hsize_t(kSealBytes + index_bytes)) userblock *= 2;

  // Parallel HDF5's collective calls are MPI operations the watchdog cannot see one by one: the
  // whole write is one watched operation (a stopped peer would block it).
  const uint64_t op = Watchdog::get().started("checkpoint write (parallel HDF5)", -1, 0);
  Watchdog::Blocked watched(op);
  h5::Id fapl(KL_CHECK_H5(H5Pcreate(H5P_FILE_ACCESS)), H5Pclose);
  if (world.size() > 1) KL_CHECK_H5(H5Pset_fapl_mpio(fapl.get(), world_mpi->native(), MPI_INFO_NULL));
  // HDF5 1.8's object format: the oldest keeps each attribute within 64 KiB of the object header, and
  // the data fingerprint of a thousand shards or a long spike window is larger.
  KL_CHECK_H5(H5Pset_libver_bounds(fapl.get(), H5F_LIBVER_V18, H5F_LIBVER_V18));
  h5::Id fcpl(KL_CHECK_H5(H5Pcreate(H5P_FILE_CREATE)), H5Pclose);
  KL_CHECK_H5(H5Pset_userblock(fcpl.get(), userblock));  // zeros until the index and the seal are written
  // Exclusive: the file is new in a directory this run just made; a planted file or link fails it.
  h5::Id file(H5Fcreate(path.c_str(), H5F_ACC_EXCL, fcpl.get(), fapl.get()), H5Fclose);
  KL_CHECK(file.valid(), "cannot create checkpoint file " + path);
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
  // Space allocated at creation, so that every rank knows every dataset's offset for the index.
  KL_CHECK_H5(H5Pset_alloc_time(dcpl.get(), H5D_ALLOC_TIME_EARLY));
  int64_t bytes = 0;
  for (size_t g = 0; g < kGroups.size(); ++g) {
    for (size_t i = 0; i < n; ++i) {
      // Created by every rank (collective metadata); the data written by its writer alone.
      std::vector<hsize_t> dims(specs[i].shape.begin(), specs[i].shape.end());
      h5::Id space(KL_CHECK_H5(H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr)), H5Sclose);
      const std::string name = kGroups[g] + specs[i].name;
      h5::Id ds(H5Dcreate2(file.get(), name.c_str(), H5T_IEEE_F32LE, space.get(), lcpl.get(), dcpl.get(), H5P_DEFAULT),
                H5Dclose);
      KL_CHECK(ds.valid(), "cannot create dataset " + name + " in " + path + " (disk full?)");
      const haddr_t offset = H5Dget_offset(ds.get());  // from the start of the file, user block included
      KL_CHECK(offset != HADDR_UNDEF, "dataset " + name + " in " + path + " has no storage");
      index.tensors[name].offset = static_cast<int64_t>(offset);
      h5::write_attribute(ds.get(), "crc32", static_cast<int64_t>(crcs[g * n + i]));
      if (local[i]) {
        const float* data = part(mine, g).data() + local[i]->offset;
        KL_CHECK(H5Dwrite(ds.get(), H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) >= 0,
                 "cannot write dataset " + name + " to " + path + " (disk full?)");
        bytes += local[i]->numel() * int64_t{sizeof(float)};
      }
      KL_CHECK(ds.close(), "cannot close dataset " + name + " in " + path + " (disk full?)");
    }
  }
  KL_CHECK(file.close(), "cannot finish writing " + path + " (disk full?)");
  Watchdog::get().completed(op);
  // Durable before the commit protocol publishes it: every rank that wrote flushes its part.
  if (bytes > 0) {
    const Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    KL_CHECK(fd.fd >= 0 && ::fsync(fd.fd) == 0, "cannot fsync " + path);
  }
  world.barrier();  // every part is durable: the file is complete
  if (world.rank() == 0) {
    const std::string text = format_index(index);
    KL_CHECK(static_cast<int64_t>(text.size()) == index_bytes, "the checkpoint index changed length");
    const Fd fd(::open(path.c_str(), O_WRONLY | O_CLOEXEC));
    KL_CHECK(fd.fd >= 0 && ::pwrite(fd.fd, text.data(), text.size(), kSealBytes) == index_bytes,
             "cannot write the index of " + path + " (disk full?)");
    seal(path);  // fsyncs the file, index included
  }
  return bytes;
}

void verify(const std::string& path) {
  const Fd fd = open_readonly(path);
  const Seal expected = read_seal(fd.fd, path);
  uint32_t crc = 0;
  if (!crc_after_seal(fd.fd, expected.size, &crc)) throw UserError("checkpoint " + path + ": cannot read it through");
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
