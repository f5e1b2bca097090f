#include "src/checkpoint/checkpoint.h"

#include <fcntl.h>
#include <unistd.h>
#include <zlib.h>

#include <array>
#include <cmath>
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

uint32_t crc_of(const float* data, int64_t n) {
  static_assert(std::endian::native == std::endian::little, "checksums are of little-endian bytes");
  uLong crc = crc32(0L, Z_NULL, 0);
  const auto* bytes = reinterpret_cast<const Bytef*>(data);
  for (int64_t done = 0, total = n * int64_t{sizeof(float)}; done < total;) {
    const auto chunk = static_cast<uInt>(std::min<int64_t>(total - done, 1 << 30));
    crc = crc32(crc, bytes + done, chunk);
    done += chunk;
  }
  return static_cast<uint32_t>(crc);
}

bool inside(const ParamSpec& spec, std::pair<int64_t, int64_t> range) {
  return spec.offset >= range.first && spec.offset < range.second;
}

std::span<float> part(const RankState& s, size_t group) {
  return group == 0 ? s.params : group == 1 ? s.exp_avg : s.exp_avg_sq;
}

h5::Id open_file(const std::string& path) {
  h5::quiet();
  h5::Id file(H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), H5Fclose);
  if (!file.valid()) {
    throw UserError("checkpoint " + path + ": not a readable HDF5 file (missing, truncated or corrupt)");
  }
  return file;
}

// Reads dataset `name` of `shape` into out (numel floats) and checks its CRC-32.
void read_dataset(hid_t file, const std::string& path, const std::string& name,
                  const std::vector<int64_t>& shape, float* out) {
  const std::string where = "checkpoint " + path + ": dataset " + name;
  if (H5Lexists(file, name.c_str(), H5P_DEFAULT) <= 0) throw UserError(where + " is missing");
  h5::Id ds(H5Dopen2(file, name.c_str(), H5P_DEFAULT), H5Dclose);
  if (!ds.valid()) throw UserError(where + " cannot be opened (corrupt?)");
  h5::Id space(H5Dget_space(ds.get()), H5Sclose);
  std::vector<hsize_t> dims(8);
  const int rank = space.valid() ? H5Sget_simple_extent_dims(space.get(), dims.data(), nullptr) : -1;
  bool same = rank == static_cast<int>(shape.size());
  for (int d = 0; same && d < rank; ++d) same = dims[static_cast<size_t>(d)] == static_cast<hsize_t>(shape[static_cast<size_t>(d)]);
  if (!same) throw UserError(where + " has another shape than the model expects");
  const int64_t expected = h5::read_int_attribute(ds.get(), "crc32", where);
  if (H5Dread(ds.get(), H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, out) < 0) {
    throw UserError(where + " cannot be read (truncated or corrupt)");
  }
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  if (crc_of(out, n) != static_cast<uint32_t>(expected)) {
    throw UserError(where + ": checksum mismatch (the data is corrupt)");
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
                   const RankState& mine, Comm& world) {
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

  // Parallel HDF5's collective calls are MPI operations the watchdog cannot see one by one: the
  // whole write is one watched operation (a stopped peer would block it).
  const uint64_t op = Watchdog::get().started("checkpoint write (parallel HDF5)", -1, 0);
  Watchdog::Blocked watched(op);
  h5::Id fapl(KL_CHECK_H5(H5Pcreate(H5P_FILE_ACCESS)), H5Pclose);
  auto* mpi = dynamic_cast<MpiComm*>(&world);
  if (mpi && world.size() > 1) KL_CHECK_H5(H5Pset_fapl_mpio(fapl.get(), mpi->native(), MPI_INFO_NULL));
  // Exclusive: the file is new in a directory this run just made; a planted file or link fails it.
  h5::Id file(H5Fcreate(path.c_str(), H5F_ACC_EXCL, H5P_DEFAULT, fapl.get()), H5Fclose);
  KL_CHECK(file.valid(), "cannot create checkpoint file " + path);
  h5::write_attribute(file.get(), "format_version", header.format_version);
  h5::write_attribute(file.get(), "step", header.step);
  h5::write_attribute(file.get(), "tokens_seen", header.tokens_seen);
  h5::write_attribute(file.get(), "config", header.config);
  h5::write_attribute(file.get(), "layout", header.layout);

  h5::Id lcpl(KL_CHECK_H5(H5Pcreate(H5P_LINK_CREATE)), H5Pclose);
  KL_CHECK_H5(H5Pset_create_intermediate_group(lcpl.get(), 1));
  h5::Id dcpl(KL_CHECK_H5(H5Pcreate(H5P_DATASET_CREATE)), H5Pclose);
  KL_CHECK_H5(H5Pset_fill_time(dcpl.get(), H5D_FILL_TIME_NEVER));
  KL_CHECK_H5(H5Pset_obj_track_times(dcpl.get(), false));  // no timestamps: same state, same bytes
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
    const int fd = ::open(path.c_str(), O_RDONLY);
    KL_CHECK(fd >= 0 && ::fsync(fd) == 0, "cannot fsync " + path);
    ::close(fd);
  }
  return bytes;
}

Header read_header(const std::string& path) {
  h5::Id file = open_file(path);
  const std::string where = "checkpoint " + path;
  Header h;
  h.format_version = h5::read_int_attribute(file.get(), "format_version", where);
  if (h.format_version != kFormatVersion) {
    throw UserError(where + ": format version " + std::to_string(h.format_version) + ", this kilolayer reads " +
                    std::to_string(kFormatVersion));
  }
  h.step = h5::read_int_attribute(file.get(), "step", where);
  h.tokens_seen = h5::read_int_attribute(file.get(), "tokens_seen", where);
  h.config = h5::read_string_attribute(file.get(), "config", where);
  h.layout = h5::read_string_attribute(file.get(), "layout", where);
  if (h.step < 0) throw UserError(where + ": negative step " + std::to_string(h.step));
  return h;
}

void read_tensors(const std::string& path, const RankState& mine) {
  h5::Id file = open_file(path);
  for (const ParamSpec& spec : mine.table->specs()) {
    for (size_t g = 0; g < kGroups.size(); ++g) {
      read_dataset(file.get(), path, kGroups[g] + spec.name, spec.shape, part(mine, g).data() + spec.offset);
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
    const bool architecture = key.rfind("model.", 0) == 0 && key != "model.dropout";
    (architecture ? refused : changed) += (architecture ? (refused.empty() ? "" : ", ") : "\n  ") + line;
  }
  if (!refused.empty()) {
    throw UserError(where + " holds another architecture than the config: " + refused);
  }
  return changed;
}

int inspect(const std::string& path, std::ostream& out) {
  const Header header = read_header(path);
  const Config saved = load_config_text(header.config, "checkpoint " + path);
  out << "checkpoint " << path << "\nformat version " << header.format_version << ", step " << header.step
      << ", tokens seen " << header.tokens_seen << "\nsaved from layout: " << header.layout << "\n\n"
      << header.config << "\n";
  h5::Id file = open_file(path);
  const ParamTable table(saved.model);
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
        read_dataset(file.get(), path, name, spec.shape, data.data());
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
