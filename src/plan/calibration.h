// Measured costs of one model shape on this machine (`kilolayer plan --calibrate`): seconds of one
// micro-batch through a block's forward, input-gradient and weight-gradient passes and through the
// model's two ends, seconds per parameter of the update, the activation bytes a block holds, and
// this host's copy bandwidth. Stored as a small "key = value" file that plan --calibration reads;
// every key is required, once, with a positive finite value.
#pragma once

#include <ostream>
#include <string>

#include "src/config/config.h"

namespace kl::plan {

struct Calibration {
  // The shape and conditions it was measured at.
  int d_model = 0, heads = 0, d_ff = 0, seq_len = 0, vocab = 0, micro_batch = 0, threads = 0;
  // Seconds per micro-batch: one block's passes (F, B, W).
  double forward = 0, backward_input = 0, backward_weight = 0;
  // Seconds per micro-batch of the first chunk's extra work (embedding: forward, and its gradient,
  // which the weight part computes) and the last chunk's (final norm, head, loss: forward, and
  // backward, which the input part computes). Can be 0 where too small to see.
  double embedding_forward = 0, embedding_backward = 0, head_forward = 0, head_backward = 0;
  // Seconds per parameter of everything a step does per parameter outside the passes: zeroing
  // the gradients, the norm, clipping and AdamW.
  double update_per_param = 0;
  double block_bytes = 0;      // activation bytes one block adds to a buffer (no recomputation)
  double copy_bandwidth = 0;   // bytes/s of a large memcpy here
};

// The file's text, and back. parse_calibration throws UserError naming `origin` and the key on a
// missing, repeated, unknown or malformed key, or a value out of range.
std::string calibration_text(const Calibration& calibration);
Calibration parse_calibration(const std::string& text, const std::string& origin);
Calibration read_calibration(const std::string& path);  // UserError when unreadable too

// Measures config's model on this machine's CPU backend with run.threads threads (0: every core),
// at train.micro_batch sequences: the median of `repeats` timings after one warm-up each. Progress
// lines go to `log`.
Calibration measure(const Config& config, int repeats, std::ostream& log);

}  // namespace kl::plan
