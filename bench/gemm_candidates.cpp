// The matrix libraries side by side on the products kilolayer's model runs (issue 16): OpenBLAS,
// oneDNN (its sgemm, and its matmul primitive in fp32 and with bf16 inputs: rounded in the timed
// call, or once beforehand with A as stored or op(A) packed), BLIS and libxsmm, on
// each product of a block's forward and backward pass, and on the small per-head products of the
// attention kernel (16 heads at once, each single-threaded inside one parallel loop, as
// src/kernels/cpu/attention.cpp runs them). Prints GFLOP/s per shape and library (best of several
// timed rounds), and each library's largest deviation from OpenBLAS (bf16: relative to the
// product's scale).
//
//   build/kl_gemm_candidates [d_model=128] [tokens=1024] [threads=2] [seconds per cell=0.2]
#include <blis.h>
#include <cblas.h>
#include <libxsmm.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <oneapi/dnnl/dnnl.hpp>
#include <string>
#include <vector>

namespace {

// One product, row-major: C[m,n] = op(A) op(B) + beta C.
struct Shape {
  std::string name;
  bool ta, tb;
  int m, n, k;
  float beta;
  bool per_head;  // small: 16 copies at once, one per thread-loop iteration
};

using Gemm = std::function<void(const Shape&, const float* a, const float* b, float* c)>;

int lda(const Shape& s) { return s.ta ? s.m : s.k; }
int ldb(const Shape& s) { return s.tb ? s.k : s.n; }

void openblas(const Shape& s, const float* a, const float* b, float* c) {
  cblas_sgemm(CblasRowMajor, s.ta ? CblasTrans : CblasNoTrans, s.tb ? CblasTrans : CblasNoTrans, s.m, s.n, s.k, 1.0f,
              a, lda(s), b, ldb(s), s.beta, c, s.n);
}

void onednn_sgemm(const Shape& s, const float* a, const float* b, float* c) {
  dnnl_sgemm(s.ta ? 'T' : 'N', s.tb ? 'T' : 'N', s.m, s.n, s.k, 1.0f, a, lda(s), b, ldb(s), s.beta, c, s.n);
}

void blis(const Shape& s, const float* a, const float* b, float* c) {
  float one = 1.0f, beta = s.beta;
  // Strides of the matrices as stored (row-major); the trans flags apply op().
  bli_sgemm(s.ta ? BLIS_TRANSPOSE : BLIS_NO_TRANSPOSE, s.tb ? BLIS_TRANSPOSE : BLIS_NO_TRANSPOSE, s.m, s.n, s.k,
            &one, const_cast<float*>(a), lda(s), 1, const_cast<float*>(b), ldb(s), 1, &beta, c, s.n, 1);
}

// Column-major library: C^T = op(B)^T op(A)^T.
void xsmm(const Shape& s, const float* a, const float* b, float* c) {
  const char ta = s.tb ? 'T' : 'N', tb = s.ta ? 'T' : 'N';
  const libxsmm_blasint m = s.n, n = s.m, k = s.k, la = ldb(s), lb = lda(s), lc = s.n;
  const float one = 1.0f;
  if (s.per_head) {
    libxsmm_sgemm(&ta, &tb, &m, &n, &k, &one, b, &la, a, &lb, &s.beta, c, &lc);
  } else {
    libxsmm_sgemm_omp(&ta, &tb, &m, &n, &k, &one, b, &la, a, &lb, &s.beta, c, &lc);
  }
}

// oneDNN's matmul primitive, created once per shape (as a library would cache it). bf16: the fp32
// operands are rounded to bf16 first, the product is accumulated and written in fp32. kBf16 counts
// the rounding in the time (what kilolayer's bf16 did until it kept bf16 activations: this same
// plain loop). kBf16Prestaged and kBf16PackedA time the primitive alone, on operands rounded once,
// which is what kilolayer's bf16 activations give it: A as stored (read transposed when ta), or
// op(A) packed row-major [m, k] (tried for the weight-gradient products and not kept:
// docs/performance.md, bf16 on the CPU).
enum class Mode { kF32, kBf16, kBf16Prestaged, kBf16PackedA };

class OnednnMatmul {
 public:
  explicit OnednnMatmul(Mode mode) : mode_(mode), engine_(dnnl::engine::kind::cpu, 0), stream_(engine_) {}
  void operator()(const Shape& s, const float* a, const float* b, float* c) {
    using dt = dnnl::memory::data_type;
    const bool bf16 = mode_ != Mode::kF32, prestaged = !s.per_head && (mode_ == Mode::kBf16Prestaged || packed_a());
    const bool a_transposed = s.ta && !(packed_a() && !s.per_head);
    const dt in = bf16 ? dt::bf16 : dt::f32;
    const std::string key = s.name + (s.per_head ? "h" : "");
    auto found = cache_.find(key);
    if (found == cache_.end()) {
      const dnnl::memory::dims a_strides = a_transposed ? dnnl::memory::dims{1, s.m} : dnnl::memory::dims{s.k, 1};
      const dnnl::memory::dims b_strides = s.tb ? dnnl::memory::dims{1, s.k} : dnnl::memory::dims{s.n, 1};
      dnnl::memory::desc a_md({s.m, s.k}, in, a_strides), b_md({s.k, s.n}, in, b_strides),
          c_md({s.m, s.n}, dt::f32, dnnl::memory::dims{s.n, 1});
      dnnl::primitive_attr attr;
      if (s.beta != 0.0f) {
        dnnl::post_ops ops;
        ops.append_sum(s.beta);
        attr.set_post_ops(ops);
      }
      dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(a_md, b_md, c_md), attr, engine_);
      found = cache_.emplace(key, Cached{dnnl::matmul(pd), a_md, b_md, c_md}).first;
      a16_.resize(std::max<size_t>(a16_.size(), size_t(s.m) * s.k * 16));
      b16_.resize(std::max<size_t>(b16_.size(), size_t(s.k) * s.n * 16));
    }
    Cached& p = found->second;
    const void* a_in = a;
    const void* b_in = b;
    if (bf16) {
      const int t = s.per_head ? omp_get_thread_num() : 0;
      uint16_t* a16 = a16_.data() + size_t(t) * s.m * s.k;
      uint16_t* b16 = b16_.data() + size_t(t) * s.k * s.n;
      if (!prestaged || p.staged_a != a || p.staged_b != b) {
        // Staged as stored: rows x cols of the operand; with op(A) packed, A's transpose.
        const bool pack = !a_transposed && s.ta;
        to_bf16(a16, a, s.ta ? s.k : s.m, s.ta ? s.m : s.k, pack, !s.per_head);
        to_bf16(b16, b, s.tb ? s.n : s.k, s.tb ? s.k : s.n, false, !s.per_head);
        p.staged_a = a, p.staged_b = b;
      }
      a_in = a16;
      b_in = b16;
    }
    dnnl::memory am(p.a, engine_, const_cast<void*>(a_in)), bm(p.b, engine_, const_cast<void*>(b_in)),
        cm(p.c, engine_, c);
    p.prim.execute(stream_, {{DNNL_ARG_SRC, am}, {DNNL_ARG_WEIGHTS, bm}, {DNNL_ARG_DST, cm}});
    stream_.wait();
  }

  // Round the packed rows x cols to nearest even (the values are finite); `transpose` writes
  // [cols, rows].
  static void to_bf16(uint16_t* out, const float* in, int64_t rows, int64_t cols, bool transpose, bool parallel) {
#pragma omp parallel for schedule(static) if (parallel)
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t j = 0; j < cols; ++j) {
        uint32_t u;
        std::memcpy(&u, &in[r * cols + j], 4);
        out[transpose ? j * rows + r : r * cols + j] = static_cast<uint16_t>((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
      }
    }
  }

 private:
  bool packed_a() const { return mode_ == Mode::kBf16PackedA; }
  struct Cached {
    dnnl::matmul prim;
    dnnl::memory::desc a, b, c;
    const float* staged_a = nullptr;  // the operands a16_, b16_ hold (kBf16Prestaged, kBf16PackedA)
    const float* staged_b = nullptr;
  };
  Mode mode_;
  dnnl::engine engine_;
  dnnl::stream stream_;
  std::map<std::string, Cached> cache_;
  std::vector<uint16_t> a16_, b16_;
};

constexpr int kHeads = 16;

struct Operands {
  std::vector<float> a, b, c;
  explicit Operands(const Shape& s) {
    const int copies = s.per_head ? kHeads : 1;
    a.resize(size_t(s.m) * s.k * copies);
    b.resize(size_t(s.k) * s.n * copies);
    c.assign(size_t(s.m) * s.n * copies, 0.0f);
    uint32_t x = 12345;
    auto next = [&x] {
      x = x * 1664525u + 1013904223u;
      return float(x >> 8) / float(1u << 24) - 0.5f;
    };
    for (float& v : a) v = next();
    for (float& v : b) v = next();
  }
};

void run_once(const Gemm& g, const Shape& s, Operands& o) {
  if (!s.per_head) {
    g(s, o.a.data(), o.b.data(), o.c.data());
    return;
  }
#pragma omp parallel for schedule(static)
  for (int h = 0; h < kHeads; ++h) {
    g(s, o.a.data() + size_t(h) * s.m * s.k, o.b.data() + size_t(h) * s.k * s.n, o.c.data() + size_t(h) * s.m * s.n);
  }
}

// GFLOP/s of one timed slice (repeated calls for at least `seconds`).
double slice(const Gemm& g, const Shape& s, Operands& o, double seconds) {
  const double flops = 2.0 * s.m * s.n * double(s.k) * (s.per_head ? kHeads : 1);
  const auto t0 = std::chrono::steady_clock::now();
  int reps = 0;
  double dt = 0;
  do {
    run_once(g, s, o);
    ++reps;
    dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  } while (dt < seconds);
  return flops * reps / dt / 1e9;
}

// Largest |C - C_openblas| over max |C_openblas|, beta = 0.
double deviation(const Gemm& g, Shape s) {
  s.beta = 0;
  Operands want(s), got(s);
  run_once(openblas, s, want);
  run_once(g, s, got);
  double worst = 0, scale = 0;
  for (size_t i = 0; i < want.c.size(); ++i) {
    worst = std::max(worst, double(std::fabs(want.c[i] - got.c[i])));
    scale = std::max(scale, double(std::fabs(want.c[i])));
  }
  return worst / scale;
}

}  // namespace

int main(int argc, char** argv) {
  const int C = argc > 1 ? std::atoi(argv[1]) : 128;
  const int N = argc > 2 ? std::atoi(argv[2]) : 1024;
  const int threads = argc > 3 ? std::atoi(argv[3]) : 2;
  const double seconds = argc > 4 ? std::atof(argv[4]) : 0.2;
  const int F = 4 * C, T = 128, hs = 64;
  omp_set_num_threads(threads);
  bli_thread_set_num_threads(threads);
  libxsmm_init();
  // The products of one block (models/block_impl.h) and of the attention kernel's 32-row blocks.
  const std::vector<Shape> shapes = {
      {"fwd qkv     x W^T", false, true, N, 3 * C, C, 1, false},
      {"fwd proj    x W^T", false, true, N, C, C, 1, false},
      {"fwd fc      x W^T", false, true, N, F, C, 1, false},
      {"fwd fc2     x W^T", false, true, N, C, F, 1, false},
      {"bwd qkv dx  dy W ", false, false, N, C, 3 * C, 0, false},
      {"bwd fc dx   dy W ", false, false, N, C, F, 0, false},
      {"bwd fc2 dx  dy W ", false, false, N, F, C, 0, false},
      {"bwd qkv dW  dy^T x", true, false, 3 * C, C, N, 1, false},
      {"bwd fc dW   dy^T x", true, false, F, C, N, 1, false},
      {"bwd fc2 dW  dy^T x", true, false, C, F, N, 1, false},
      {"att S=QK^T  32xT", false, true, 32, T, hs, 0, true},
      {"att O=PV    32xhs", false, false, 32, hs, T, 0, true},
      {"att dK=dS^TQ", true, false, 32, hs, T, 0, true},
  };
  OnednnMatmul dnnl_f32(Mode::kF32), dnnl_bf16(Mode::kBf16), dnnl_bf16_prestaged(Mode::kBf16Prestaged),
      dnnl_bf16_packed_a(Mode::kBf16PackedA);
  const std::vector<std::pair<std::string, Gemm>> libs = {
      {"OpenBLAS", openblas},
      {"oneDNN sgemm", onednn_sgemm},
      {"oneDNN mm f32", std::ref(dnnl_f32)},
      {"BLIS", blis},
      {"libxsmm", xsmm},
      {"oneDNN mm bf16", std::ref(dnnl_bf16)},
      {"bf16 pre: as is", std::ref(dnnl_bf16_prestaged)},
      {"bf16 pre: op(A)", std::ref(dnnl_bf16_packed_a)},
  };
  std::printf("GFLOP/s, d_model %d, %d token rows, %d threads (attention: %d heads of %d x %d blocks)\n", C, N,
              threads, kHeads, 32, T);
  std::printf("%-20s", "product (m n k)");
  for (const auto& l : libs) std::printf(" %14s", l.first.c_str());
  std::printf("  best fp32\n");
  std::vector<double> dev(libs.size(), 0.0);
  for (const Shape& s : shapes) {
    std::printf("%-20s", s.name.c_str());
    // The libraries take turns, slice by slice, so that a busy machine slows them alike; each
    // keeps its best slice.
    std::vector<Operands> operands;
    for (const auto& l : libs) {
      operands.emplace_back(s);
      Operands& o = operands.back();
      l.second(s, o.a.data(), o.b.data(), o.c.data());  // primitive creation, outside parallel loops
      run_once(l.second, s, o);
    }
    std::vector<double> rate(libs.size(), 0.0);
    for (int round = 0; round < 10; ++round) {
      for (size_t i = 0; i < libs.size(); ++i) {
        rate[i] = std::max(rate[i], slice(libs[i].second, s, operands[i], seconds / 10));
      }
    }
    double best = 0;
    size_t best_i = 0;
    for (size_t i = 0; i < libs.size(); ++i) {
      const double d = deviation(libs[i].second, s);
      if (getenv("KL_DEBUG_DEV")) std::fprintf(stderr, "%s %s %g\n", s.name.c_str(), libs[i].first.c_str(), d);
      dev[i] = std::max(dev[i], d);
      std::printf(" %14.1f", rate[i]);
      if (libs[i].first.find("bf16") == std::string::npos && rate[i] > best) best = rate[i], best_i = i;
    }
    std::printf("  %s\n", libs[best_i].first.c_str());
    std::fflush(stdout);
  }
  std::printf("%-20s", "max rel. deviation");
  for (double d : dev) std::printf(" %14.1e", d);
  std::printf("\n");
  return 0;
}
