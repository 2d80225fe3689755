// Dev-only comparison (issue 5): the project's FP32 GEMM against OpenBLAS sgemm on the Vim
// linear shapes, same threads, same NT layout (C[M,N] = A[M,K] · W[N,K]ᵀ). Built only when CMake
// finds Debian's libopenblas (apt install libopenblas-dev); OpenBLAS is never a dependency of
// the package. Usage: bench_gemm_vs_openblas [threads (default: all cores)] [iters (default 20)]
// Prints a table, then one JSON line per shape: {"bench":"gemm-vs-openblas","m","n","k",
// "threads","ptq4vm_ms","openblas_ms","ratio"} with ratio = openblas_ms / ptq4vm_ms (≥ 1: ours faster).
#include <cblas.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <random>
#include <vector>

#include "ptq4vm/gemm.h"
#include "ptq4vm/runtime.h"

extern "C" void openblas_set_num_threads(int);

namespace {

// Median wall time of fn in ms over iters runs, after two warm-up runs.
double median_ms(int iters, const std::function<void()>& fn) {
  fn();
  fn();
  std::vector<double> t;
  for (int i = 0; i < iters; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    fn();
    t.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  const int threads = argc > 1 ? std::atoi(argv[1]) : ptq4vm::num_threads();
  const int iters = argc > 2 ? std::atoi(argv[2]) : 20;
  if (threads < 1 || iters < 1) {
    std::fprintf(stderr, "usage: %s [threads ≥ 1] [iters ≥ 1]\n", argv[0]);
    return 2;
  }
  ptq4vm::set_num_threads(threads);
  openblas_set_num_threads(threads);
  // Vim-Ti (M = 8 images × 197 tokens): in_proj, out_proj, x_proj, dt_proj; Vim-S in_proj.
  const int64_t shapes[][3] = {{1576, 768, 192}, {1576, 192, 384}, {1576, 44, 384}, {1576, 384, 12}, {1576, 1536, 384}};
  std::mt19937 rng(5);
  std::uniform_real_distribution<float> dist(-1.f, 1.f);
  std::printf("%6s %6s %6s  %12s %12s %8s   (%d threads, median of %d)\n", "M", "N", "K", "ptq4vm ms", "openblas ms",
              "ratio", threads, iters);
  std::vector<char> json;
  for (const auto& s : shapes) {
    const int64_t M = s[0], N = s[1], K = s[2];
    std::vector<float> A(size_t(M * K)), W(size_t(N * K)), C1(size_t(M * N)), C2(size_t(M * N));
    for (auto& v : A) v = dist(rng);
    for (auto& v : W) v = dist(rng);
    const double ours = median_ms(iters, [&] {
      ptq4vm::gemm_f32(false, true, M, N, K, A.data(), K, W.data(), K, nullptr, false, C1.data(), N);
    });
    const double blas = median_ms(iters, [&] {
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(M), int(N), int(K), 1.f, A.data(), int(K), W.data(),
                  int(K), 0.f, C2.data(), int(N));
    });
    // The two must compute the same product (a wrong fast kernel would make the comparison moot).
    double err = 0, ref = 1e-30;
    for (size_t i = 0; i < C1.size(); ++i) {
      err = std::max(err, double(std::fabs(C1[i] - C2[i])));
      ref = std::max(ref, double(std::fabs(C2[i])));
    }
    if (err / ref > 1e-5) {
      std::fprintf(stderr, "results differ at %lldx%lldx%lld: rel err %g\n", (long long)M, (long long)N, (long long)K,
                   err / ref);
      return 1;
    }
    std::printf("%6lld %6lld %6lld  %12.3f %12.3f %8.2f\n", (long long)M, (long long)N, (long long)K, ours, blas,
                blas / ours);
    char line[256];
    std::snprintf(line, sizeof line,
                  "{\"bench\":\"gemm-vs-openblas\",\"m\":%lld,\"n\":%lld,\"k\":%lld,\"threads\":%d,\"ptq4vm_ms\":%.4f,"
                  "\"openblas_ms\":%.4f,\"ratio\":%.3f}\n",
                  (long long)M, (long long)N, (long long)K, threads, ours, blas, blas / ours);
    json.insert(json.end(), line, line + std::char_traits<char>::length(line));
  }
  std::fwrite(json.data(), 1, json.size(), stdout);
  return 0;
}
