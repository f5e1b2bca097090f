#include "src/train/diagnostics.h"

#include <filesystem>
#include <vector>

#include "src/checkpoint/h5.h"
#include "src/util/error.h"

namespace kl {
namespace {

struct Column {
  const char* name;
  const char* units;
  bool per_layer;
};
constexpr Column kColumns[] = {
    {"step", "optimizer steps done (1-based step measured)", false},
    {"residual_grad_norm", "L2 norm of dL/dx_l over the global batch (loss: mean cross-entropy, nats)", true},
    {"residual_rms", "root mean square of x_l", true},
    {"attn_out_rms", "root mean square of the attention branch output D(F)", true},
    {"mlp_out_rms", "root mean square of the MLP branch output D(F)", true},
    {"update_ratio", "|theta_l(after) - theta_l(before)| / |theta_l(before)|, block l's tensors", true},
    {"final_grad_norm", "L2 norm of dL/dx_L (the stream's output) over the global batch", false},
    {"final_rms", "root mean square of x_L", false},
};

// The number of leading rows whose step is below `step`.
hsize_t rows_before(hid_t file, int64_t step) {
  h5::Id ds(H5Dopen2(file, "step", H5P_DEFAULT), H5Dclose);
  if (!ds.valid()) throw UserError("diagnostics: the file has no dataset step (another file?)");
  h5::Id space(KL_CHECK_H5(H5Dget_space(ds.get())), H5Sclose);
  hsize_t count = 0;
  H5Sget_simple_extent_dims(space.get(), &count, nullptr);
  std::vector<int64_t> steps(static_cast<size_t>(count));
  if (count > 0) KL_CHECK_H5(H5Dread(ds.get(), H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, steps.data()));
  hsize_t rows = 0;
  while (rows < count && steps[rows] < step) ++rows;
  return rows;
}

}  // namespace

void DiagnosticsWriter::append(const DiagnosticsRow& row) const {
  const std::lock_guard<std::mutex> lock(h5::library_lock());  // a checkpoint may be saved meanwhile
  h5::quiet();
  const bool fresh = !std::filesystem::exists(path_);
  h5::Id file(fresh ? H5Fcreate(path_.c_str(), H5F_ACC_EXCL, H5P_DEFAULT, H5P_DEFAULT)
                    : H5Fopen(path_.c_str(), H5F_ACC_RDWR, H5P_DEFAULT),
              H5Fclose);
  if (!file.valid()) throw UserError("diagnostics: cannot " + std::string(fresh ? "create " : "open ") + path_);
  // The row goes after the last row of an earlier step: rows of this step or later were written by a
  // run that went back (a spike rollback, or a resume from a checkpoint older than the crash) and are
  // replaced, so that steps stay increasing and each step has one row.
  const hsize_t rows = fresh ? 0 : rows_before(file.get(), row.step);
  for (const Column& column : kColumns) {
    const hsize_t width = column.per_layer ? static_cast<hsize_t>(layers_) : 1;
    const int rank = column.per_layer ? 2 : 1;
    h5::Id ds;
    if (fresh) {
      const hsize_t dims[2] = {0, width}, max_dims[2] = {H5S_UNLIMITED, width}, chunk[2] = {16, width};
      h5::Id space(KL_CHECK_H5(H5Screate_simple(rank, dims, max_dims)), H5Sclose);
      h5::Id dcpl(KL_CHECK_H5(H5Pcreate(H5P_DATASET_CREATE)), H5Pclose);
      KL_CHECK_H5(H5Pset_chunk(dcpl.get(), rank, chunk));
      const hid_t type = column.name == std::string("step") ? H5T_STD_I64LE : H5T_IEEE_F64LE;
      ds = h5::Id(H5Dcreate2(file.get(), column.name, type, space.get(), H5P_DEFAULT, dcpl.get(), H5P_DEFAULT), H5Dclose);
      if (!ds.valid()) throw UserError("diagnostics: cannot create " + std::string(column.name) + " in " + path_);
      h5::write_attribute(ds.get(), "units", std::string(column.units));
    } else {
      ds = h5::Id(H5Dopen2(file.get(), column.name, H5P_DEFAULT), H5Dclose);
      if (!ds.valid()) throw UserError("diagnostics: " + path_ + " has no dataset " + column.name + " (another file?)");
    }
    h5::Id old_space(KL_CHECK_H5(H5Dget_space(ds.get())), H5Sclose);
    hsize_t dims[2] = {0, 0};
    H5Sget_simple_extent_dims(old_space.get(), dims, nullptr);
    if (column.per_layer && dims[1] != width) {
      throw UserError("diagnostics: " + path_ + " holds " + std::to_string(dims[1]) + " layers, this run " +
                      std::to_string(layers_));
    }
    if (dims[0] < rows) throw UserError("diagnostics: " + path_ + " has fewer " + column.name + " rows than steps");
    const hsize_t new_dims[2] = {rows + 1, width};
    KL_CHECK_H5(H5Dset_extent(ds.get(), new_dims));
    h5::Id space(KL_CHECK_H5(H5Dget_space(ds.get())), H5Sclose);
    const hsize_t start[2] = {rows, 0}, count[2] = {1, width};
    KL_CHECK_H5(H5Sselect_hyperslab(space.get(), H5S_SELECT_SET, start, nullptr, count, nullptr));
    h5::Id memory(KL_CHECK_H5(H5Screate_simple(rank, count, nullptr)), H5Sclose);
    const std::string name = column.name;
    const void* data = nullptr;
    const double finals[2] = {row.final_grad_norm, row.final_rms};
    if (name == "step") data = &row.step;
    if (name == "residual_grad_norm") data = row.residual_grad_norm.data();
    if (name == "residual_rms") data = row.residual_rms.data();
    if (name == "attn_out_rms") data = row.attn_out_rms.data();
    if (name == "mlp_out_rms") data = row.mlp_out_rms.data();
    if (name == "update_ratio") data = row.update_ratio.data();
    if (name == "final_grad_norm") data = &finals[0];
    if (name == "final_rms") data = &finals[1];
    const hid_t memory_type = name == "step" ? H5T_NATIVE_INT64 : H5T_NATIVE_DOUBLE;
    KL_CHECK_H5(H5Dwrite(ds.get(), memory_type, memory.get(), space.get(), H5P_DEFAULT, data));
  }
  if (!file.close()) throw UserError("diagnostics: cannot finish writing " + path_);
}

}  // namespace kl
