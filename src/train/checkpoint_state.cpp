#include "src/train/checkpoint_state.h"

#include <cmath>
#include <memory>
#include <span>

#include "src/checkpoint/checkpoint.h"
#include "src/util/error.h"

namespace kl {
namespace {

// The worker's state in its own layout, in host memory (page-locked for a GPU), for the checkpoint
// code: the whole buffer of each, also under ZeRO-1.
struct HostState {
  explicit HostState(Worker& worker)
      : params_buffer(worker.ops().alloc_host(static_cast<int64_t>(worker.params().size()))),
        m_buffer(worker.ops().alloc_host(static_cast<int64_t>(worker.params().size()))),
        v_buffer(worker.ops().alloc_host(static_cast<int64_t>(worker.params().size()))),
        params(params_buffer->span()),
        exp_avg(m_buffer->span()),
        exp_avg_sq(v_buffer->span()) {}
  std::unique_ptr<VectorOps<float>::Buffer> params_buffer, m_buffer, v_buffer;
  std::span<float> params, exp_avg, exp_avg_sq;
  checkpoint::RankState state(const Worker& worker) const {
    checkpoint::RankState s;
    s.table = &worker.table();
    s.params = params;
    s.duplicate = worker.duplicate_range();
    s.exp_avg = exp_avg;
    s.exp_avg_sq = exp_avg_sq;
    return s;
  }
};

}  // namespace

int64_t CheckpointState::save(const std::string& path, checkpoint::Header header, Comm& world) {
  const int64_t step = header.step;
  VectorOps<float>& ops = worker_.ops();
  // Skipped steps leave the parameters as they were, so this holds unless something is broken;
  // a failed check ends the job before the checkpoint is published.
  KL_CHECK(std::isfinite(ops.sum_squares(worker_.params())),
           "refusing to checkpoint non-finite parameters at step " + std::to_string(step));
  HostState host(worker_);
  if (sync_.zero()) {  // the moments are sharded: gather the whole buffer first
    const auto m = ops.to_host(optimizer_.exp_avg()), v = ops.to_host(optimizer_.exp_avg_sq());
    comms_.dp.all_gather(m, host.exp_avg)->wait();
    comms_.dp.all_gather(v, host.exp_avg_sq)->wait();
  } else {
    ops.download(optimizer_.exp_avg(), host.exp_avg.data());
    ops.download(optimizer_.exp_avg_sq(), host.exp_avg_sq.data());
  }
  ops.download(worker_.params(), host.params.data());
  checkpoint::RankState state = host.state(worker_);
  state.writer = comms_.dp.rank() == 0;
  header.tokens_seen = step * c_.train.global_batch * int64_t{c_.model.seq_len};
  header.config = c_.to_ini();
  header.layout = "dp=" + std::to_string(comms_.dp.size()) + " pp=" + std::to_string(c_.parallel.pp) +
                  " schedule=" + name_of(c_.parallel.schedule) + " virtual=" + std::to_string(c_.parallel.virtual_chunks) +
                  " zero=" + std::to_string(c_.parallel.zero);
  return checkpoint::write_file(path, header, c_.model, state, world, comms_.world_mpi);
}

void CheckpointState::restore(const std::string& path) {
  VectorOps<float>& ops = worker_.ops();
  HostState host(worker_);
  checkpoint::read_tensors(path, host.state(worker_));
  ops.upload(host.params.data(), worker_.params());
  const auto& shard = sync_.shard();
  ops.upload(host.exp_avg.data() + shard.begin, optimizer_.exp_avg());
  ops.upload(host.exp_avg_sq.data() + shard.begin, optimizer_.exp_avg_sq());
  worker_.params_changed();
}

}  // namespace kl
