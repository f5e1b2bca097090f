#include "src/checkpoint/h5.h"

#include <algorithm>

namespace kl::h5 {

void quiet() { H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr); }

std::mutex& library_lock() {
  static std::mutex lock;
  return lock;
}

void warm_up() {
  const std::lock_guard<std::mutex> lock(library_lock());
  quiet();
  Id fapl(KL_CHECK_H5(H5Pcreate(H5P_FILE_ACCESS)), H5Pclose);
  KL_CHECK_H5(H5Pset_fapl_core(fapl.get(), 1 << 16, /*backing_store=*/0));
  Id file(KL_CHECK_H5(H5Fcreate("kilolayer-warm-up", H5F_ACC_TRUNC, H5P_DEFAULT, fapl.get())), H5Fclose);
  write_attribute(file.get(), "name", std::string("value"));
  const hsize_t dims[1] = {4};
  Id space(KL_CHECK_H5(H5Screate_simple(1, dims, nullptr)), H5Sclose);
  Id ds(KL_CHECK_H5(H5Dcreate2(file.get(), "data", H5T_IEEE_F32LE, space.get(), H5P_DEFAULT, H5P_DEFAULT,
                               H5P_DEFAULT)),
        H5Dclose);
  write_attribute(ds.get(), "crc32", int64_t{0});
}

bool Id::close() {
  const bool ok = id_ < 0 || !close_ || close_(id_) >= 0;
  id_ = -1;
  return ok;
}

void write_attribute(hid_t object, const char* name, int64_t value) {
  Id space(KL_CHECK_H5(H5Screate(H5S_SCALAR)), H5Sclose);
  Id attr(KL_CHECK_H5(H5Acreate2(object, name, H5T_STD_I64LE, space.get(), H5P_DEFAULT, H5P_DEFAULT)), H5Aclose);
  KL_CHECK_H5(H5Awrite(attr.get(), H5T_NATIVE_INT64, &value));
}

void write_attribute(hid_t object, const char* name, const std::string& value) {
  Id type(KL_CHECK_H5(H5Tcopy(H5T_C_S1)), H5Tclose);
  KL_CHECK_H5(H5Tset_size(type.get(), std::max<size_t>(value.size(), 1)));
  Id space(KL_CHECK_H5(H5Screate(H5S_SCALAR)), H5Sclose);
  Id attr(KL_CHECK_H5(H5Acreate2(object, name, type.get(), space.get(), H5P_DEFAULT, H5P_DEFAULT)), H5Aclose);
  std::string padded = value;
  padded.resize(std::max<size_t>(value.size(), 1), '\0');
  KL_CHECK_H5(H5Awrite(attr.get(), type.get(), padded.data()));
}

}  // namespace kl::h5
