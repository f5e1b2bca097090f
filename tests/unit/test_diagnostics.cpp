// diagnostics.h5 (src/train/diagnostics.h): a row for a step at or before rows already written (a
// spike rollback, a resume from an older checkpoint) replaces those rows, read back through the
// HDF5 C API.
#include <gtest/gtest.h>
#include <hdf5.h>

#include <filesystem>
#include <string>
#include <vector>

#include "src/train/diagnostics.h"

namespace kl {
namespace {

DiagnosticsRow row(int64_t step, int layers) {
  DiagnosticsRow r;
  r.step = step;
  for (int l = 0; l < layers; ++l) {
    const double v = double(step) * 100 + l;  // each value names its step and layer
    r.residual_grad_norm.push_back(v);
    r.residual_rms.push_back(v + 0.1);
    r.attn_out_rms.push_back(v + 0.2);
    r.mlp_out_rms.push_back(v + 0.3);
    r.update_ratio.push_back(v + 0.4);
  }
  r.final_grad_norm = double(step);
  r.final_rms = double(step) + 0.5;
  return r;
}

template <class T>
std::vector<T> read_all(const std::string& path, const char* name, hid_t type) {
  const hid_t file = H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  const hid_t ds = H5Dopen2(file, name, H5P_DEFAULT);
  const hid_t space = H5Dget_space(ds);
  std::vector<T> values(static_cast<size_t>(H5Sget_simple_extent_npoints(space)));
  EXPECT_GE(H5Dread(ds, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, values.data()), 0);
  H5Sclose(space);
  H5Dclose(ds);
  H5Fclose(file);
  return values;
}

TEST(Diagnostics, RowsAfterAGoBackAreReplaced) {
  const std::string dir = testing::TempDir() + "/kl_diag_" + std::to_string(::getpid());
  std::filesystem::create_directories(dir);
  const std::string path = dir + "/diagnostics.h5";
  std::filesystem::remove(path);
  const int layers = 3;
  DiagnosticsWriter writer(path, layers);
  for (int64_t step : {5, 10, 15, 20}) writer.append(row(step, layers));
  writer.append(row(15, layers));  // the run went back to step 10's checkpoint and trained step 15 again
  writer.append(row(25, layers));

  EXPECT_EQ(read_all<int64_t>(path, "step", H5T_NATIVE_INT64), (std::vector<int64_t>{5, 10, 15, 25}));
  const std::vector<double> grad = read_all<double>(path, "residual_grad_norm", H5T_NATIVE_DOUBLE);
  ASSERT_EQ(grad.size(), size_t{4 * layers});
  EXPECT_DOUBLE_EQ(grad[2 * layers + 1], 1501);  // the new step 15, layer 1
  EXPECT_DOUBLE_EQ(grad[3 * layers + 2], 2502);
  EXPECT_EQ(read_all<double>(path, "final_rms", H5T_NATIVE_DOUBLE), (std::vector<double>{5.5, 10.5, 15.5, 25.5}));

  writer.append(row(1, layers));  // before every row: the file holds that row alone
  EXPECT_EQ(read_all<int64_t>(path, "step", H5T_NATIVE_INT64), (std::vector<int64_t>{1}));
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace kl
