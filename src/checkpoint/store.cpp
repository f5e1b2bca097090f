#include "src/checkpoint/store.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <vector>

#include "src/util/error.h"

namespace kl::checkpoint {
namespace {

namespace fs = std::filesystem;

// Failures of the commit, which may run on a background thread (src/train/checkpoint_saver.h):
// thrown, for the training thread to rethrow.
void check(bool ok, const std::string& message) {
  if (!ok) throw std::runtime_error(message);
}

void fsync_path(const fs::path& path) {
  const int fd = ::open(path.c_str(), O_RDONLY);
  const bool ok = fd >= 0 && ::fsync(fd) == 0;
  if (fd >= 0) ::close(fd);
  check(ok, "cannot fsync " + path.string());
}

// Step number of a committed checkpoint directory name, or -1.
int64_t step_of(const std::string& name) {
  long long step = -1;
  char rest = 0;
  if (name.size() != 13 || std::sscanf(name.c_str(), "step_%lld%c", &step, &rest) != 1) return -1;
  return step;
}

}  // namespace

std::string Store::step_name(int64_t step) {
  char name[32];
  std::snprintf(name, sizeof name, "step_%08lld", static_cast<long long>(step));
  return name;
}

void Store::prepare() const {
  std::error_code error;
  fs::create_directories(dir_, error);
  if (error) throw UserError("checkpoint.dir " + dir_ + ": " + error.message());
  for (const auto& entry : fs::directory_iterator(dir_, error)) {
    const std::string name = entry.path().filename().string();
    if (name.size() > 4 && name.ends_with(".tmp")) fs::remove_all(entry.path(), error);
  }
  if (error) throw UserError("checkpoint.dir " + dir_ + ": " + error.message());
  if (::access(dir_.c_str(), W_OK) != 0) throw UserError("checkpoint.dir " + dir_ + " is not writable");
  struct stat info {};
  if (::stat(dir_.c_str(), &info) == 0 && (info.st_mode & S_IWOTH) && !allow_world_writable_) {
    throw UserError("checkpoint.dir " + dir_ + " is world-writable: anyone could plant files or links in it; "
                    "fix its permissions or set checkpoint.allow_world_writable = true");
  }
}

std::string Store::begin(int64_t step) const {
  const fs::path tmp = fs::path(dir_) / (step_name(step) + ".tmp");
  std::error_code error;
  fs::remove_all(tmp, error);
  check(fs::create_directory(tmp, error), "cannot create " + tmp.string() + ": " + error.message());
  return tmp.string();
}

void Store::commit(int64_t step, int keep) const {
  const fs::path dir(dir_);
  const fs::path tmp = dir / (step_name(step) + ".tmp"), final_dir = dir / step_name(step);
  fsync_path(tmp);
  std::error_code error;
  if (fs::exists(final_dir)) {  // the same step saved again (a rerun): set the old one aside first
    const fs::path old = dir / (step_name(step) + ".old.tmp");
    fs::remove_all(old, error);
    fs::rename(final_dir, old, error);
    check(!error, "cannot move aside " + final_dir.string() + ": " + error.message());
  }
  fs::rename(tmp, final_dir, error);
  check(!error, "cannot rename " + tmp.string() + ": " + error.message());
  fsync_path(dir);
  // The pointer is created exclusively and never through a link someone else placed.
  const fs::path pointer_tmp = dir / "latest.tmp";
  ::unlink(pointer_tmp.c_str());
  {
    const int fd = ::open(pointer_tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, 0644);
    check(fd >= 0, "cannot create " + pointer_tmp.string() + " exclusively");
    const std::string text = step_name(step) + "\n";
    const bool written = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()) && ::fsync(fd) == 0;
    ::close(fd);
    check(written, "cannot write " + pointer_tmp.string());
  }
  fs::rename(pointer_tmp, dir / "latest", error);
  check(!error, "cannot replace " + (dir / "latest").string() + ": " + error.message());
  fsync_path(dir);
  fs::remove_all(dir / (step_name(step) + ".old.tmp"), error);

  std::vector<int64_t> steps;
  for (const auto& entry : fs::directory_iterator(dir, error)) {
    const int64_t s = step_of(entry.path().filename().string());
    if (s >= 0 && entry.is_directory()) steps.push_back(s);
  }
  std::sort(steps.begin(), steps.end());
  for (size_t i = 0; i + static_cast<size_t>(keep) < steps.size(); ++i) {
    if (steps[i] == step) continue;
    // Renamed first (atomic), so that a crash while deleting leaves only a .tmp behind.
    const fs::path doomed = dir / (step_name(steps[i]) + ".old.tmp");
    fs::rename(dir / step_name(steps[i]), doomed, error);
    if (!error) fs::remove_all(doomed, error);
  }
}

std::optional<std::string> Store::latest() const {
  std::error_code error;
  const fs::path pointer = fs::path(dir_) / "latest";
  if (fs::is_symlink(fs::symlink_status(pointer, error))) {
    throw UserError("checkpoint.dir " + dir_ + ": `latest` is a symbolic link, refused");
  }
  std::ifstream in(pointer);
  std::string name;
  if (!in || !std::getline(in, name)) return std::nullopt;
  if (step_of(name) < 0) throw UserError("checkpoint.dir " + dir_ + ": `latest` names '" + name + "', not a checkpoint");
  const fs::path path = fs::path(dir_) / name;
  if (fs::is_symlink(fs::symlink_status(path, error))) {
    throw UserError("checkpoint.dir " + dir_ + ": " + name + " is a symbolic link, refused");
  }
  if (!fs::is_directory(path)) throw UserError("checkpoint.dir " + dir_ + ": `latest` names " + name + ", which is missing");
  return path.string();
}

std::string resolve(const std::string& path) {
  std::error_code error;
  if (fs::is_regular_file(path, error)) return path;
  if (fs::is_regular_file(fs::path(path) / kFileName, error)) return (fs::path(path) / kFileName).string();
  if (fs::is_directory(path, error)) {
    if (const auto latest = Store(path).latest()) return (fs::path(*latest) / kFileName).string();
    throw UserError("checkpoint " + path + ": a directory without " + kFileName + " or a `latest` pointer");
  }
  throw UserError("checkpoint " + path + ": no such file or directory");
}

}  // namespace kl::checkpoint
