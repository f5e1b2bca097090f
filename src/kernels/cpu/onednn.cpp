// oneDNN products (src/kernels/cpu/onednn.h). The bf16 path keeps one matmul primitive per shape
// (created on first use, on the calling thread) and two growing bf16 staging buffers: after the
// first step nothing is allocated.
#include "src/kernels/cpu/onednn.h"

#include <cpuid.h>
#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <map>
#include <tuple>
#include <vector>

#ifdef KL_HAVE_ONEDNN
#include <oneapi/dnnl/dnnl.hpp>
#endif

#include "src/util/error.h"

namespace kl::cpu {
namespace {

// (A NaN with the top 7 payload bits set and the low half rounding up carries into the sign bit and
// comes out as a zero; no operand of a finite training step is NaN.)
uint16_t to_bf16_bits(float x) {
  uint32_t u;
  std::memcpy(&u, &x, sizeof u);
  return static_cast<uint16_t>((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

// CPUID leaf 7: EBX bit 16 avx512f (subleaf 0), EAX bit 5 avx512_bf16 (subleaf 1); XCR0 must show
// the OS saving the AVX-512 state (bits 5-7) and the AVX state (bits 1-2).
std::string missing_cpu_feature() {
  unsigned eax, ebx, ecx, edx;
  if (!__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx) || !(ebx & (1u << 16))) return "avx512f";
  if (!__get_cpuid_count(7, 1, &eax, &ebx, &ecx, &edx) || !(eax & (1u << 5))) return "avx512_bf16";
  unsigned xcr0_lo, xcr0_hi;
  __asm__("xgetbv" : "=a"(xcr0_lo), "=d"(xcr0_hi) : "c"(0));
  if ((xcr0_lo & 0xe6u) != 0xe6u) return "the operating system's AVX-512 state (XCR0)";
  return "";
}

// The AVX-512 transposing staging below computes to_bf16_bits's formula in 32-bit integer lanes (the same
// wrap-around, so the same bits for every input: denormals kept, NaN and infinity as the scalar
// rounds them). The hardware's VCVTNEPS2BF16 would flush denormals to zero and quiet NaNs instead.
#define KL_STAGE_AVX512 __attribute__((target("avx512f")))
// GCC 12's AVX-512 intrinsics start from _mm512_undefined_epi32(), which -Wmaybe-uninitialized
// reports once they are inlined (GCC bug 105593, fixed in GCC 13).
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

KL_STAGE_AVX512 inline __m512i bf16_bits_in_lanes(__m512i u) {
  const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
  return _mm512_srli_epi32(_mm512_add_epi32(u, _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7fff))), 16);
}

KL_STAGE_AVX512 inline __mmask16 first(int64_t count) {
  return count >= 16 ? __mmask16(0xffff) : __mmask16((1u << count) - 1);
}

// Masked loads and stores only at the ends: on this Zen 4 a masked load from memory not in cache ran
// at half the speed of a plain one.
KL_STAGE_AVX512 inline __m512i load16(const float* from, int64_t count) {
  return count >= 16 ? _mm512_loadu_si512(from) : _mm512_maskz_loadu_epi32(first(count), from);
}

// The low halves of 16 lanes (count of them) to `to`.
KL_STAGE_AVX512 inline void store16(uint16_t* to, __m512i lanes, int64_t count) {
  if (count >= 16) {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(to), _mm512_cvtepi32_epi16(lanes));
  } else {
    _mm512_mask_cvtepi32_storeu_epi16(to, first(count), lanes);
  }
}

// The 16 x 16 block of 32-bit lanes r[0..15] transposed in place (r[i] lane j <- r[j] lane i).
KL_STAGE_AVX512 inline void transpose16(__m512i r[16]) {
  __m512i t[16];
  for (int i = 0; i < 16; i += 2) {
    t[i] = _mm512_unpacklo_epi32(r[i], r[i + 1]);
    t[i + 1] = _mm512_unpackhi_epi32(r[i], r[i + 1]);
  }
  for (int i = 0; i < 16; i += 4) {
    r[i] = _mm512_unpacklo_epi64(t[i], t[i + 2]);
    r[i + 1] = _mm512_unpackhi_epi64(t[i], t[i + 2]);
    r[i + 2] = _mm512_unpacklo_epi64(t[i + 1], t[i + 3]);
    r[i + 3] = _mm512_unpackhi_epi64(t[i + 1], t[i + 3]);
  }
  // Each 128-bit quarter now holds a transposed 4 x 4 sub-block: two rounds of quarter shuffles put
  // the sub-blocks in place.
  for (int s = 0; s < 4; ++s) {
    t[s] = _mm512_shuffle_i32x4(r[s], r[4 + s], 0x88);
    t[4 + s] = _mm512_shuffle_i32x4(r[s], r[4 + s], 0xdd);
    t[8 + s] = _mm512_shuffle_i32x4(r[8 + s], r[12 + s], 0x88);
    t[12 + s] = _mm512_shuffle_i32x4(r[8 + s], r[12 + s], 0xdd);
  }
  for (int s = 0; s < 4; ++s) {
    r[s] = _mm512_shuffle_i32x4(t[s], t[8 + s], 0x88);
    r[4 + s] = _mm512_shuffle_i32x4(t[4 + s], t[12 + s], 0x88);
    r[8 + s] = _mm512_shuffle_i32x4(t[s], t[8 + s], 0xdd);
    r[12 + s] = _mm512_shuffle_i32x4(t[4 + s], t[12 + s], 0xdd);
  }
}

// Row-major rows x cols (leading dimension ld) into packed cols x rows (its transpose), in 16 x 16
// blocks; each thread a share of the output's 16-row bands.
KL_STAGE_AVX512 void stage_transposed_avx512(uint16_t* to, const float* from, int64_t rows, int64_t cols,
                                             int64_t ld) {
  const int64_t bands = (cols + 15) / 16;
#pragma omp parallel for schedule(static)
  for (int64_t band = 0; band < bands; ++band) {
    const int64_t j0 = band * 16, n_cols = std::min<int64_t>(16, cols - j0);
    for (int64_t r0 = 0; r0 < rows; r0 += 16) {
      const int64_t n_rows = std::min<int64_t>(16, rows - r0);
      __m512i block[16];
      for (int i = 0; i < 16; ++i) {
        block[i] = i < n_rows ? bf16_bits_in_lanes(load16(from + (r0 + i) * ld + j0, n_cols)) : _mm512_setzero_si512();
      }
      transpose16(block);
      for (int j = 0; j < n_cols; ++j) store16(to + (j0 + j) * rows + r0, block[j], n_rows);
    }
  }
}

#pragma GCC diagnostic pop
#undef KL_STAGE_AVX512

}  // namespace

float round_to_bf16(float x) {
  const uint32_t u = uint32_t{to_bf16_bits(x)} << 16;
  float y;
  std::memcpy(&y, &u, sizeof y);
  return y;
}

// Rows as they are: the compiler vectorises this loop (-O3), and it ran as fast as hand-written
// AVX-512 in training (memory-bound: the operands come from memory, not cache). Transposed: the
// AVX-512 16 x 16 blocks where the CPU has them, else one element at a time.
void stage_bf16(uint16_t* to, const float* from, int64_t rows, int64_t cols, int64_t ld, bool transpose) {
  static const bool avx512 = __builtin_cpu_supports("avx512f");
  if (transpose && avx512) {
    stage_transposed_avx512(to, from, rows, cols, ld);
  } else if (transpose) {
#pragma omp parallel for schedule(static)
    for (int64_t j = 0; j < cols; ++j) {
      for (int64_t r = 0; r < rows; ++r) to[j * rows + r] = to_bf16_bits(from[r * ld + j]);
    }
  } else {
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t j = 0; j < cols; ++j) to[r * cols + j] = to_bf16_bits(from[r * ld + j]);
    }
  }
}

std::string bf16_products_unavailable() {
  if (!have_onednn()) {
    return "this kilolayer was built without oneDNN (-DKL_ONEDNN=OFF), which runs the CPU's bf16 products";
  }
  const std::string missing = missing_cpu_feature();
  if (!missing.empty()) return "this CPU lacks " + missing + ", which the CPU's bf16 products need";
  return "";
}

#ifdef KL_HAVE_ONEDNN
bool have_onednn() { return true; }

void onednn_sgemm(bool trans_a, bool trans_b, int m, int n, int k, float alpha, const float* a, int lda,
                  const float* b, int ldb, float beta, float* c, int ldc) {
  if (m == 0 || n == 0) return;
  if (k == 0) {  // dnnl_sgemm refuses it; BLAS's contract: C = beta C, not read when beta is 0
    for (int i = 0; i < m; ++i) {
      for (int j = 0; j < n; ++j) c[int64_t{i} * ldc + j] = beta == 0.0f ? 0.0f : beta * c[int64_t{i} * ldc + j];
    }
    return;
  }
  const dnnl_status_t status =
      dnnl_sgemm(trans_a ? 'T' : 'N', trans_b ? 'T' : 'N', m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
  KL_CHECK(status == dnnl_success, "dnnl_sgemm failed");
}

namespace {

class Bf16Matmul {
 public:
  Bf16Matmul() : engine_(dnnl::engine::kind::cpu, 0), stream_(engine_) {}

  void run(bool ta, bool tb, int m, int n, int k, const float* a, int lda, const float* b, int ldb, float beta,
           float* c, int ldc) {
    KL_CHECK(beta == 0.0f || beta == 1.0f, "bf16_gemm: beta must be 0 or 1");
    const Key key{tb, m, n, k, ldc, beta != 0.0f};
    auto found = cache_.find(key);
    if (found == cache_.end()) found = cache_.emplace(key, make(key)).first;
    grow(a16_, int64_t{m} * k);
    grow(b16_, int64_t{k} * n);
    // op(A) is staged row-major [m, k] whatever ta: oneDNN's bf16 matmul runs the weight-gradient
    // products (ta) faster than with A read transposed (docs/performance.md). B keeps its
    // layout: transposing it gained nothing on the forward products (tb).
    stage_bf16(a16_.data(), a, ta ? k : m, ta ? m : k, lda, ta);
    stage_bf16(b16_.data(), b, tb ? n : k, tb ? k : n, ldb, false);
    const Primitive& p = found->second;
    dnnl::memory am(p.a, engine_, a16_.data()), bm(p.b, engine_, b16_.data()), cm(p.c, engine_, c);
    p.matmul.execute(stream_, {{DNNL_ARG_SRC, am}, {DNNL_ARG_WEIGHTS, bm}, {DNNL_ARG_DST, cm}});
    stream_.wait();
  }

 private:
  // (tb, m, n, k, ldc, accumulate): the staged operands are packed, so lda and ldb do not matter.
  using Key = std::tuple<bool, int, int, int, int, bool>;
  struct Primitive {
    dnnl::matmul matmul;
    dnnl::memory::desc a, b, c;
  };

  static void grow(std::vector<uint16_t>& v, int64_t n) {
    if (static_cast<int64_t>(v.size()) < n) v.resize(static_cast<size_t>(n));
  }

  // The staged operands are packed: op(A) row-major [m, k]; B as stored, [k, n] or (tb) [n, k].
  Primitive make(const Key& key) {
    const auto [tb, m, n, k, ldc, accumulate] = key;
    using dt = dnnl::memory::data_type;
    using dims = dnnl::memory::dims;
    const dnnl::memory::desc a({m, k}, dt::bf16, dims{k, 1});
    const dnnl::memory::desc b({k, n}, dt::bf16, tb ? dims{1, k} : dims{n, 1});
    const dnnl::memory::desc c({m, n}, dt::f32, dims{ldc, 1});
    dnnl::primitive_attr attr;
    if (accumulate) {
      dnnl::post_ops ops;
      ops.append_sum(1.0f);
      attr.set_post_ops(ops);
    }
    const dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(a, b, c), attr, engine_);
    return {dnnl::matmul(pd), a, b, c};
  }

  dnnl::engine engine_;
  dnnl::stream stream_;
  std::map<Key, Primitive> cache_;
  std::vector<uint16_t> a16_, b16_;
};

}  // namespace

void bf16_gemm(bool trans_a, bool trans_b, int m, int n, int k, const float* a, int lda, const float* b, int ldb,
               float beta, float* c, int ldc) {
  // One per thread that calls it (the trainer's main thread; tests may call from others).
  thread_local Bf16Matmul matmul;
  matmul.run(trans_a, trans_b, m, n, k, a, lda, b, ldb, beta, c, ldc);
}
#else
bool have_onednn() { return false; }

void onednn_sgemm(bool, bool, int, int, int, float, const float*, int, const float*, int, float, float*, int) {
  KL_CHECK(false, "onednn_sgemm: built without oneDNN");
}

void bf16_gemm(bool, bool, int, int, int, const float*, int, const float*, int, float, float*, int) {
  KL_CHECK(false, "bf16_gemm: built without oneDNN");
}
#endif

}  // namespace kl::cpu
