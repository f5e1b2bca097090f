// oneDNN products (src/kernels/cpu/onednn.h). The bf16 path keeps one matmul primitive per shape
// (created on first use, on the calling thread) with its memory objects: after the first step
// nothing is allocated.
#include "src/kernels/cpu/onednn.h"

#include <cpuid.h>

#include <cstdint>
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

// oneDNN matmul primitives on bf16 operands, one per shape, created on first use on the calling
// thread, each with its memory objects and argument map: a call only points them at its operands
// (set_data_handle), so after the first step nothing is allocated.
class Bf16Matmul {
 public:
  Bf16Matmul() : engine_(dnnl::engine::kind::cpu, 0), stream_(engine_) {}

  // C in fp32 or bf16; bias (bf16, [n]) added before C is rounded.
  template <class CT>
  void run(bool ta, bool tb, int m, int n, int k, const bf16* a, int lda, const bf16* b, int ldb, const bf16* bias,
           float beta, CT* c, int ldc) {
    const Key key{ta, tb, m, n, k, lda, ldb, ldc, beta != 0.0f, std::is_same_v<CT, bf16>, bias != nullptr};
    auto found = cache_.find(key);
    if (found == cache_.end()) found = cache_.emplace(key, make(key)).first;
    Primitive& p = found->second;
    p.args.at(DNNL_ARG_SRC).set_data_handle(const_cast<bf16*>(a));
    p.args.at(DNNL_ARG_WEIGHTS).set_data_handle(const_cast<bf16*>(b));
    p.args.at(DNNL_ARG_DST).set_data_handle(c);
    if (bias) p.args.at(DNNL_ARG_BIAS).set_data_handle(const_cast<bf16*>(bias));
    p.matmul.execute(stream_, p.args);
    stream_.wait();
  }

 private:
  // Transposes, shape, leading dimensions, C += (beta = 1), C in bf16, a bias.
  using Key = std::tuple<bool, bool, int, int, int, int, int, int, bool, bool, bool>;
  struct Primitive {
    dnnl::matmul matmul;
    std::unordered_map<int, dnnl::memory> args;
  };

  Primitive make(const Key& key) {
    const auto [ta, tb, m, n, k, lda, ldb, ldc, accumulate, c_bf16, has_bias] = key;
    using dt = dnnl::memory::data_type;
    using dims = dnnl::memory::dims;
    const dnnl::memory::desc a({m, k}, dt::bf16, ta ? dims{1, lda} : dims{lda, 1});
    const dnnl::memory::desc b({k, n}, dt::bf16, tb ? dims{1, ldb} : dims{ldb, 1});
    const dnnl::memory::desc c({m, n}, c_bf16 ? dt::bf16 : dt::f32, dims{ldc, 1});
    dnnl::primitive_attr attr;
    if (accumulate) {
      dnnl::post_ops ops;
      ops.append_sum(1.0f);
      attr.set_post_ops(ops);
    }
    Primitive p;
    p.args = {{DNNL_ARG_SRC, dnnl::memory(a, engine_, nullptr)},
              {DNNL_ARG_WEIGHTS, dnnl::memory(b, engine_, nullptr)},
              {DNNL_ARG_DST, dnnl::memory(c, engine_, nullptr)}};
    if (has_bias) {
      const dnnl::memory::desc bias({1, n}, dt::bf16, dims{n, 1});
      p.matmul = dnnl::matmul(dnnl::matmul::primitive_desc(dnnl::matmul::desc(a, b, bias, c), attr, engine_));
      p.args.emplace(DNNL_ARG_BIAS, dnnl::memory(bias, engine_, nullptr));
    } else {
      p.matmul = dnnl::matmul(dnnl::matmul::primitive_desc(dnnl::matmul::desc(a, b, c), attr, engine_));
    }
    return p;
  }

  dnnl::engine engine_;
  dnnl::stream stream_;
  std::map<Key, Primitive> cache_;
};

}  // namespace

template <class C>
void bf16_matmul(bool trans_a, bool trans_b, int m, int n, int k, const bf16* a, int lda, const bf16* b, int ldb,
                 const bf16* bias, float beta, C* c, int ldc) {
  KL_CHECK(beta == 0.0f || (beta == 1.0f && std::is_same_v<C, float>), "bf16_matmul: beta must be 0, or 1 for fp32 C");
  if (m == 0 || n == 0) return;
  KL_CHECK(k > 0, "bf16_matmul: k must be positive");
  // One per thread that calls it (the trainer's main thread; tests may call from others).
  thread_local Bf16Matmul matmul;
  matmul.run(trans_a, trans_b, m, n, k, a, lda, b, ldb, bias, beta, c, ldc);
}
#else
bool have_onednn() { return false; }

void onednn_sgemm(bool, bool, int, int, int, float, const float*, int, const float*, int, float, float*, int) {
  KL_CHECK(false, "onednn_sgemm: built without oneDNN");
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
