// A keyed permutation of [0, n) computed one element at a time: O(1) memory, no stored order, so
// the training sampler can draw element i of an epoch's order on any rank, at any step, for any n.
//
// A balanced Feistel network on the smallest even number of bits 2h with 2^2h >= n is a bijection
// of [0, 2^2h) whatever its round function; cycle walking (apply it again while the value is >= n)
// restricts it to a bijection of [0, n). 2^2h < 4n, so a walk takes under 4 applications on
// average. Six rounds of the splitmix64 finaliser (src/util/rng.h) make the order look random;
// nothing here needs it to be cryptographic.
#pragma once

#include <bit>
#include <cstdint>

#include "src/util/rng.h"

namespace kl {

class KeyedPermutation {
 public:
  KeyedPermutation(uint64_t key, uint64_t n) : key_(key), n_(n) {
    const int bits = n > 1 ? std::bit_width(n - 1) : 1;
    half_ = (bits + 1) / 2;
    mask_ = (uint64_t{1} << half_) - 1;
  }

  // Element `i` (< n) of the permutation.
  uint64_t operator()(uint64_t i) const {
    uint64_t x = i;
    do {
      x = feistel(x);
    } while (x >= n_);
    return x;
  }

 private:
  static constexpr int kRounds = 6;

  uint64_t feistel(uint64_t x) const {
    uint64_t left = x >> half_, right = x & mask_;
    for (int round = 0; round < kRounds; ++round) {
      const uint64_t next = left ^ (rng::bits(key_ + static_cast<uint64_t>(round), right) & mask_);
      left = right;
      right = next;
    }
    return (left << half_) | right;
  }

  uint64_t key_, n_;
  int half_;
  uint64_t mask_;
};

}  // namespace kl
