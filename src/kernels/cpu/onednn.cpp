// oneDNN products (src/kernels/cpu/onednn.h). The bf16 path keeps one matmul primitive per shape
// (created on first use, on the calling thread) and two growing bf16 staging buffers: after the
// first step nothing is allocated.
#include "src/kernels/cpu/onednn.h"

#include <cpuid.h>

#include <cstdint>
#include <cstring>
#include <map>
#include <tuple>
#include <type_traits>
#include <unordered_map>
#include <vector>

#ifdef KL_HAVE_ONEDNN
#include <oneapi/dnnl/dnnl.hpp>
#endif

#include "src/kernels/cpu/bf16.h"
#include "src/util/error.h"

namespace kl::cpu {
namespace {

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

}  // namespace

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

// oneDNN matmul primitives on bf16 operands, one per shape (created on first use, on the calling
// thread), and two growing bf16 staging buffers for fp32 operands: after the first step nothing is
// allocated.
class Bf16Matmul {
 public:
  Bf16Matmul() : engine_(dnnl::engine::kind::cpu, 0), stream_(engine_) {}

  // fp32 operands, rounded into the staging buffers (packed) first.
  void run_staged(bool ta, bool tb, int m, int n, int k, const float* a, int lda, const float* b, int ldb, float beta,
                  float* c, int ldc, bool a_unchanged) {
    const int64_t a_rows = ta ? k : m, a_cols = ta ? m : k, b_rows = tb ? n : k, b_cols = tb ? k : n;
    const Staged a_now{a, a_rows, a_cols, lda};
    if (!(a_unchanged && a_now == a_staged_)) stage(a16_, a, a_rows, a_cols, lda);
    a_staged_ = a_now;
    stage(b16_, b, b_rows, b_cols, ldb);
    run({ta, tb, m, n, k, static_cast<int>(a_cols), static_cast<int>(b_cols), ldc, beta != 0.0f, false, false},
        a16_.data(), b16_.data(), nullptr, c);
  }

  // bf16 operands as they are; C in fp32 or bf16, bias (bf16, [n]) added before C is rounded.
  template <class CT>
  void run_direct(bool ta, bool tb, int m, int n, int k, const bf16* a, int lda, const bf16* b, int ldb,
                  const bf16* bias, float beta, CT* c, int ldc) {
    a_staged_ = {};  // the staged A is no longer the previous call's
    run({ta, tb, m, n, k, lda, ldb, ldc, beta != 0.0f, std::is_same_v<CT, bf16>, bias != nullptr}, a, b, bias, c);
  }

 private:
  // Transposes, shape, leading dimensions, C += (beta = 1), C in bf16, a bias.
  using Key = std::tuple<bool, bool, int, int, int, int, int, int, bool, bool, bool>;
  // Which matrix a16_ holds: where it was read from, as stored.
  struct Staged {
    const float* from = nullptr;
    int64_t rows = 0, cols = 0, ld = 0;
    bool operator==(const Staged&) const = default;
  };
  struct Primitive {
    dnnl::matmul matmul;
    dnnl::memory::desc a, b, c, bias;
  };

  void run(const Key& key, const void* a, const void* b, const void* bias, void* c) {
    KL_CHECK(!std::get<8>(key) || !std::get<9>(key), "bf16 matmul: C += ... is for an fp32 C only");
    auto found = cache_.find(key);
    if (found == cache_.end()) found = cache_.emplace(key, make(key)).first;
    const Primitive& p = found->second;
    dnnl::memory am(p.a, engine_, const_cast<void*>(a)), bm(p.b, engine_, const_cast<void*>(b)),
        cm(p.c, engine_, c);
    std::unordered_map<int, dnnl::memory> args{{DNNL_ARG_SRC, am}, {DNNL_ARG_WEIGHTS, bm}, {DNNL_ARG_DST, cm}};
    if (bias) args.emplace(DNNL_ARG_BIAS, dnnl::memory(p.bias, engine_, const_cast<void*>(bias)));
    p.matmul.execute(stream_, args);
    stream_.wait();
  }

  Primitive make(const Key& key) {
    const auto [ta, tb, m, n, k, lda, ldb, ldc, accumulate, c_bf16, has_bias] = key;
    using dt = dnnl::memory::data_type;
    using dims = dnnl::memory::dims;
    const dnnl::memory::desc a({m, k}, dt::bf16, ta ? dims{1, lda} : dims{lda, 1});
    const dnnl::memory::desc b({k, n}, dt::bf16, tb ? dims{1, ldb} : dims{ldb, 1});
    const dnnl::memory::desc c({m, n}, c_bf16 ? dt::bf16 : dt::f32, dims{ldc, 1});
    const dnnl::memory::desc bias = has_bias ? dnnl::memory::desc({1, n}, dt::bf16, dims{n, 1}) : dnnl::memory::desc();
    dnnl::primitive_attr attr;
    if (accumulate) {
      dnnl::post_ops ops;
      ops.append_sum(1.0f);
      attr.set_post_ops(ops);
    }
    const dnnl::matmul::primitive_desc pd =
        has_bias ? dnnl::matmul::primitive_desc(dnnl::matmul::desc(a, b, bias, c), attr, engine_)
                 : dnnl::matmul::primitive_desc(dnnl::matmul::desc(a, b, c), attr, engine_);
    return {dnnl::matmul(pd), a, b, c, bias};
  }

  // rows x cols of `from` (leading dimension ld) into `to`, packed, as bf16.
  static void stage(std::vector<uint16_t>& to, const float* from, int64_t rows, int64_t cols, int64_t ld) {
    if (static_cast<int64_t>(to.size()) < rows * cols) to.resize(static_cast<size_t>(rows * cols));
    uint16_t* out = to.data();
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t j = 0; j < cols; ++j) out[r * cols + j] = to_bf16_bits(from[r * ld + j]);
    }
  }

  dnnl::engine engine_;
  dnnl::stream stream_;
  std::map<Key, Primitive> cache_;
  std::vector<uint16_t> a16_, b16_;
  Staged a_staged_;
};

// One per thread that calls it (the trainer's main thread; tests may call from others).
Bf16Matmul& this_threads_matmul() {
  thread_local Bf16Matmul matmul;
  return matmul;
}

}  // namespace

void bf16_gemm(bool trans_a, bool trans_b, int m, int n, int k, const float* a, int lda, const float* b, int ldb,
               float beta, float* c, int ldc, bool a_unchanged) {
  KL_CHECK(beta == 0.0f || beta == 1.0f, "bf16_gemm: beta must be 0 or 1");
  this_threads_matmul().run_staged(trans_a, trans_b, m, n, k, a, lda, b, ldb, beta, c, ldc, a_unchanged);
}

template <class C>
void bf16_matmul(bool trans_a, bool trans_b, int m, int n, int k, const bf16* a, int lda, const bf16* b, int ldb,
                 const bf16* bias, float beta, C* c, int ldc) {
  KL_CHECK(beta == 0.0f || (beta == 1.0f && std::is_same_v<C, float>), "bf16_matmul: beta must be 0, or 1 for fp32 C");
  if (m == 0 || n == 0) return;
  KL_CHECK(k > 0, "bf16_matmul: k must be positive");
  this_threads_matmul().run_direct(trans_a, trans_b, m, n, k, a, lda, b, ldb, bias, beta, c, ldc);
}
#else
bool have_onednn() { return false; }

void onednn_sgemm(bool, bool, int, int, int, float, const float*, int, const float*, int, float, float*, int) {
  KL_CHECK(false, "onednn_sgemm: built without oneDNN");
}

void bf16_gemm(bool, bool, int, int, int, const float*, int, const float*, int, float, float*, int, bool) {
  KL_CHECK(false, "bf16_gemm: built without oneDNN");
}

template <class C>
void bf16_matmul(bool, bool, int, int, int, const bf16*, int, const bf16*, int, const bf16*, float, C*, int) {
  KL_CHECK(false, "bf16_matmul: built without oneDNN");
}
#endif

template void bf16_matmul<float>(bool, bool, int, int, int, const bf16*, int, const bf16*, int, const bf16*, float,
                                 float*, int);
template void bf16_matmul<bf16>(bool, bool, int, int, int, const bf16*, int, const bf16*, int, const bf16*, float,
                                bf16*, int);

}  // namespace kl::cpu
