// Checkpoints in a build without HDF5 (CMake: -DKL_HDF5=OFF, e.g. a GPU machine without the system
// libraries). The config already refuses checkpoint.dir other than none and a checkpoint.resume
// path (src/config/config.cpp); what still reaches these (eval, lesion, inspect of a checkpoint)
// stops with one clear message instead of a link error or a silent no-op.
#include <string>

#include "src/checkpoint/checkpoint.h"
#include "src/checkpoint/store.h"
#include "src/util/error.h"

namespace kl::checkpoint {
namespace {

[[noreturn]] void unavailable(const std::string& what) {
  throw UserError(what + ": checkpoints are HDF5 files, and this kilolayer was built without HDF5 "
                  "(-DKL_HDF5=OFF); use a build with HDF5");
}

}  // namespace

FilePlan plan_file(const std::string& path, const Header&, const ModelConfig&) {
  unavailable("cannot write checkpoint " + path);
}
void create_file(FilePlan& plan) { unavailable("cannot write checkpoint " + plan.path); }
void share_offsets(FilePlan& plan, Comm&) { unavailable("cannot write checkpoint " + plan.path); }
std::vector<Piece> pieces_of(const FilePlan& plan, const RankState&) { unavailable("cannot write checkpoint " + plan.path); }
std::vector<Region> write_pieces(const std::string& path, const std::vector<Piece>&) {
  unavailable("cannot write checkpoint " + path);
}
std::vector<Region> gather_regions(const std::vector<Region>&, Comm&) { unavailable("cannot write checkpoints"); }
void finish_file(FilePlan plan, std::vector<Region>) { unavailable("cannot write checkpoint " + plan.path); }
int64_t write_file(const std::string& path, const Header&, const ModelConfig&, const RankState&, Comm&) {
  unavailable("cannot write checkpoint " + path);
}
void seal(const std::string& path) { unavailable("cannot seal checkpoint " + path); }
void verify(const std::string& path) { unavailable("cannot read checkpoint " + path); }
Header read_header(const std::string& path) { unavailable("cannot read checkpoint " + path); }
void read_tensors(const std::string& path, const RankState&) { unavailable("cannot read checkpoint " + path); }
std::string compare_configs(const std::string&, const Config&, const std::string& where) {
  unavailable("cannot compare with " + where);
}
int inspect(const std::string& path, std::ostream&) { unavailable("cannot inspect " + path); }

void Store::prepare() const { unavailable("checkpoint.dir " + dir_); }
std::string Store::begin(int64_t) const { unavailable("checkpoint.dir " + dir_); }
void Store::commit(int64_t, int) const { unavailable("checkpoint.dir " + dir_); }
std::optional<std::string> Store::latest() const { unavailable("checkpoint.dir " + dir_); }
std::string Store::step_name(int64_t) { unavailable("checkpoint names"); }
std::string resolve(const std::string& path) { unavailable("checkpoint " + path); }

}  // namespace kl::checkpoint
