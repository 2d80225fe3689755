// Causal conv1d (+ SiLU) backward (train.h): the double instantiation against central finite
// differences of causal_conv1d_f64 (both directions, with and without SiLU, strided, sequences
// shorter than the kernel), the float instantiation on every ISA against the double one.
#include <algorithm>
#include <cmath>
#include <functional>
#include <vector>

#include "harness.h"
#include "ptq4vm/runtime.h"
#include "ptq4vm/train.h"

using namespace ptq4vm;
using ptq4vm::test::Rng;

namespace {

struct ConvCase {
  int64_t B, L, E, K;
  bool reverse, silu, with_bias;
  int64_t pad;
};

struct ConvData {
  ConvCase c;
  int64_t ldx, ldo;
  std::vector<double> x, w, bias, dout, out;
};

ConvData make_conv(const ConvCase& c, uint64_t seed) {
  Rng rng(seed);
  ConvData d;
  d.c = c;
  d.ldx = c.E + c.pad;
  d.ldo = c.E + 2 * c.pad;
  auto fill = [&](std::vector<double>& v, size_t n, float lo, float hi) {
    v.resize(n);
    for (auto& x : v) x = rng.uniform(lo, hi);
  };
  fill(d.x, size_t(c.B * c.L * d.ldx), -2.f, 2.f);
  fill(d.w, size_t(c.E * c.K), -1.f, 1.f);
  fill(d.bias, size_t(c.E), -0.5f, 0.5f);
  fill(d.dout, size_t(c.B * c.L * d.ldo), -1.f, 1.f);
  d.out.assign(d.dout.size(), 0.0);
  return d;
}

double conv_loss(ConvData& d) {
  const ConvCase& c = d.c;
  causal_conv1d_f64(c.B, c.L, c.E, c.K, d.x.data(), d.ldx, d.w.data(), c.with_bias ? d.bias.data() : nullptr,
                    c.reverse, c.silu, d.out.data(), d.ldo);
  double l = 0;
  for (int64_t r = 0; r < c.B * c.L; ++r)
    for (int64_t e = 0; e < c.E; ++e) l += d.out[size_t(r * d.ldo + e)] * d.dout[size_t(r * d.ldo + e)];
  return l;
}

std::vector<double> conv_grad(const ConvData& d, double init = 0.0) {
  const ConvCase& c = d.c;
  std::vector<double> dx(d.x.size(), init);
  causal_conv1d_backward<double>(c.B, c.L, c.E, c.K, d.x.data(), d.ldx, d.w.data(),
                                 c.with_bias ? d.bias.data() : nullptr, c.reverse, c.silu, d.dout.data(), d.ldo,
                                 dx.data(), d.ldx);
  return dx;
}

std::vector<float> conv_grad_f32(const ConvData& d) {
  const ConvCase& c = d.c;
  auto f = [](const std::vector<double>& v) { return std::vector<float>(v.begin(), v.end()); };
  const std::vector<float> x = f(d.x), w = f(d.w), bias = f(d.bias), dout = f(d.dout);
  std::vector<float> dx(d.x.size(), 0.f);
  causal_conv1d_backward<float>(c.B, c.L, c.E, c.K, x.data(), d.ldx, w.data(), c.with_bias ? bias.data() : nullptr,
                                c.reverse, c.silu, dout.data(), d.ldo, dx.data(), d.ldx);
  return dx;
}

void check_conv_fd(const ConvCase& c, uint64_t seed) {
  ConvData d = make_conv(c, seed);
  const std::vector<double> g = conv_grad(d);
  const double h = 1e-5;
  double worst = 0, scale = 1e-3;
  for (double v : g) scale = std::max(scale, std::fabs(v));
  for (int64_t r = 0; r < c.B * c.L; ++r) {
    for (int64_t e = 0; e < d.ldx; ++e) {
      const size_t i = size_t(r * d.ldx + e);
      if (e >= c.E) {
        CHECK_MSG(g[i] == 0.0, "padding column got a gradient");
        continue;
      }
      const double keep = d.x[i];
      d.x[i] = keep + h;
      const double lp = conv_loss(d);
      d.x[i] = keep - h;
      const double lm = conv_loss(d);
      d.x[i] = keep;
      worst = std::max(worst, std::fabs((lp - lm) / (2 * h) - g[i]));
    }
  }
  CHECK_MSG(worst / scale < 1e-7, "dx vs finite differences: rel err " << worst / scale << " (L=" << c.L << " K="
                                                                          << c.K << " reverse=" << c.reverse << ")");
}

}  // namespace

TEST_CASE("train/conv1d backward (f64) matches finite differences, both directions, with SiLU") {
  check_conv_fd({2, 9, 5, 4, false, true, true, 0}, 101);
  check_conv_fd({2, 9, 5, 4, true, true, true, 2}, 102);
}

TEST_CASE("train/conv1d backward (f64) matches finite differences without SiLU or bias") {
  check_conv_fd({1, 7, 3, 3, false, false, false, 1}, 103);
  check_conv_fd({3, 5, 2, 4, true, false, true, 0}, 104);
}

TEST_CASE("train/conv1d backward (f64) handles sequences shorter than the kernel") {
  check_conv_fd({2, 2, 3, 4, false, true, true, 0}, 105);
  check_conv_fd({2, 1, 3, 4, true, true, true, 0}, 106);
}

TEST_CASE("train/conv1d backward float (every ISA) agrees with double on ragged shapes") {
  const ConvCase cases[] = {
      {3, 50, 45, 4, false, true, true, 0},
      {2, 37, 19, 4, true, true, true, 3},
      {2, 11, 33, 3, true, false, false, 1},
  };
  uint64_t seed = 110;
  for (const ConvCase& c : cases) {
    const ConvData d = make_conv(c, seed++);
    const std::vector<double> ref = conv_grad(d);
    const Isa saved = active_isa();
    for (Isa isa : {Isa::Scalar, Isa::Avx2, Isa::Avx512}) {
      if (!set_active_isa(isa)) continue;
      const std::vector<float> g = conv_grad_f32(d);
      set_active_isa(saved);
      double num = 0, den = 1e-30;
      for (size_t i = 0; i < ref.size(); ++i) {
        num = std::max(num, std::fabs(double(g[i]) - ref[i]));
        den = std::max(den, std::fabs(ref[i]));
      }
      CHECK_MSG(num / den < 1e-5, isa_name(isa) << " E=" << c.E << ": rel err " << num / den);
    }
  }
}

TEST_CASE("train/conv1d backward adds into an existing gradient, or overwrites it") {
  const ConvData d = make_conv({2, 6, 7, 4, false, true, true, 0}, 120);
  const std::vector<double> fresh = conv_grad(d), added = conv_grad(d, -1.5);
  for (size_t i = 0; i < fresh.size(); ++i) CHECK(std::fabs(added[i] - (fresh[i] - 1.5)) < 1e-12);
  // accumulate = false: every element of dx is written, whatever it held (float, every ISA).
  const ConvCase& c = d.c;
  auto f = [](const std::vector<double>& v) { return std::vector<float>(v.begin(), v.end()); };
  const std::vector<float> x = f(d.x), w = f(d.w), bias = f(d.bias), dout = f(d.dout);
  const Isa saved = active_isa();
  for (Isa isa : {Isa::Scalar, Isa::Avx2, Isa::Avx512}) {
    if (!set_active_isa(isa)) continue;
    std::vector<float> add(d.x.size(), 0.f), over(d.x.size(), 7.f);
    causal_conv1d_backward<float>(c.B, c.L, c.E, c.K, x.data(), d.ldx, w.data(), bias.data(), c.reverse, c.silu,
                                  dout.data(), d.ldo, add.data(), d.ldx, true);
    causal_conv1d_backward<float>(c.B, c.L, c.E, c.K, x.data(), d.ldx, w.data(), bias.data(), c.reverse, c.silu,
                                  dout.data(), d.ldo, over.data(), d.ldx, false);
    CHECK_MSG(add == over, isa_name(isa) << ": overwrite differs from adding into zeros");
  }
  set_active_isa(saved);
}
