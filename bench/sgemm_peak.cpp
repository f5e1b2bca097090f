// The machine's practical fp32 peak: GFLOP/s of a large square sgemm through the same OpenBLAS
// and thread count kilolayer uses. Prints one number (the best of several repetitions).
//   build/kl_sgemm_peak [size=2048] [threads=2] [reps=5]
#include <cblas.h>
#include <omp.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <vector>

int main(int argc, char** argv) {
  const int n = argc > 1 ? std::atoi(argv[1]) : 2048;
  const int threads = argc > 2 ? std::atoi(argv[2]) : 2;
  const int reps = argc > 3 ? std::atoi(argv[3]) : 5;
  omp_set_num_threads(threads);
  std::vector<float> a(size_t(n) * n, 0.5f), b(a.size(), 0.25f), c(a.size(), 0.0f);
  double best = 0;
  for (int r = 0; r < reps; ++r) {
    const auto start = std::chrono::steady_clock::now();
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a.data(), n, b.data(), n,
                0.0f, c.data(), n);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    const double gflops = 2.0 * n * n * double(n) / s / 1e9;
    best = gflops > best ? gflops : best;
  }
  std::printf("%.1f\n", best);
  return 0;
}
