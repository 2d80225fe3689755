// Fake quantizers (train.h). The straight-through gradient is the exact gradient of the
// surrogate in which each element's rounding residual c = round(v) − v and its clamp region are
// frozen at the current point (inside: out = a + c·s; clamped: out = (bound − z)·s), so the
// double backward is checked against central differences of that surrogate. The float kernels
// (every ISA) are checked against a scalar float reference of the same formulas; edge cases
// (exact clamp bounds, ties, constant tokens, all-zero channels, huge outliers) by value.
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

int64_t param_of(int64_t r, int64_t period, bool reverse) {
  const int64_t p = r % period;
  return reverse ? period - 1 - p : p;
}

struct ActData {
  int64_t rows, cols, period;
  bool reverse;
  int qmax;
  std::vector<double> x, smooth, scale, dout;
  std::vector<int32_t> zero;
  ActQuant<double> q() const {
    ActQuant<double> a;
    a.rows = rows; a.cols = cols; a.period = period; a.reverse_period = reverse;
    a.x = x.data(); a.ldx = cols;
    a.smooth = smooth.empty() ? nullptr : smooth.data();
    a.scale = scale.data(); a.zero = zero.data(); a.qmax = qmax;
    return a;
  }
};

ActData make_act(int64_t rows, int64_t cols, int64_t period, bool reverse, int qmax, bool smooth, uint64_t seed) {
  Rng rng(seed);
  ActData d{rows, cols, period, reverse, qmax, {}, {}, {}, {}, {}};
  d.x.resize(size_t(rows * cols));
  for (auto& v : d.x) v = rng.uniform(-3.f, 5.f);
  if (smooth) {
    d.smooth.resize(size_t(cols));
    for (auto& v : d.smooth) v = rng.uniform(0.3f, 3.f);
  }
  // Steps so that a good share of elements clip on both sides.
  d.scale.resize(size_t(period));
  d.zero.resize(size_t(period));
  for (int64_t p = 0; p < period; ++p) {
    d.scale[size_t(p)] = rng.uniform(0.25f, 0.5f) * 6.0 / qmax;
    d.zero[size_t(p)] = int32_t(rng.integer(0, qmax));
  }
  d.dout.resize(d.x.size());
  for (auto& v : d.dout) v = rng.uniform(-1.f, 1.f);
  return d;
}

struct ActGrads {
  std::vector<double> dx, dsmooth, dscale;
};

ActGrads act_backward(const ActData& d) {
  ActGrads g;
  g.dx.assign(d.x.size(), 0.0);
  g.dsmooth.assign(size_t(d.cols), 0.0);
  g.dscale.assign(size_t(d.period), 0.0);
  fake_quant_act_backward<double>(d.q(), d.dout.data(), d.cols, g.dx.data(), d.cols,
                                  d.smooth.empty() ? nullptr : g.dsmooth.data(), g.dscale.data());
  return g;
}

// Frozen-level surrogate loss Σ dout ⊙ out̃ around the point the residuals were taken at.
struct ActSurrogate {
  std::vector<double> c;   // round(v) − v where inside
  std::vector<int> region;  // −1 below, 0 inside, +1 above
};

ActSurrogate freeze_act(const ActData& d) {
  ActSurrogate s;
  for (int64_t r = 0; r < d.rows; ++r) {
    const int64_t p = param_of(r, d.period, d.reverse);
    for (int64_t j = 0; j < d.cols; ++j) {
      const double a = d.x[size_t(r * d.cols + j)] * (d.smooth.empty() ? 1.0 : 1.0 / d.smooth[size_t(j)]);
      const double v = a * (1.0 / d.scale[size_t(p)]);
      const double level = std::nearbyint(v) + d.zero[size_t(p)];
      s.region.push_back(level < 0 ? -1 : level > d.qmax ? 1 : 0);
      s.c.push_back(std::nearbyint(v) - v);
    }
  }
  return s;
}

double act_surrogate_loss(const ActData& d, const ActSurrogate& s) {
  double l = 0;
  for (int64_t r = 0; r < d.rows; ++r) {
    const int64_t p = param_of(r, d.period, d.reverse);
    const double sc = d.scale[size_t(p)], z = d.zero[size_t(p)];
    for (int64_t j = 0; j < d.cols; ++j) {
      const size_t i = size_t(r * d.cols + j);
      const double a = d.x[i] / (d.smooth.empty() ? 1.0 : d.smooth[size_t(j)]);
      const double out = s.region[i] < 0 ? (0 - z) * sc : s.region[i] > 0 ? (d.qmax - z) * sc : a + s.c[i] * sc;
      l += d.dout[i] * out;
    }
  }
  return l;
}

double fd_rel_error(std::vector<double>& param, const std::vector<double>& grad, const std::function<double()>& loss) {
  const double h = 1e-6;
  double worst = 0, scale = 1e-3;
  for (double g : grad) scale = std::max(scale, std::fabs(g));
  for (size_t i = 0; i < param.size(); ++i) {
    const double keep = param[i];
    param[i] = keep + h;
    const double lp = loss();
    param[i] = keep - h;
    const double lm = loss();
    param[i] = keep;
    worst = std::max(worst, std::fabs((lp - lm) / (2 * h) - grad[i]));
  }
  return worst / scale;
}

void check_act_fd(int64_t rows, int64_t cols, int64_t period, bool reverse, int qmax, bool smooth, uint64_t seed) {
  ActData d = make_act(rows, cols, period, reverse, qmax, smooth, seed);
  const ActGrads g = act_backward(d);
  const ActSurrogate s = freeze_act(d);
  int regions[3] = {0, 0, 0};
  for (int r : s.region) regions[r + 1]++;
  CHECK_MSG(regions[0] > 0 && regions[1] > 0 && regions[2] > 0, "test data must clip on both sides");
  auto loss = [&] { return act_surrogate_loss(d, s); };
  double e = fd_rel_error(d.x, g.dx, loss);
  CHECK_MSG(e < 1e-7, "dx vs surrogate finite differences: " << e);
  e = fd_rel_error(d.scale, g.dscale, loss);
  CHECK_MSG(e < 1e-7, "dscale vs surrogate finite differences: " << e);
  if (smooth) {
    e = fd_rel_error(d.smooth, g.dsmooth, loss);
    CHECK_MSG(e < 1e-7, "dsmooth vs surrogate finite differences: " << e);
  }
}

// Scalar float reference of the activation quantizer: forward values and gradients, with the
// per-parameter sums in double.
struct ActRefF32 {
  std::vector<float> out, dx;
  std::vector<double> dsmooth, dscale;
};
ActRefF32 act_ref_f32(const ActQuant<float>& q, const float* dout) {
  ActRefF32 r;
  r.out.resize(size_t(q.rows * q.cols));
  r.dx.assign(r.out.size(), 0.f);
  r.dsmooth.assign(size_t(q.cols), 0.0);
  r.dscale.assign(size_t(q.period), 0.0);
  for (int64_t i = 0; i < q.rows; ++i) {
    const int64_t p = param_of(i, q.period, q.reverse_period);
    const float inv_s = 1.0f / q.scale[p];
    const float z = float(q.zero[p]);
    for (int64_t j = 0; j < q.cols; ++j) {
      const float ism = q.smooth ? 1.0f / q.smooth[j] : 1.0f;
      const float a = q.x[i * q.ldx + j] * ism;
      const float v = a * inv_s;
      const float rv = std::nearbyint(v);
      const float level = rv + z;
      const float clamped = std::min(std::max(level, 0.0f), float(q.qmax));
      r.out[size_t(i * q.cols + j)] = (clamped - z) * q.scale[p];
      const float g = dout[i * q.cols + j];
      const bool inside = level >= 0 && level <= float(q.qmax);
      r.dscale[size_t(p)] += double(g) * double(inside ? rv - v : (level < 0 ? -z : float(q.qmax) - z));
      if (inside) {
        r.dx[size_t(i * q.cols + j)] = g * ism;
        r.dsmooth[size_t(j)] -= double(g) * double(a) * double(ism);
      }
    }
  }
  return r;
}

struct ActF32 {
  std::vector<float> x, smooth, scale, dout;
  std::vector<int32_t> zero;
  ActQuant<float> q;
};
ActF32 to_f32(const ActData& d) {
  ActF32 f;
  f.x.assign(d.x.begin(), d.x.end());
  f.smooth.assign(d.smooth.begin(), d.smooth.end());
  f.scale.assign(d.scale.begin(), d.scale.end());
  f.dout.assign(d.dout.begin(), d.dout.end());
  f.zero = d.zero;
  f.q.rows = d.rows; f.q.cols = d.cols; f.q.period = d.period; f.q.reverse_period = d.reverse;
  f.q.x = f.x.data(); f.q.ldx = d.cols;
  f.q.smooth = f.smooth.empty() ? nullptr : f.smooth.data();
  f.q.scale = f.scale.data(); f.q.zero = f.zero.data(); f.q.qmax = d.qmax;
  return f;
}

double rel(const std::vector<float>& a, const std::vector<double>& b) {
  double num = 0, den = 1e-30;
  for (size_t i = 0; i < b.size(); ++i) {
    num = std::max(num, std::fabs(double(a[i]) - b[i]));
    den = std::max(den, std::fabs(b[i]));
  }
  return num / den;
}

}  // namespace

TEST_CASE("train/act fake-quant backward (f64) matches surrogate finite differences") {
  check_act_fd(12, 7, 4, false, 255, true, 201);
  check_act_fd(10, 5, 5, true, 15, true, 202);
  check_act_fd(9, 6, 1, false, 255, false, 203);
  check_act_fd(7, 3, 7, false, 3, true, 204);
}

TEST_CASE("train/act fake-quant float (every ISA) matches the scalar reference, ragged, strided reductions") {
  const Isa saved = active_isa();
  uint64_t seed = 210;
  for (auto [rows, cols, period, reverse, qmax] :
       {std::tuple<int64_t, int64_t, int64_t, bool, int>{300, 45, 50, false, 255}, {257, 19, 197, true, 15},
        {131, 96, 1, false, 255}, {5, 1, 5, true, 255}}) {
    const ActData d = make_act(rows, cols, period, reverse, qmax, true, seed++);
    ActF32 f = to_f32(d);
    const ActRefF32 ref = act_ref_f32(f.q, f.dout.data());
    for (Isa isa : {Isa::Scalar, Isa::Avx2, Isa::Avx512}) {
      if (!set_active_isa(isa)) continue;
      std::vector<float> out(f.x.size()), dx(f.x.size(), 0.f), dsm(size_t(cols), 0.f), dsc(size_t(period), 0.f);
      std::vector<uint8_t> levels(f.x.size(), 0xEE);
      std::vector<float> dx_over(f.x.size(), -9.f), dsm2(size_t(cols), 0.f), dsc2(size_t(period), 0.f);
      fake_quant_act_forward<float>(f.q, out.data(), cols, levels.data(), cols);
      fake_quant_act_backward<float>(f.q, f.dout.data(), cols, dx.data(), cols, dsm.data(), dsc.data());
      fake_quant_act_backward<float>(f.q, f.dout.data(), cols, dx_over.data(), cols, dsm2.data(), dsc2.data(), false);
      set_active_isa(saved);
      CHECK_MSG(out == ref.out, isa_name(isa) << ": forward differs from the scalar formula");
      CHECK_MSG(dx == ref.dx, isa_name(isa) << ": dx differs");
      CHECK_MSG(dx_over == dx, isa_name(isa) << ": overwriting dx differs from adding into zeros");
      // The levels are those of the values: out = (level − z)·s exactly, and within [0, qmax].
      int bad = 0;
      for (int64_t r = 0; r < rows; ++r) {
        const int64_t p = reverse ? period - 1 - r % period : r % period;
        for (int64_t j = 0; j < cols; ++j) {
          const size_t i = size_t(r * cols + j);
          const float want = (float(levels[i]) - float(f.q.zero[p])) * f.q.scale[p];
          if (levels[i] > qmax || out[i] != want) ++bad;
        }
      }
      CHECK_MSG(bad == 0, isa_name(isa) << ": " << bad << " levels disagree with the fake-quantized values");
      const double es = rel(dsm, ref.dsmooth), ec = rel(dsc, ref.dscale);
      CHECK_MSG(es < 1e-5 && ec < 1e-5, isa_name(isa) << ": dsmooth " << es << " dscale " << ec);
    }
  }
}

TEST_CASE("train/act fake-quant edge cases: exact bounds, ties, constant tokens, zero channels, outliers") {
  // One token position, scale 0.5, zero point 3, qmax 15, no smoothing: v = 2x, level = rne(v) + 3.
  const float xs[] = {
      -1.5f,   // v = −3: level 0 exactly, inside
      6.0f,    // v = 12: level 15 exactly, inside
      -1.75f,  // v = −3.5 → rne −4: level −1, below
      -1.25f,  // v = −2.5 → rne −2 (tie to even): level 1, inside
      6.25f,   // v = 12.5 → rne 12 (tie to even): level 15, inside
      6.75f,   // v = 13.5 → rne 14: level 17, above
      1e30f,   // huge outlier: above, gradient 0, finite
      -1e30f,  // huge negative outlier: below
      0.0f,    // zero: level 3, inside, no σ gradient
  };
  const int64_t cols = int64_t(sizeof(xs) / sizeof(xs[0]));
  const float scale = 0.5f;
  const int32_t zero = 3;
  ActQuant<float> q;
  q.rows = 1; q.cols = cols; q.period = 1; q.x = xs; q.ldx = cols; q.scale = &scale; q.zero = &zero; q.qmax = 15;
  std::vector<float> out(static_cast<size_t>(cols)), dout(static_cast<size_t>(cols), 1.0f), dx(static_cast<size_t>(cols), 0.f);
  float ds = 0;
  fake_quant_act_forward<float>(q, out.data(), cols);
  fake_quant_act_backward<float>(q, dout.data(), cols, dx.data(), cols, nullptr, &ds);
  const float want_out[] = {-1.5f, 6.0f, -1.5f, -1.0f, 6.0f, 6.0f, 6.0f, -1.5f, 0.0f};
  const float want_dx[] = {1, 1, 0, 1, 1, 0, 0, 0, 1};
  for (int64_t j = 0; j < cols; ++j) {
    CHECK_MSG(out[size_t(j)] == want_out[j], "out[" << j << "] = " << out[size_t(j)]);
    CHECK_MSG(dx[size_t(j)] == want_dx[j], "dx[" << j << "] = " << dx[size_t(j)]);
  }
  // ∂/∂s: 0, 0, (0−3), (−2+2.5), (12−12.5), (15−3), (15−3), (0−3), 0
  CHECK_MSG(std::fabs(ds - (-3.0f + 0.5f - 0.5f + 12.0f + 12.0f - 3.0f)) < 1e-5f, "dscale = " << ds);

  // Constant tokens and an all-zero channel, with smoothing: finite gradients, exactly zero σ
  // gradient for the zero channel, and identical rows give identical gradients.
  const int64_t rows = 6, c2 = 5;
  std::vector<float> x(size_t(rows * c2));
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < c2; ++j) x[size_t(r * c2 + j)] = j == 2 ? 0.0f : (r % 3 == 0 ? 0.7f : -0.3f + 0.1f * float(j));
  const float smooth[] = {0.5f, 2.0f, 1.5f, 1.0f, 3.0f};
  const float scales[] = {0.01f, 0.02f, 0.01f};
  const int32_t zeros[] = {128, 100, 0};
  ActQuant<float> q2;
  q2.rows = rows; q2.cols = c2; q2.period = 3; q2.x = x.data(); q2.ldx = c2; q2.smooth = smooth;
  q2.scale = scales; q2.zero = zeros; q2.qmax = 255;
  std::vector<float> g2(x.size(), 1.0f), dx2(x.size(), 0.f), dsm(size_t(c2), 0.f), dsc(3, 0.f);
  fake_quant_act_backward<float>(q2, g2.data(), c2, dx2.data(), c2, dsm.data(), dsc.data());
  for (float v : dx2) CHECK(std::isfinite(v));
  for (float v : dsm) CHECK(std::isfinite(v));
  for (float v : dsc) CHECK(std::isfinite(v));
  CHECK_MSG(dsm[2] == 0.0f, "all-zero channel got a smoothing gradient " << dsm[2]);
  // zero point 0 with x = 0 sits exactly on the lower bound: inside, so the gradient passes.
  CHECK(dx2[size_t(2 * c2 + 2)] == 1.0f / smooth[2]);
  // Rows 0 and 3: the same constant token at the same position.
  for (int64_t j = 0; j < c2; ++j) CHECK(dx2[size_t(j)] == dx2[size_t(3 * c2 + j)]);
}

TEST_CASE("train/act fake-quant backward is identical with 1 and 2 threads") {
  const ActData d = make_act(1000, 37, 197, false, 255, true, 230);
  ActF32 f = to_f32(d);
  auto run = [&] {
    std::vector<float> dx(f.x.size(), 0.f), dsm(37, 0.f), dsc(197, 0.f);
    fake_quant_act_backward<float>(f.q, f.dout.data(), 37, dx.data(), 37, dsm.data(), dsc.data());
    dx.insert(dx.end(), dsm.begin(), dsm.end());
    dx.insert(dx.end(), dsc.begin(), dsc.end());
    return dx;
  };
  const int saved = num_threads();
  set_num_threads(1);
  const std::vector<float> one = run();
  set_num_threads(2);
  const std::vector<float> two = run();
  set_num_threads(saved);
  CHECK(one == two);
}

namespace {

struct WData {
  int64_t rows, cols;
  int qmax;
  std::vector<double> w, smooth, scale, dout;
  WeightQuant<double> q() const {
    WeightQuant<double> a;
    a.rows = rows; a.cols = cols; a.w = w.data(); a.ldw = cols;
    a.smooth = smooth.empty() ? nullptr : smooth.data();
    a.scale = scale.data(); a.qmax = qmax;
    return a;
  }
};

WData make_w(int64_t rows, int64_t cols, int qmax, uint64_t seed) {
  Rng rng(seed);
  WData d{rows, cols, qmax, {}, {}, {}, {}};
  d.w.resize(size_t(rows * cols));
  for (auto& v : d.w) v = rng.uniform(-1.f, 1.f);
  d.smooth.resize(size_t(cols));
  for (auto& v : d.smooth) v = rng.uniform(0.4f, 2.5f);
  d.scale.resize(size_t(rows));
  for (auto& v : d.scale) v = rng.uniform(0.6f, 1.2f) / qmax;  // clips the larger |w·σ|
  d.dout.resize(d.w.size());
  for (auto& v : d.dout) v = rng.uniform(-1.f, 1.f);
  return d;
}

}  // namespace

TEST_CASE("train/weight fake-quant backward (f64) matches surrogate finite differences") {
  for (auto [rows, cols, qmax, seed] : {std::tuple<int64_t, int64_t, int, uint64_t>{6, 9, 127, 301}, {4, 5, 7, 302}}) {
    WData d = make_w(rows, cols, qmax, seed);
    std::vector<double> dw(d.w.size(), 0.0), dsm(size_t(cols), 0.0), dsc(size_t(rows), 0.0);
    fake_quant_weight_backward<double>(d.q(), d.dout.data(), cols, dw.data(), cols, dsm.data(), dsc.data());
    // Frozen residuals and regions.
    std::vector<double> c;
    std::vector<int> region;
    for (int64_t o = 0; o < rows; ++o)
      for (int64_t k = 0; k < cols; ++k) {
        const double v = d.w[size_t(o * cols + k)] * d.smooth[size_t(k)] * (1.0 / d.scale[size_t(o)]);
        const double rv = std::nearbyint(v);
        region.push_back(rv < -qmax ? -1 : rv > qmax ? 1 : 0);
        c.push_back(rv - v);
      }
    int clipped = 0;
    for (int r : region) clipped += r != 0;
    CHECK_MSG(clipped > 0 && clipped < int(region.size()), "test data must clip some weights");
    auto loss = [&] {
      double l = 0;
      for (int64_t o = 0; o < rows; ++o)
        for (int64_t k = 0; k < cols; ++k) {
          const size_t i = size_t(o * cols + k);
          const double s = d.scale[size_t(o)];
          const double out = region[i] != 0 ? region[i] * qmax * s : d.w[i] * d.smooth[size_t(k)] + c[i] * s;
          l += d.dout[i] * out;
        }
      return l;
    };
    double e = fd_rel_error(d.w, dw, loss);
    CHECK_MSG(e < 1e-7, "dw: " << e);
    e = fd_rel_error(d.smooth, dsm, loss);
    CHECK_MSG(e < 1e-7, "dsmooth: " << e);
    e = fd_rel_error(d.scale, dsc, loss);
    CHECK_MSG(e < 1e-7, "dscale: " << e);
  }
}

TEST_CASE("train/weight fake-quant forward, levels and clipping by value") {
  // Row 0: s = 0.1, σ = (1, 2): w·σ/s = (12.5 → 12 tie to even, −200 → −127 clipped).
  const float w[] = {1.25f, -10.0f, 0.05f, 0.0f};
  const float smooth[] = {1.0f, 2.0f};
  const float scale[] = {0.1f, 0.01f};
  WeightQuant<float> q;
  q.rows = 2; q.cols = 2; q.w = w; q.ldw = 2; q.smooth = smooth; q.scale = scale; q.qmax = 127;
  float out[4];
  int8_t levels[4];
  fake_quant_weight_forward<float>(q, out, 2);
  quantize_weight_levels_f32(q, levels, 2);
  const int8_t want[] = {12, -127, 5, 0};
  for (int i = 0; i < 4; ++i) {
    CHECK_MSG(levels[i] == want[i], "level " << i << " = " << int(levels[i]));
    CHECK(out[i] == float(levels[i]) * scale[i / 2]);
  }
  const float dout[] = {1.0f, 1.0f, 1.0f, 1.0f};
  float dw[4] = {0, 0, 0, 0}, dsm[2] = {0, 0}, dsc[2] = {0, 0};
  fake_quant_weight_backward<float>(q, dout, 2, dw, 2, dsm, dsc);
  CHECK(dw[0] == 1.0f && dw[1] == 0.0f && dw[2] == 1.0f && dw[3] == 2.0f);  // clipped element: no dw
  CHECK(std::fabs(dsc[0] - ((12.0f - 12.5f) + -127.0f)) < 1e-4f);
  CHECK(std::fabs(dsm[0] - (1.25f + 0.05f)) < 1e-6f && dsm[1] == 0.0f);
}
