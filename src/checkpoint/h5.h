// Thin RAII over the HDF5 C API (the parallel, Open MPI build): an owned hid_t that closes itself,
// and KL_CHECK_H5 (src/check/hdf5.h) for calls that must not fail. Reading a user's file goes
// through the helpers below, which report failures as UserError naming the file and the object.
#pragma once

#include <hdf5.h>

#include <cstdint>
#include <string>
#include <vector>

#include "src/check/hdf5.h"
#include "src/util/error.h"

namespace kl::h5 {

// Turns off HDF5's own error printing: failures become our messages.
void quiet();

class Id {
 public:
  Id() = default;
  Id(hid_t id, herr_t (*close)(hid_t)) : id_(id), close_(close) {}
  ~Id() { reset(); }
  Id(Id&& other) noexcept : id_(other.id_), close_(other.close_) { other.id_ = -1; }
  Id& operator=(Id&& other) noexcept {
    if (this != &other) {
      reset();
      id_ = other.id_;
      close_ = other.close_;
      other.id_ = -1;
    }
    return *this;
  }
  Id(const Id&) = delete;
  Id& operator=(const Id&) = delete;

  hid_t get() const { return id_; }
  bool valid() const { return id_ >= 0; }
  // Closes now and reports whether the close succeeded (a close can be where a write fails).
  bool close();

 private:
  void reset() {
    if (id_ >= 0 && close_) close_(id_);
    id_ = -1;
  }
  hid_t id_ = -1;
  herr_t (*close_)(hid_t) = nullptr;
};

// Attributes on an object (a file's root group or a dataset). Writers create them; the readers
// throw UserError("<where>: ...") when absent, of the wrong kind, not a single value, or (strings)
// longer than kMaxStringAttributeBytes.
inline constexpr size_t kMaxStringAttributeBytes = size_t{64} << 20;
bool has_attribute(hid_t object, const char* name);
void write_attribute(hid_t object, const char* name, int64_t value);
void write_attribute(hid_t object, const char* name, const std::string& value);
int64_t read_int_attribute(hid_t object, const char* name, const std::string& where);
std::string read_string_attribute(hid_t object, const char* name, const std::string& where);

}  // namespace kl::h5
