#include "src/checkpoint/h5.h"

#include <algorithm>

namespace kl::h5 {

void quiet() { H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr); }

std::mutex& library_lock() {
  static std::mutex lock;
  return lock;
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
