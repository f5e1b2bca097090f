// Thin RAII over the HDF5 C API (the parallel, Open MPI build): an owned hid_t that closes itself,
// and KL_CHECK_H5 (src/check/hdf5.h) for calls that must not fail. Only writers use HDF5:
// checkpoints are read through their index (src/checkpoint/index.h), never HDF5's parser.
#pragma once

#include <hdf5.h>

#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

#include "src/check/hdf5.h"
#include "src/util/error.h"

namespace kl::h5 {

// Turns off HDF5's own error printing: failures become our messages.
void quiet();

// Initialises the library and goes once through what creating a checkpoint file does, on a file in
// memory (the core driver: nothing reaches the disk), so that the first save need not (a run's first
// create_file took 0.12 s, later ones 0.015 s, 30 Nov 2026). Takes library_lock().
void warm_up();

// HDF5 is not built thread-safe (the parallel build cannot be): every use of it while a checkpoint
// is saved in the background (src/train/checkpoint_saver.h) holds this lock.
std::mutex& library_lock();

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

// Attributes on an object (a file's root group or a dataset), for other readers (h5py, h5dump):
// kilolayer reads its checkpoints through their index (src/checkpoint/index.h), not HDF5.
void write_attribute(hid_t object, const char* name, int64_t value);
void write_attribute(hid_t object, const char* name, const std::string& value);

}  // namespace kl::h5
