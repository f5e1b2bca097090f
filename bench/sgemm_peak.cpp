// The machine's practical fp32 peak: GFLOP/s of a large square sgemm with the thread count
// kilolayer uses, through OpenBLAS (the library OPENBLAS_CORETYPE steers) or oneDNN (kilolayer's
// fp32 products since issue 16). Prints one number (the best of several repetitions).
//   build/kl_sgemm_peak [size=2048] [threads=2] [reps=5] [openblas|onednn]
#include <cblas.h>
#include <omp.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "src/kernels/cpu/onednn.h"

int main(int argc, char** argv) {
  const int n = argc > 1 ? std::atoi(argv[1]) : 2048;
  const int threads = argc > 2 ? std::atoi(argv[2]) : 2;
  const int reps = argc > 3 ? std::atoi(argv[3]) : 5;
  const std::string library = argc > 4 ? argv[4] : "openblas";
  if (library != "openblas" && !(library == "onednn" && kl::cpu::have_onednn())) {
    std::fprintf(stderr, "kl_sgemm_peak: library must be openblas%s (got '%s')\n",
                 kl::cpu::have_onednn() ? " or onednn" : "", library.c_str());
    return 2;
  }
  omp_set_num_threads(threads);
  std::vector<float> a(size_t(n) * n, 0.5f), b(a.size(), 0.25f), c(a.size(), 0.0f);
  double best = 0;
  for (int r = 0; r < reps; ++r) {
    const auto start = std::chrono::steady_clock::now();
    if (library == "openblas") {
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a.data(), n, b.data(), n, 0.0f,
                  c.data(), n);
    } else {
      kl::cpu::onednn_sgemm(false, false, n, n, n, 1.0f, a.data(), n, b.data(), n, 0.0f, c.data(), n);
    }
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    const double gflops = 2.0 * n * n * double(n) / s / 1e9;
    best = gflops > best ? gflops : best;
  }
  std::printf("%.1f\n", best);
  return 0;
}
