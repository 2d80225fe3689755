// Cost of running a direction of a multi-directional scan (LocalVim, VMamba, LocalVMamba) as
// "gather into the direction's order → the existing forward scan → scatter back", against the
// scan alone, at the real tiny models' shapes. It decides whether the scan kernels need an
// index-array variant: if gather + scatter are a small fraction of a direction's work, they do
// not. Also times the other per-direction ops (causal conv1d, depthwise conv2d, LayerNorm
// token mean) for scale. Prints a table and one JSON line. Not a test.
//   bench_backbone_scan [reps]      (PTQ4VM_THREADS sets the thread count)
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "ptq4vm/conv1d.h"
#include "ptq4vm/conv2d.h"
#include "ptq4vm/layer_norm.h"
#include "ptq4vm/runtime.h"
#include "ptq4vm/scan.h"
#include "ptq4vm/token_permute.h"

using namespace ptq4vm;

namespace {

std::vector<float> random_floats(size_t n, float lo, float hi, uint32_t seed) {
  std::mt19937 g(seed);
  std::uniform_real_distribution<float> d(lo, hi);
  std::vector<float> v(n);
  for (auto& x : v) x = d(g);
  return v;
}

double median_ms(int reps, const std::function<void()>& fn) {
  fn();
  fn();
  std::vector<double> t;
  for (int i = 0; i < reps; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    fn();
    t.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

// A K×K-window order over H×W with pads (-1), as lib/models/common/scan-order.ts builds it.
std::vector<int32_t> window_order(int64_t K, int64_t H, int64_t W) {
  const int64_t Hp = (H + K - 1) / K * K, Wp = (W + K - 1) / K * K, Wg = Wp / K;
  std::vector<int32_t> idx(size_t(Hp * Wp));
  for (int64_t t = 0; t < Hp * Wp; ++t) {
    const int64_t g = t / (K * K), r = (t % (K * K)) / K, c = t % K;
    const int64_t row = g / Wg * K + r, col = g % Wg * K + c;
    idx[size_t(t)] = row < H && col < W ? int32_t(row * W + col) : -1;
  }
  return idx;
}

struct Shape {
  const char* name;
  int64_t B, H, W, E, N, R;
};

}  // namespace

int main(int argc, char** argv) {
  const int reps = argc > 1 ? std::atoi(argv[1]) : 20;
  std::printf("threads %d, isa %s, median of %d\n", num_threads(), isa_name(active_isa()), reps);
  std::printf("%-34s %9s %9s %9s %9s %9s %8s\n", "shape (direction w7)", "scan", "gather", "scatter", "conv", "ln-mean", "perm/scan");
  const Shape shapes[] = {
      {"LocalVim-Ti layer (14x14, Di 384, N 16)", 8, 14, 14, 384, 16, 12},
      {"VMamba-T stage 1 (56x56, Di 96, N 1)", 8, 56, 56, 96, 1, 6},
      {"VMamba-T stage 3 (14x14, Di 384, N 1)", 8, 14, 14, 384, 1, 24},
      {"LocalVMamba-T stage 1 (56x56, Di 192)", 8, 56, 56, 192, 16, 6},
      {"LocalVMamba-T stage 4 (7x7 w7, Di 1536)", 8, 7, 7, 1536, 16, 48},
  };
  std::string json = "{\"bench\":\"backbone_scan\",\"threads\":" + std::to_string(num_threads()) + ",\"rows\":[";
  bool first = true;
  for (const Shape& s : shapes) {
    const int64_t L = s.H * s.W;
    const auto order = window_order(7, s.H, s.W);
    const int64_t Lk = int64_t(order.size());
    auto x = random_floats(size_t(s.B * L * s.E), -1, 1, 1);
    auto delta = random_floats(size_t(s.B * Lk * s.E), -3, 1, 2);
    auto bc = random_floats(size_t(s.B * Lk * 2 * s.N), -1, 1, 3);
    auto A = random_floats(size_t(s.E * s.N), -2, -0.1f, 4);
    auto D = random_floats(size_t(s.E), -1, 1, 5);
    auto bias = random_floats(size_t(s.E), -1, 1, 6);
    auto w = random_floats(size_t(s.E * 9), -0.3f, 0.3f, 7);
    auto ln = random_floats(size_t(s.E), 0.5f, 1.5f, 8);
    auto gate = random_floats(size_t(s.B * s.E), 0, 1, 9);
    std::vector<float> seq(size_t(s.B * Lk * s.E)), y(seq.size()), out(x.size()), conv(x.size()), mean(size_t(s.B * s.E));
    ScanArgs a;
    a.B = s.B; a.L = Lk; a.E = s.E; a.N = s.N;
    a.u = seq.data(); a.ldu = s.E; a.delta = delta.data(); a.lddelta = s.E; a.A = A.data();
    a.Bm = bc.data(); a.ldB = 2 * s.N; a.Cm = bc.data() + s.N; a.ldC = 2 * s.N; a.D = D.data();
    a.delta_bias = bias.data(); a.y = y.data(); a.ldy = s.E;
    const double t_scan = median_ms(reps, [&] { selective_scan_f32(a); });
    const double t_gather = median_ms(reps, [&] {
      gather_tokens_f32(s.B, L, Lk, s.E, x.data(), s.E, order.data(), seq.data(), s.E);
    });
    const double t_scatter = median_ms(reps, [&] {
      scatter_tokens_f32(s.B, Lk, L, s.E, y.data(), s.E, order.data(), gate.data(), true, out.data(), s.E);
    });
    const double t_conv = median_ms(reps, [&] {
      depthwise_conv2d_f32(s.B, s.H, s.W, s.E, x.data(), s.E, 3, w.data(), nullptr, true, conv.data(), s.E);
    });
    const double t_ln = median_ms(reps, [&] {
      layer_norm_token_mean_f32(s.B, Lk, s.E, y.data(), s.E, order.data(), ln.data(), ln.data(), 1e-5f, mean.data());
    });
    const double ratio = (t_gather + t_scatter) / t_scan;
    std::printf("%-34s %8.3fms %8.3fms %8.3fms %8.3fms %8.3fms %7.1f%%\n", s.name, t_scan, t_gather, t_scatter, t_conv, t_ln, 100 * ratio);
    char buf[400];
    std::snprintf(buf, sizeof buf, "%s{\"shape\":\"%s\",\"batch\":%lld,\"steps\":%lld,\"scan_ms\":%.4f,\"gather_ms\":%.4f,\"scatter_ms\":%.4f,\"dwconv_ms\":%.4f,\"ln_mean_ms\":%.4f}",
                  first ? "" : ",", s.name, (long long)s.B, (long long)Lk, t_scan, t_gather, t_scatter, t_conv, t_ln);
    json += buf;
    first = false;
  }
  json += "]}";
  std::printf("%s\n", json.c_str());
  return 0;
}
