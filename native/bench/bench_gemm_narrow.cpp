// FP32 GEMM on the narrow shapes of JLSS (calibration), forward and backward of x_proj and
// dt_proj at M = 12,800 and 50,432 rows, next to the wide in_proj shape for reference:
//   forward   y  = x·Wᵀ   (NT)     x_proj: M × (R+32) × E      dt_proj: M × E × R
//   backward  dX = dY·W   (NN)     x_proj: M × E × (R+32)      dt_proj: M × R × E
//   weights   dW = dYᵀ·X  (TN)     x_proj: (R+32) × E × M      dt_proj: E × R × M
// with E = 2·D and R = D/16 (dt_rank) for D = 96, 192, 384. Prints one line per case and a
// JSON line. Times: minimum over reps of each call's time (thread CPU time with --cpu-time and
// one thread, else wall time with the pool's threads; PTQ4VM_THREADS sets the count).
//   bench_gemm_narrow [reps] [--cpu-time] [--quick] [--shape TA TB M N K]...  (TA/TB: n or t)
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <random>
#include <string>
#include <vector>

#include "ptq4vm/gemm.h"
#include "ptq4vm/runtime.h"

using namespace ptq4vm;

namespace {

bool g_cpu_time = false;

double now_ms() {
  if (g_cpu_time) {
    timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return double(ts.tv_sec) * 1e3 + double(ts.tv_nsec) * 1e-6;
  }
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

std::vector<float> random_floats(size_t n, uint32_t seed) {
  std::mt19937 g(seed);
  std::uniform_real_distribution<float> d(-1, 1);
  std::vector<float> v(n);
  for (auto& x : v) x = d(g);
  return v;
}

struct Case {
  std::string name;
  bool ta, tb;
  int64_t M, N, K;
};

}  // namespace

int main(int argc, char** argv) {
  int reps = 5;
  bool quick = false;
  std::vector<Case> cases;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--cpu-time") == 0) g_cpu_time = true;
    else if (std::strcmp(argv[i], "--quick") == 0) quick = true;
    else if (std::strcmp(argv[i], "--shape") == 0 && i + 5 < argc) {
      Case c{"custom", argv[i + 1][0] == 't', argv[i + 2][0] == 't', std::atoll(argv[i + 3]), std::atoll(argv[i + 4]),
             std::atoll(argv[i + 5])};
      c.name = std::string("custom ") + (c.ta ? "T" : "N") + (c.tb ? "T" : "N");
      cases.push_back(c);
      i += 5;
    } else reps = std::max(1, std::atoi(argv[i]));
  }
  if (g_cpu_time) set_num_threads(1);
  const bool custom = !cases.empty();
  for (int64_t M : {int64_t(12800), int64_t(50432)}) {
    if (custom) break;
    if (quick && M != 12800) continue;
    for (int64_t D : {96, 192, 384}) {
      const int64_t E = 2 * D, R = D / 16, NX = R + 32;
      const std::string s = " D=" + std::to_string(D) + " M=" + std::to_string(M);
      cases.push_back({"x_proj  fwd NT" + s, false, true, M, NX, E});
      cases.push_back({"dt_proj fwd NT" + s, false, true, M, E, R});
      cases.push_back({"x_proj  dX  NN" + s, false, false, M, E, NX});
      cases.push_back({"dt_proj dX  NN" + s, false, false, M, R, E});
      cases.push_back({"x_proj  dW  TN" + s, true, false, NX, E, M});
      cases.push_back({"dt_proj dW  TN" + s, true, false, E, R, M});
    }
    cases.push_back({"in_proj fwd NT D=192 M=" + std::to_string(M), false, true, M, 768, 192});
  }
  std::printf("%-34s %-22s %9s %9s\n", "case", "M x N x K", "min_ms", "GFLOP/s");
  std::string json = "{\"bench\":\"gemm_narrow\",\"threads\":" + std::to_string(num_threads()) +
                     ",\"cpu_time\":" + (g_cpu_time ? "true" : "false") + ",\"cases\":[";
  for (size_t c = 0; c < cases.size(); ++c) {
    const Case& k = cases[c];
    // Stored shapes: op(A) is M×K (A stored K×M when transposed), op(B) is K×N (N×K when transposed).
    const int64_t lda = k.ta ? k.M : k.K, ldb = k.tb ? k.K : k.N;
    auto A = random_floats(size_t(k.M * k.K), 1), B = random_floats(size_t(k.N * k.K), 2);
    std::vector<float> C(size_t(k.M * k.N));
    gemm_f32(k.ta, k.tb, k.M, k.N, k.K, A.data(), lda, B.data(), ldb, nullptr, false, C.data(), k.N);
    double best = 1e30;
    for (int r = 0; r < reps; ++r) {
      const double t0 = now_ms();
      gemm_f32(k.ta, k.tb, k.M, k.N, k.K, A.data(), lda, B.data(), ldb, nullptr, false, C.data(), k.N);
      best = std::min(best, now_ms() - t0);
    }
    const double gflops = 2.0 * double(k.M) * double(k.N) * double(k.K) / (best * 1e6);
    char shape[64];
    std::snprintf(shape, sizeof shape, "%lldx%lldx%lld", (long long)k.M, (long long)k.N, (long long)k.K);
    std::printf("%-34s %-22s %9.3f %9.1f\n", k.name.c_str(), shape, best, gflops);
    json += std::string(c ? "," : "") + "{\"case\":\"" + k.name + "\",\"ms\":" + std::to_string(best) +
            ",\"gflops\":" + std::to_string(gflops) + "}";
  }
  std::printf("%s]}\n", json.c_str());
  return 0;
}
