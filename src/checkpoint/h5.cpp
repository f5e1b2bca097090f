#include "src/checkpoint/h5.h"

#include <algorithm>

namespace kl::h5 {

void quiet() { H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr); }

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

namespace {
// A scalar attribute (or one of a single element): H5Aread fills as many values as the attribute's
// dataspace holds, so a damaged or forged file with a larger one would overrun the reader's buffer.
Id open_attribute(hid_t object, const char* name, const std::string& where) {
  if (H5Aexists(object, name) <= 0) throw UserError(where + ": attribute '" + name + "' is missing");
  Id attr(H5Aopen(object, name, H5P_DEFAULT), H5Aclose);
  if (!attr.valid()) throw UserError(where + ": cannot open attribute '" + name + "'");
  Id space(H5Aget_space(attr.get()), H5Sclose);
  if (!space.valid() || H5Sget_simple_extent_npoints(space.get()) != 1) {
    throw UserError(where + ": attribute '" + std::string(name) + "' is not a single value");
  }
  return attr;
}
}  // namespace

bool has_attribute(hid_t object, const char* name) { return H5Aexists(object, name) > 0; }

int64_t read_int_attribute(hid_t object, const char* name, const std::string& where) {
  Id attr = open_attribute(object, name, where);
  Id type(H5Aget_type(attr.get()), H5Tclose);
  if (!type.valid() || H5Tget_class(type.get()) != H5T_INTEGER) {
    throw UserError(where + ": attribute '" + std::string(name) + "' is not an integer");
  }
  int64_t value = 0;
  if (H5Aread(attr.get(), H5T_NATIVE_INT64, &value) < 0) {
    throw UserError(where + ": cannot read attribute '" + std::string(name) + "'");
  }
  return value;
}

std::string read_string_attribute(hid_t object, const char* name, const std::string& where) {
  Id attr = open_attribute(object, name, where);
  Id type(H5Aget_type(attr.get()), H5Tclose);
  if (!type.valid() || H5Tget_class(type.get()) != H5T_STRING || H5Tis_variable_str(type.get()) > 0) {
    throw UserError(where + ": attribute '" + std::string(name) + "' is not a fixed-length string");
  }
  const size_t size = H5Tget_size(type.get());
  if (size > kMaxStringAttributeBytes) {
    throw UserError(where + ": attribute '" + std::string(name) + "' claims " + std::to_string(size) +
                    " bytes, more than the " + std::to_string(kMaxStringAttributeBytes) + " a checkpoint writes");
  }
  std::string value(size, '\0');
  if (value.empty() || H5Aread(attr.get(), type.get(), value.data()) < 0) {
    throw UserError(where + ": cannot read attribute '" + std::string(name) + "'");
  }
  value.resize(value.find('\0') == std::string::npos ? value.size() : value.find('\0'));
  return value;
}

}  // namespace kl::h5
