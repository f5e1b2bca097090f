#include "src/train/metrics.h"

#include <cerrno>
#include <cmath>
#include <cstring>
#include <fstream>

#include "src/util/error.h"

namespace kl {

MetricsWriter::MetricsWriter(const std::string& path, int64_t keep_through) : path_(path) { rewind(keep_through); }

void MetricsWriter::rewind(int64_t keep_through) {
  if (file_) {
    std::fclose(file_);
    file_ = nullptr;
  }
  const std::string& path = path_;
  std::string kept;
  if (keep_through > 0) {
    std::ifstream in(path);
    std::string line;
    while (std::getline(in, line)) {
      long long step = 0;
      // Whole rows only: a row cut short (a file left by an older version, see below) is dropped.
      if (std::sscanf(line.c_str(), "{\"step\":%lld", &step) == 1 && step <= keep_through && line.back() == '}') {
        kept += line + "\n";
      }
    }
  }
  // The kept rows go to a new file that then replaces the old one in one rename. Rewritten in place,
  // a job killed before its first row (kill -9, the watchdog's exit) left the file cut at a stdio
  // buffer's edge: the rows after it lost, and the cut row kept by the next start.
  const std::string tmp = path + ".tmp";
  std::FILE* out = std::fopen(tmp.c_str(), "w");
  if (!out) throw UserError("cannot create " + tmp + ": " + std::strerror(errno));
  const bool written = std::fputs(kept.c_str(), out) >= 0 && std::fflush(out) == 0;
  if (std::fclose(out) != 0 || !written) throw UserError("cannot write " + tmp + ": " + std::strerror(errno));
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    throw UserError("cannot replace " + path + ": " + std::strerror(errno));
  }
  file_ = std::fopen(path.c_str(), "a");
  if (!file_) throw UserError("cannot open " + path + ": " + std::strerror(errno));
}

MetricsWriter::~MetricsWriter() {
  if (file_) std::fclose(file_);
}

void MetricsWriter::write(const StepMetrics& m) {
  // %.9g round-trips fp32 values; JSON has no NaN, so non-finite numbers are written as null.
  auto number = [](double x) {
    if (!std::isfinite(x)) return std::string("null");
    char buffer[32];
    std::snprintf(buffer, sizeof buffer, "%.9g", x);
    return std::string(buffer);
  };
  std::string line = "{\"step\":" + std::to_string(m.step) + ",\"loss\":" + number(m.loss) +
                     ",\"lr\":" + number(m.lr) + ",\"grad_norm\":" + number(m.grad_norm) +
                     ",\"tokens_per_s\":" + number(m.tokens_per_s) +
                     ",\"step_time_s\":" + number(m.step_time_s) +
                     ",\"compute_s\":" + number(m.compute_s) + ",\"comm_wait_s\":" + number(m.comm_wait_s) +
                     ",\"bytes_reduced\":" + std::to_string(m.bytes_reduced) +
                     ",\"skipped_steps\":" + std::to_string(m.skipped_steps);
  if (m.val_loss) line += ",\"val_loss\":" + number(*m.val_loss);
  if (m.spike) {
    const SpikeEvent& e = *m.spike;
    line += ",\"spike\":{\"action\":\"" + e.action + "\",\"at_step\":" + std::to_string(e.at_step) +
            ",\"loss\":" + number(e.loss) + ",\"grad_norm\":" + number(e.grad_norm) +
            ",\"loss_z\":" + number(e.loss_z) + ",\"norm_z\":" + number(e.norm_z);
    if (e.action == "rollback") {
      line += ",\"to_step\":" + std::to_string(e.to_step) + ",\"skipped_batch\":" + std::to_string(e.skipped_batch);
    }
    line += "}";
  }
  if (m.pipeline) {
    auto list = [&number](const std::vector<double>& values) {
      std::string out = "[";
      for (size_t i = 0; i < values.size(); ++i) {
        if (i) out += ',';
        out += number(values[i]);
      }
      return out + "]";
    };
    line += ",\"bubble\":" + number(m.pipeline->bubble) + ",\"bubble_theory\":" + number(m.pipeline->bubble_theory) +
            ",\"stage_wait_s\":" + list(m.pipeline->stage_wait_s) +
            ",\"stage_activation_mb\":" + list(m.pipeline->stage_activation_mb) +
            ",\"stage_peak_rss_mb\":" + list(m.pipeline->stage_peak_rss_mb);
  }
  line += "}\n";
  if (std::fputs(line.c_str(), file_) < 0 || std::fflush(file_) != 0) {
    throw UserError("cannot write " + path_ + ": " + std::strerror(errno));
  }
}

std::string progress_line(const StepMetrics& m, int64_t total_steps, double eta_s) {
  char buffer[256];
  const auto eta = static_cast<int64_t>(eta_s + 0.5);
  int n = std::snprintf(buffer, sizeof buffer, "step %lld/%lld | loss %.4f",
                        static_cast<long long>(m.step), static_cast<long long>(total_steps), m.loss);
  if (m.val_loss) n += std::snprintf(buffer + n, sizeof buffer - n, " | val %.4f", *m.val_loss);
  std::snprintf(buffer + n, sizeof buffer - n,
                " | lr %.2e | norm %.3f | %.0f tok/s | ETA %lldm%02llds", m.lr, m.grad_norm,
                m.tokens_per_s, static_cast<long long>(eta / 60), static_cast<long long>(eta % 60));
  return buffer;
}

}  // namespace kl
