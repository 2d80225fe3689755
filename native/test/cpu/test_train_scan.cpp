// Selective scan backward (train.h): the double instantiation against central finite differences
// of selective_scan_f64, the float instantiation (every ISA this CPU has) against the double one,
// strided operands, accumulation into existing gradients, thread-count independence.
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

struct ScanCase {
  int64_t B, L, E, N;
  bool with_z, with_D, with_bias, softplus, reverse;
  double out_scale;
  int64_t pad;  // extra columns per row in every strided operand
};

// Operands in double, each [B·L, cols] with row stride cols + pad; B and C live inside one
// wider buffer like the x_proj output, z beside u like in_proj's output.
struct ScanData {
  ScanCase c;
  int64_t ldu, ldd, ldbc, ldy;
  std::vector<double> xz, delta, A, bc, D, bias, y, dy;
  ScanOperands<double> ops() const {
    ScanOperands<double> s;
    s.B = c.B; s.L = c.L; s.E = c.E; s.N = c.N;
    s.u = xz.data(); s.ldu = ldu;
    s.delta = delta.data(); s.lddelta = ldd;
    s.A = A.data();
    s.Bm = bc.data() + 1; s.ldB = ldbc;  // column 0 plays dt's part of x_proj's output
    s.Cm = bc.data() + 1 + c.N; s.ldC = ldbc;
    s.D = c.with_D ? D.data() : nullptr;
    s.z = c.with_z ? xz.data() + c.E : nullptr; s.ldz = ldu;
    s.delta_bias = c.with_bias ? bias.data() : nullptr;
    s.delta_softplus = c.softplus;
    s.reverse = c.reverse;
    s.out_scale = c.out_scale;
    return s;
  }
};

ScanData make_scan(const ScanCase& c, uint64_t seed) {
  Rng rng(seed);
  ScanData d;
  d.c = c;
  const int64_t rows = c.B * c.L;
  d.ldu = 2 * c.E + c.pad;
  d.ldd = c.E + c.pad;
  d.ldbc = 1 + 2 * c.N + c.pad;
  d.ldy = c.E + c.pad;
  auto fill = [&](std::vector<double>& v, size_t n, float lo, float hi) {
    v.resize(n);
    for (auto& x : v) x = rng.uniform(lo, hi);
  };
  fill(d.xz, size_t(rows * d.ldu), -1.5f, 1.5f);
  fill(d.delta, size_t(rows * d.ldd), -3.0f, 1.0f);
  // A few steps well above the softplus threshold (x > 20 passes through).
  for (int64_t r = 0; r < rows; r += 5) d.delta[size_t(r * d.ldd)] = 24.0 + rng.uniform(0.f, 2.f);
  fill(d.A, size_t(c.E * c.N), -2.0f, -0.05f);
  fill(d.bc, size_t(rows * d.ldbc), -1.0f, 1.0f);
  fill(d.D, size_t(c.E), -1.0f, 1.0f);
  fill(d.bias, size_t(c.E), -1.0f, 0.5f);
  fill(d.dy, size_t(rows * d.ldy), -1.0f, 1.0f);
  d.y.assign(size_t(rows * d.ldy), 0.0);
  return d;
}

// loss = Σ dy ⊙ y, so ∂loss/∂y = dy.
double scan_loss(ScanData& d) {
  selective_scan_f64(d.ops(), false, d.y.data(), d.ldy);
  double l = 0;
  for (int64_t r = 0; r < d.c.B * d.c.L; ++r)
    for (int64_t e = 0; e < d.c.E; ++e) l += d.y[size_t(r * d.ldy + e)] * d.dy[size_t(r * d.ldy + e)];
  return l;
}

struct ScanGradBuffers {
  std::vector<double> du, ddelta, dbc, dz;
};

ScanGradBuffers scan_grads(const ScanData& d, double init = 0.0) {
  ScanGradBuffers g;
  const int64_t rows = d.c.B * d.c.L;
  g.du.assign(size_t(rows * d.ldu), init);  // du in columns [0, E), dz in [E, 2E): like xz
  g.ddelta.assign(size_t(rows * d.ldd), init);
  g.dbc.assign(size_t(rows * d.ldbc), init);
  ScanGrads<double> sg;
  sg.dy = d.dy.data(); sg.lddy = d.ldy;
  sg.du = g.du.data(); sg.lddu = d.ldu;
  sg.ddelta = g.ddelta.data(); sg.ldddelta = d.ldd;
  sg.dB = g.dbc.data() + 1; sg.lddB = d.ldbc;
  sg.dC = g.dbc.data() + 1 + d.c.N; sg.lddC = d.ldbc;
  sg.dz = d.c.with_z ? g.du.data() + d.c.E : nullptr; sg.lddz = d.ldu;
  selective_scan_backward(d.ops(), sg);
  return g;
}

// Largest |finite difference − analytic| over the used entries of one operand, relative to the
// largest analytic magnitude (≥ 1e-3 so an all-tiny gradient is not divided by ~0).
double fd_error(ScanData& d, std::vector<double>& param, const std::vector<double>& grad, int64_t rows,
                int64_t ld, int64_t col0, int64_t cols) {
  const double h = 1e-5;
  double worst = 0, scale = 1e-3;
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = col0; j < col0 + cols; ++j) scale = std::max(scale, std::fabs(grad[size_t(r * ld + j)]));
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t j = col0; j < col0 + cols; ++j) {
      double& p = param[size_t(r * ld + j)];
      const double keep = p;
      p = keep + h;
      const double lp = scan_loss(d);
      p = keep - h;
      const double lm = scan_loss(d);
      p = keep;
      worst = std::max(worst, std::fabs((lp - lm) / (2 * h) - grad[size_t(r * ld + j)]));
    }
  }
  return worst / scale;
}

void check_scan_fd(const ScanCase& c, uint64_t seed) {
  ScanData d = make_scan(c, seed);
  const ScanGradBuffers g = scan_grads(d);
  const int64_t rows = c.B * c.L;
  const double tol = 1e-6;
  double e;
  e = fd_error(d, d.xz, g.du, rows, d.ldu, 0, c.E);
  CHECK_MSG(e < tol, "du vs finite differences: rel err " << e);
  e = fd_error(d, d.delta, g.ddelta, rows, d.ldd, 0, c.E);
  CHECK_MSG(e < tol, "ddelta vs finite differences: rel err " << e);
  e = fd_error(d, d.bc, g.dbc, rows, d.ldbc, 1, c.N);
  CHECK_MSG(e < tol, "dB vs finite differences: rel err " << e);
  e = fd_error(d, d.bc, g.dbc, rows, d.ldbc, 1 + c.N, c.N);
  CHECK_MSG(e < tol, "dC vs finite differences: rel err " << e);
  if (c.with_z) {
    e = fd_error(d, d.xz, g.du, rows, d.ldu, c.E, c.E);
    CHECK_MSG(e < tol, "dz vs finite differences: rel err " << e);
  }
  // Untouched padding and x_proj's dt column stay zero: the kernel writes only its operands.
  for (int64_t r = 0; r < rows; ++r) {
    CHECK(g.dbc[size_t(r * d.ldbc)] == 0.0);
    for (int64_t j = 1 + 2 * c.N; j < d.ldbc; ++j) CHECK(g.dbc[size_t(r * d.ldbc + j)] == 0.0);
  }
}

// The float instantiation on the same operands (cast), compared with the double gradients.
struct FloatRun {
  std::vector<float> du, ddelta, dbc;
};
FloatRun scan_grads_f32(const ScanData& d) {
  auto f = [](const std::vector<double>& v) { return std::vector<float>(v.begin(), v.end()); };
  const std::vector<float> xz = f(d.xz), delta = f(d.delta), A = f(d.A), bc = f(d.bc), D = f(d.D),
                           bias = f(d.bias), dy = f(d.dy);
  const ScanCase& c = d.c;
  ScanOperands<float> s;
  s.B = c.B; s.L = c.L; s.E = c.E; s.N = c.N;
  s.u = xz.data(); s.ldu = d.ldu;
  s.delta = delta.data(); s.lddelta = d.ldd;
  s.A = A.data();
  s.Bm = bc.data() + 1; s.ldB = d.ldbc;
  s.Cm = bc.data() + 1 + c.N; s.ldC = d.ldbc;
  s.D = c.with_D ? D.data() : nullptr;
  s.z = c.with_z ? xz.data() + c.E : nullptr; s.ldz = d.ldu;
  s.delta_bias = c.with_bias ? bias.data() : nullptr;
  s.delta_softplus = c.softplus;
  s.reverse = c.reverse;
  s.out_scale = float(c.out_scale);
  const int64_t rows = c.B * c.L;
  FloatRun out;
  out.du.assign(size_t(rows * d.ldu), 0.f);
  out.ddelta.assign(size_t(rows * d.ldd), 0.f);
  out.dbc.assign(size_t(rows * d.ldbc), 0.f);
  ScanGrads<float> g;
  g.dy = dy.data(); g.lddy = d.ldy;
  g.du = out.du.data(); g.lddu = d.ldu;
  g.ddelta = out.ddelta.data(); g.ldddelta = d.ldd;
  g.dB = out.dbc.data() + 1; g.lddB = d.ldbc;
  g.dC = out.dbc.data() + 1 + c.N; g.lddC = d.ldbc;
  g.dz = c.with_z ? out.du.data() + c.E : nullptr; g.lddz = d.ldu;
  selective_scan_backward(s, g);
  return out;
}

double rel_err(const std::vector<float>& a, const std::vector<double>& b) {
  double num = 0, den = 1e-30;
  for (size_t i = 0; i < b.size(); ++i) {
    num = std::max(num, std::fabs(double(a[i]) - b[i]));
    den = std::max(den, std::fabs(b[i]));
  }
  return num / den;
}

// Runs fn once per ISA level this CPU supports, restoring the active level afterwards.
void for_each_isa(const std::function<void(Isa)>& fn) {
  const Isa saved = active_isa();
  for (Isa isa : {Isa::Scalar, Isa::Avx2, Isa::Avx512}) {
    if (!set_active_isa(isa)) continue;
    try {
      fn(isa);
    } catch (...) {
      set_active_isa(saved);
      throw;
    }
  }
  set_active_isa(saved);
}

}  // namespace

TEST_CASE("train/scan backward (f64) matches finite differences: gated, softplus, forward") {
  check_scan_fd({2, 7, 5, 3, true, true, true, true, false, 0.7, 0}, 11);
}

TEST_CASE("train/scan backward (f64) matches finite differences: reverse, strided operands") {
  check_scan_fd({2, 6, 4, 5, true, true, true, true, true, 1.0, 3}, 12);
}

TEST_CASE("train/scan backward (f64) matches finite differences: no z, no D, no softplus") {
  check_scan_fd({1, 9, 3, 4, false, false, false, false, false, 0.5, 1}, 13);
  check_scan_fd({3, 4, 2, 2, false, true, true, true, true, 1.0, 0}, 14);
}

TEST_CASE("train/scan backward float (every ISA) agrees with double on ragged shapes") {
  const ScanCase cases[] = {
      {3, 37, 45, 16, true, true, true, true, false, 0.5, 0},
      {2, 23, 19, 7, true, true, true, true, true, 1.0, 5},
      {2, 11, 33, 16, false, false, true, false, true, 1.0, 2},
      {1, 1, 1, 1, true, true, true, true, false, 1.0, 0},
  };
  uint64_t seed = 20;
  for (const ScanCase& c : cases) {
    ScanData d = make_scan(c, seed++);
    const ScanGradBuffers ref = scan_grads(d);
    for_each_isa([&](Isa isa) {
      const FloatRun f = scan_grads_f32(d);
      const double eu = rel_err(f.du, ref.du), ed = rel_err(f.ddelta, ref.ddelta), ebc = rel_err(f.dbc, ref.dbc);
      CHECK_MSG(eu < 2e-5 && ed < 2e-5 && ebc < 2e-5,
                isa_name(isa) << " E=" << c.E << " N=" << c.N << ": du " << eu << " ddelta " << ed << " dB|dC " << ebc);
    });
  }
}

TEST_CASE("train/scan backward float (every ISA) agrees with double when decays underflow") {
  // |dt·A·log2 e| far beyond 125 (the forward scans' clamp of the decay exponent): those decays
  // are below 2^−125 and contribute nothing either way.
  ScanData d = make_scan({2, 17, 21, 16, true, true, true, true, false, 1.0, 0}, 70);
  for (auto& a : d.A) a *= 12.0;
  const ScanGradBuffers ref = scan_grads(d);
  for_each_isa([&](Isa isa) {
    const FloatRun f = scan_grads_f32(d);
    bool finite = true;
    for (float v : f.du) finite = finite && std::isfinite(v);
    for (float v : f.ddelta) finite = finite && std::isfinite(v);
    const double eu = rel_err(f.du, ref.du), ed = rel_err(f.ddelta, ref.ddelta), ebc = rel_err(f.dbc, ref.dbc);
    CHECK_MSG(finite && eu < 2e-5 && ed < 2e-5 && ebc < 2e-5,
              isa_name(isa) << ": du " << eu << " ddelta " << ed << " dB|dC " << ebc);
  });
}

TEST_CASE("train/scan backward adds into existing gradients and skips null outputs") {
  ScanData d = make_scan({2, 8, 6, 4, true, true, true, true, false, 1.0, 0}, 31);
  const ScanGradBuffers fresh = scan_grads(d);
  const ScanGradBuffers added = scan_grads(d, 0.25);
  for (size_t i = 0; i < fresh.du.size(); ++i) CHECK(std::fabs(added.du[i] - (fresh.du[i] + 0.25)) < 1e-12);
  for (size_t i = 0; i < fresh.dbc.size(); ++i) CHECK(std::fabs(added.dbc[i] - (fresh.dbc[i] + 0.25)) < 1e-12);
  // Only ddelta requested: the same values, nothing else written.
  std::vector<double> ddelta(fresh.ddelta.size(), 0.0);
  ScanGrads<double> g;
  g.dy = d.dy.data(); g.lddy = d.ldy;
  g.ddelta = ddelta.data(); g.ldddelta = d.ldd;
  selective_scan_backward(d.ops(), g);
  for (size_t i = 0; i < ddelta.size(); ++i) CHECK(std::fabs(ddelta[i] - fresh.ddelta[i]) < 1e-12);
}

TEST_CASE("train/scan backward float is identical with 1 and 2 threads") {
  ScanData d = make_scan({5, 13, 40, 16, true, true, true, true, true, 1.0, 0}, 41);
  const int saved = num_threads();
  set_num_threads(1);
  const FloatRun one = scan_grads_f32(d);
  set_num_threads(2);
  const FloatRun two = scan_grads_f32(d);
  set_num_threads(saved);
  CHECK(one.du == two.du);
  CHECK(one.ddelta == two.ddelta);
  CHECK(one.dbc == two.dbc);
}

namespace {

// Both directions in one call (dir 1 reversed, with its own operands, sharing z, dy and dz)
// against two single-direction calls adding into the same dz.
template <typename T>
struct BidirRun {
  std::vector<T> du[2], ddelta[2], dbc[2], dz;
};

template <typename T>
std::vector<T> cast_vec(const std::vector<double>& v) {
  return std::vector<T>(v.begin(), v.end());
}

template <typename T>
BidirRun<T> bidir_grads(const ScanData& f, const ScanData& b, bool fused, bool accumulate, T init) {
  const ScanCase& c = f.c;
  const int64_t rows = c.B * c.L;
  // Operands of both directions in T; z and dy are direction 0's.
  std::vector<T> xz[2] = {cast_vec<T>(f.xz), cast_vec<T>(b.xz)}, delta[2] = {cast_vec<T>(f.delta), cast_vec<T>(b.delta)};
  std::vector<T> A[2] = {cast_vec<T>(f.A), cast_vec<T>(b.A)}, bc[2] = {cast_vec<T>(f.bc), cast_vec<T>(b.bc)};
  std::vector<T> D[2] = {cast_vec<T>(f.D), cast_vec<T>(b.D)}, bias[2] = {cast_vec<T>(f.bias), cast_vec<T>(b.bias)};
  const std::vector<T> dy = cast_vec<T>(f.dy);
  BidirRun<T> out;
  out.dz.assign(size_t(rows * f.ldu), init);
  ScanOperands<T> s[2];
  ScanGrads<T> g[2];
  for (int k = 0; k < 2; ++k) {
    out.du[k].assign(size_t(rows * f.ldu), init);
    out.ddelta[k].assign(size_t(rows * f.ldd), init);
    out.dbc[k].assign(size_t(rows * f.ldbc), init);
    ScanOperands<T>& o = s[k];
    o.B = c.B; o.L = c.L; o.E = c.E; o.N = c.N;
    o.u = xz[k].data(); o.ldu = f.ldu;
    o.delta = delta[k].data(); o.lddelta = f.ldd;
    o.A = A[k].data();
    o.Bm = bc[k].data() + 1; o.ldB = f.ldbc;
    o.Cm = bc[k].data() + 1 + c.N; o.ldC = f.ldbc;
    o.D = c.with_D ? D[k].data() : nullptr;
    o.z = c.with_z ? xz[0].data() + c.E : nullptr; o.ldz = f.ldu;
    o.delta_bias = c.with_bias ? bias[k].data() : nullptr;
    o.delta_softplus = c.softplus;
    o.reverse = k == 1;
    o.out_scale = T(c.out_scale);
    ScanGrads<T>& gk = g[k];
    gk.dy = dy.data(); gk.lddy = f.ldy;
    gk.du = out.du[k].data(); gk.lddu = f.ldu;
    gk.ddelta = out.ddelta[k].data(); gk.ldddelta = f.ldd;
    gk.dB = out.dbc[k].data() + 1; gk.lddB = f.ldbc;
    gk.dC = out.dbc[k].data() + 1 + c.N; gk.lddC = f.ldbc;
    gk.dz = c.with_z ? out.dz.data() : nullptr; gk.lddz = f.ldu;
  }
  if (fused) {
    g[1].dz = nullptr;
    selective_scan_backward<T>(s, g, 2, accumulate);
  } else {
    selective_scan_backward<T>(s[0], g[0]);
    selective_scan_backward<T>(s[1], g[1]);
  }
  return out;
}

template <typename T>
double max_rel(const std::vector<T>& a, const std::vector<T>& b) {
  double num = 0, den = 1e-30;
  for (size_t i = 0; i < a.size(); ++i) {
    num = std::max(num, std::fabs(double(a[i]) - double(b[i])));
    den = std::max(den, std::fabs(double(b[i])));
  }
  return num / den;
}

template <typename T>
double bidir_diff(const BidirRun<T>& x, const BidirRun<T>& y) {
  double e = max_rel(x.dz, y.dz);
  for (int k = 0; k < 2; ++k)
    e = std::max({e, max_rel(x.du[k], y.du[k]), max_rel(x.ddelta[k], y.ddelta[k]), max_rel(x.dbc[k], y.dbc[k])});
  return e;
}

}  // namespace

TEST_CASE("train/scan backward of both directions in one pass equals two single passes (f64, float every ISA)") {
  const ScanCase cases[] = {
      {2, 13, 37, 16, true, true, true, true, false, 0.5, 3},
      {3, 9, 20, 5, true, true, true, true, false, 0.5, 0},
      {2, 7, 18, 16, false, true, false, true, false, 1.0, 1},
  };
  uint64_t seed = 60;
  for (const ScanCase& c : cases) {
    const ScanData f = make_scan(c, seed), b = make_scan(c, seed + 100);
    ++seed;
    const BidirRun<double> ref = bidir_grads<double>(f, b, false, true, 0.0);
    const double e64 = bidir_diff(bidir_grads<double>(f, b, true, true, 0.0), ref);
    CHECK_MSG(e64 < 1e-12, "f64 N=" << c.N << ": fused vs single passes " << e64);
    for_each_isa([&](Isa isa) {
      const BidirRun<float> single = bidir_grads<float>(f, b, false, true, 0.f);
      const BidirRun<float> fused = bidir_grads<float>(f, b, true, true, 0.f);
      // accumulate = false writes every requested output, whatever it held before (the rest of
      // each strided array keeps it).
      BidirRun<float> over = bidir_grads<float>(f, b, true, false, 5.f);
      const int64_t rows = c.B * c.L;
      auto reset_unused = [&](std::vector<float>& v, int64_t ld, int64_t c0, int64_t c1) {
        for (int64_t r = 0; r < rows; ++r)
          for (int64_t j = 0; j < ld; ++j)
            if (j < c0 || j >= c1) {
              CHECK(v[size_t(r * ld + j)] == 5.f);
              v[size_t(r * ld + j)] = 0.f;
            }
      };
      if (c.with_z) reset_unused(over.dz, f.ldu, 0, c.E);
      for (int k = 0; k < 2; ++k) {
        reset_unused(over.du[k], f.ldu, 0, c.E);
        reset_unused(over.ddelta[k], f.ldd, 0, c.E);
        reset_unused(over.dbc[k], f.ldbc, 1, 1 + 2 * c.N);
      }
      if (!c.with_z) std::fill(over.dz.begin(), over.dz.end(), 0.f);
      const double e = bidir_diff(fused, single), eo = bidir_diff(over, fused);
      CHECK_MSG(e < 1e-6, isa_name(isa) << " N=" << c.N << ": fused vs single passes " << e);
      CHECK_MSG(eo == 0.0, isa_name(isa) << " N=" << c.N << ": overwrite vs add into zeros " << eo);
    });
  }
}
