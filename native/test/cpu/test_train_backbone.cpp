// Differentiable backbone ops (train_backbone.h): every forward against a scalar reference written
// here from the definitions, every backward (double) against central finite differences of the
// double forward, float against double, accumulate against overwrite, and results independent of
// the thread count. Shapes are ragged (channel counts not multiples of any vector width, odd
// grids, pads and dropped steps in the orders).
#include <algorithm>
#include <cmath>
#include <functional>
#include <vector>

#include "cpu_test_util.h"
#include "harness.h"
#include "ptq4vm/runtime.h"
#include "ptq4vm/train_backbone.h"

using namespace ptq4vm;
using ptq4vm::test::Rng;

namespace {

using Vec = std::vector<double>;

Vec random_vec(Rng& rng, size_t n, float lo = -1.f, float hi = 1.f) {
  Vec v(n);
  for (auto& x : v) x = rng.uniform(lo, hi);
  return v;
}

std::vector<float> to_f32(const Vec& v) { return std::vector<float>(v.begin(), v.end()); }

double dot(const Vec& a, const Vec& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}

double max_abs(const Vec& v) {
  double m = 1e-3;
  for (double x : v) m = std::max(m, std::fabs(x));
  return m;
}

// max |got − want| / max|want| over doubles (or floats widened).
template <typename A>
double rel_err(const A& got, const Vec& want) {
  double num = 0, den = 1e-30;
  for (size_t i = 0; i < want.size(); ++i) {
    num = std::max(num, std::fabs(double(got[i]) - want[i]));
    den = std::max(den, std::fabs(want[i]));
  }
  return num / den;
}

// Checks grad against central differences of loss() over every element of `x` (in place).
void check_fd(const char* what, Vec& x, const Vec& grad, const std::function<double()>& loss, double tol = 1e-7) {
  const double h = 1e-5;
  double worst = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    const double keep = x[i];
    x[i] = keep + h;
    const double lp = loss();
    x[i] = keep - h;
    const double lm = loss();
    x[i] = keep;
    worst = std::max(worst, std::fabs((lp - lm) / (2 * h) - grad[i]));
  }
  CHECK_MSG(worst / max_abs(grad) < tol, what << ": gradient vs finite differences, rel err " << worst / max_abs(grad));
}

// Runs fn with 1 and 2 pool threads; both must give bitwise equal vectors.
template <typename Fn>
void check_thread_independent(const char* what, Fn&& fn) {
  test::ThreadCountGuard guard;
  set_num_threads(1);
  const auto a = fn();
  set_num_threads(2);
  const auto b = fn();
  CHECK_MSG(a == b, what << ": results differ between 1 and 2 threads");
}

// ---- scalar references, straight from the definitions ----

Vec layer_norm_ref(int64_t rows, int64_t cols, const Vec& x, const Vec* w, const Vec* b, double eps) {
  Vec out(x.size());
  for (int64_t r = 0; r < rows; ++r) {
    double mean = 0, var = 0;
    for (int64_t j = 0; j < cols; ++j) mean += x[size_t(r * cols + j)];
    mean /= double(cols);
    for (int64_t j = 0; j < cols; ++j) var += (x[size_t(r * cols + j)] - mean) * (x[size_t(r * cols + j)] - mean);
    var /= double(cols);
    for (int64_t j = 0; j < cols; ++j) {
      const double v = (x[size_t(r * cols + j)] - mean) / std::sqrt(var + eps);
      out[size_t(r * cols + j)] = v * (w ? (*w)[size_t(j)] : 1.0) + (b ? (*b)[size_t(j)] : 0.0);
    }
  }
  return out;
}

double gelu_ref(double x) { return 0.5 * x * (1.0 + std::erf(x / std::sqrt(2.0))); }

Vec depthwise_ref(int64_t B, int64_t H, int64_t W, int64_t C, int64_t K, const Vec& x, const Vec& w, const Vec* bias,
                  bool silu) {
  Vec out(size_t(B * H * W * C));
  const int64_t p = K / 2;
  for (int64_t b = 0; b < B; ++b)
    for (int64_t r = 0; r < H; ++r)
      for (int64_t c = 0; c < W; ++c)
        for (int64_t ch = 0; ch < C; ++ch) {
          double acc = bias ? (*bias)[size_t(ch)] : 0.0;
          for (int64_t i = 0; i < K; ++i)
            for (int64_t j = 0; j < K; ++j) {
              const int64_t rr = r + i - p, cc = c + j - p;
              if (rr >= 0 && rr < H && cc >= 0 && cc < W)
                acc += w[size_t(ch * K * K + i * K + j)] * x[size_t(((b * H + rr) * W + cc) * C + ch)];
            }
          out[size_t(((b * H + r) * W + c) * C + ch)] = silu ? acc / (1.0 + std::exp(-acc)) : acc;
        }
  return out;
}

// A permutation of rows with pads (−1) inserted, as a window scan makes, and its inverse with
// pads dropped.
struct Order {
  int64_t rows, steps;
  std::vector<int32_t> gather, scatter;
};
Order random_order(Rng& rng, int64_t rows, int64_t pads) {
  Order o{rows, rows + pads, {}, {}};
  std::vector<int32_t> perm(static_cast<size_t>(rows));
  for (int64_t i = 0; i < rows; ++i) perm[size_t(i)] = int32_t(i);
  for (int64_t i = rows - 1; i > 0; --i) std::swap(perm[size_t(i)], perm[size_t(rng.integer(0, i))]);
  for (int64_t i = 0; i < pads; ++i) perm.insert(perm.begin() + rng.integer(0, int64_t(perm.size())), -1);
  o.gather = perm;
  o.scatter = perm;
  return o;
}

}  // namespace

// ---- LayerNorm ----

TEST_CASE("train_backbone/layer_norm forward matches the reference, backward matches finite differences") {
  Rng rng(901);
  const int64_t rows = 7, cols = 37;
  const double eps = 1e-5;
  Vec x = random_vec(rng, size_t(rows * cols), -2.f, 3.f), w = random_vec(rng, size_t(cols), 0.5f, 1.5f),
      b = random_vec(rng, size_t(cols)), R = random_vec(rng, size_t(rows * cols));
  Vec out(x.size());
  train_layer_norm<double>(rows, cols, x.data(), w.data(), b.data(), eps, out.data());
  CHECK(rel_err(out, layer_norm_ref(rows, cols, x, &w, &b, eps)) < 1e-14);
  train_layer_norm<double>(rows, cols, x.data(), nullptr, nullptr, eps, out.data());
  CHECK(rel_err(out, layer_norm_ref(rows, cols, x, nullptr, nullptr, eps)) < 1e-14);
  Vec dx(x.size());
  train_layer_norm_backward<double>(rows, cols, x.data(), w.data(), eps, R.data(), dx.data(), false);
  check_fd("layer_norm dx", x, dx, [&] { return dot(layer_norm_ref(rows, cols, x, &w, &b, eps), R); });
  // accumulate adds, float agrees with double.
  Vec acc(x.size(), 0.25);
  train_layer_norm_backward<double>(rows, cols, x.data(), w.data(), eps, R.data(), acc.data(), true);
  for (size_t i = 0; i < acc.size(); ++i) CHECK(std::fabs(acc[i] - (dx[i] + 0.25)) < 1e-12);
  auto xf = to_f32(x), wf = to_f32(w), bf = to_f32(b), Rf = to_f32(R);
  std::vector<float> of(x.size()), dxf(x.size());
  train_layer_norm<float>(rows, cols, xf.data(), wf.data(), bf.data(), eps, of.data());
  train_layer_norm_backward<float>(rows, cols, xf.data(), wf.data(), eps, Rf.data(), dxf.data(), false);
  CHECK(rel_err(of, layer_norm_ref(rows, cols, x, &w, &b, eps)) < 1e-6);
  CHECK(rel_err(dxf, dx) < 1e-5);
}

TEST_CASE("train_backbone/layer_norm_token_mean: selected rows only, backward matches finite differences") {
  Rng rng(902);
  const int64_t B = 3, L = 11, C = 70;
  const double eps = 1e-5;
  std::vector<int32_t> select(static_cast<size_t>(L));
  for (int64_t t = 0; t < L; ++t) select[size_t(t)] = (t % 4 == 2) ? -1 : int32_t(t);
  Vec x = random_vec(rng, size_t(B * L * C), -2.f, 2.f), w = random_vec(rng, size_t(C), 0.5f, 1.5f),
      b = random_vec(rng, size_t(C)), R = random_vec(rng, size_t(B * C));
  auto reference = [&](const int32_t* sel) {
    const Vec ln = layer_norm_ref(B * L, C, x, &w, &b, eps);
    Vec out(size_t(B * C), 0.0);
    for (int64_t bb = 0; bb < B; ++bb) {
      int64_t n = 0;
      for (int64_t t = 0; t < L; ++t) {
        if (sel && sel[t] < 0) continue;
        ++n;
        for (int64_t c = 0; c < C; ++c) out[size_t(bb * C + c)] += ln[size_t((bb * L + t) * C + c)];
      }
      for (int64_t c = 0; c < C; ++c) out[size_t(bb * C + c)] /= double(n);
    }
    return out;
  };
  for (const int32_t* sel : {static_cast<const int32_t*>(nullptr), static_cast<const int32_t*>(select.data())}) {
    Vec out(size_t(B * C));
    train_layer_norm_token_mean<double>(B, L, C, x.data(), sel, w.data(), b.data(), eps, out.data());
    CHECK(rel_err(out, reference(sel)) < 1e-13);
    Vec dx(x.size(), 7.0);  // overwritten, including the unselected rows
    train_layer_norm_token_mean_backward<double>(B, L, C, x.data(), sel, w.data(), eps, R.data(), dx.data(), false);
    check_fd("layer_norm_token_mean dx", x, dx, [&] { return dot(reference(sel), R); });
    auto xf = to_f32(x), wf = to_f32(w), bf = to_f32(b), Rf = to_f32(R);
    check_thread_independent("layer_norm_token_mean float", [&] {
      std::vector<float> of(size_t(B * C)), dxf(x.size());
      train_layer_norm_token_mean<float>(B, L, C, xf.data(), sel, wf.data(), bf.data(), eps, of.data());
      train_layer_norm_token_mean_backward<float>(B, L, C, xf.data(), sel, wf.data(), eps, Rf.data(), dxf.data(), false);
      CHECK(rel_err(of, reference(sel)) < 1e-6);
      CHECK(rel_err(dxf, dx) < 1e-5);
      of.insert(of.end(), dxf.begin(), dxf.end());
      return of;
    });
  }
}

// ---- Elementwise ----

TEST_CASE("train_backbone/gelu and sigmoid: forwards against the definitions, backwards against finite differences") {
  Rng rng(903);
  const int64_t n = 40037;  // several parallel chunks
  Vec x = random_vec(rng, size_t(n), -6.f, 6.f), R = random_vec(rng, size_t(n));
  x[0] = 0.0;
  x[1] = -30.0;
  x[2] = 30.0;
  Vec g(x.size()), s(x.size());
  train_gelu<double>(n, x.data(), g.data());
  train_sigmoid<double>(n, x.data(), s.data());
  Vec gref(x.size()), sref(x.size());
  for (size_t i = 0; i < x.size(); ++i) {
    gref[i] = gelu_ref(x[i]);
    sref[i] = 1.0 / (1.0 + std::exp(-x[i]));
  }
  CHECK(rel_err(g, gref) < 1e-15);
  CHECK(rel_err(s, sref) < 1e-15);
  // Finite differences on a slice (every element of it), against the elementwise definitions.
  const int64_t m = 301;
  Vec xs(x.begin(), x.begin() + m), Rs(R.begin(), R.begin() + m);
  Vec dg(static_cast<size_t>(m)), ds(static_cast<size_t>(m)), ys(static_cast<size_t>(m));
  train_gelu_backward<double>(m, xs.data(), Rs.data(), dg.data(), false);
  train_sigmoid<double>(m, xs.data(), ys.data());
  train_sigmoid_backward<double>(m, ys.data(), Rs.data(), ds.data(), false);
  check_fd("gelu dx", xs, dg, [&] {
    double l = 0;
    for (int64_t i = 0; i < m; ++i) l += gelu_ref(xs[size_t(i)]) * Rs[size_t(i)];
    return l;
  });
  check_fd("sigmoid dx", xs, ds, [&] {
    double l = 0;
    for (int64_t i = 0; i < m; ++i) l += Rs[size_t(i)] / (1.0 + std::exp(-xs[size_t(i)]));
    return l;
  });
  // float path and accumulate
  auto xf = to_f32(x), Rf = to_f32(R);
  std::vector<float> gf(x.size()), dgf(x.size(), 1.f);
  train_gelu<float>(n, xf.data(), gf.data());
  CHECK(rel_err(gf, gref) < 1e-6);
  Vec dgd(x.size());
  train_gelu_backward<double>(n, x.data(), R.data(), dgd.data(), false);
  train_gelu_backward<float>(n, xf.data(), Rf.data(), dgf.data(), true);
  for (auto& v : dgd) v += 1.0;
  CHECK(rel_err(dgf, dgd) < 1e-5);
}

// ---- Depthwise conv2d ----

TEST_CASE("train_backbone/depthwise_conv2d: forward against the definition, backward against finite differences") {
  Rng rng(904);
  struct Case {
    int64_t B, H, W, C, K;
    bool silu, bias;
  };
  for (const Case& c : {Case{2, 5, 3, 7, 3, true, true}, Case{1, 4, 6, 5, 3, false, false}, Case{1, 2, 1, 3, 5, true, true},
                        Case{2, 3, 4, 9, 1, true, false}}) {
    Vec x = random_vec(rng, size_t(c.B * c.H * c.W * c.C), -2.f, 2.f), w = random_vec(rng, size_t(c.C * c.K * c.K)),
        b = random_vec(rng, size_t(c.C), -0.5f, 0.5f), R = random_vec(rng, x.size());
    const Vec* bias = c.bias ? &b : nullptr;
    Vec out(x.size());
    train_depthwise_conv2d<double>(c.B, c.H, c.W, c.C, c.K, x.data(), w.data(), c.bias ? b.data() : nullptr, c.silu,
                                   out.data());
    CHECK_MSG(rel_err(out, depthwise_ref(c.B, c.H, c.W, c.C, c.K, x, w, bias, c.silu)) < 1e-14, "forward " << c.H << "x" << c.W);
    Vec dx(x.size(), 3.0);
    train_depthwise_conv2d_backward<double>(c.B, c.H, c.W, c.C, c.K, x.data(), w.data(), c.bias ? b.data() : nullptr,
                                            c.silu, R.data(), dx.data(), false);
    check_fd("depthwise_conv2d dx", x, dx, [&] { return dot(depthwise_ref(c.B, c.H, c.W, c.C, c.K, x, w, bias, c.silu), R); });
    auto xf = to_f32(x), wf = to_f32(w), bf = to_f32(b), Rf = to_f32(R);
    check_thread_independent("depthwise_conv2d float", [&] {
      std::vector<float> of(x.size()), dxf(x.size());
      train_depthwise_conv2d<float>(c.B, c.H, c.W, c.C, c.K, xf.data(), wf.data(), c.bias ? bf.data() : nullptr, c.silu,
                                    of.data());
      train_depthwise_conv2d_backward<float>(c.B, c.H, c.W, c.C, c.K, xf.data(), wf.data(), c.bias ? bf.data() : nullptr,
                                             c.silu, Rf.data(), dxf.data(), false);
      CHECK(rel_err(of, out) < 1e-6);
      CHECK(rel_err(dxf, dx) < 1e-5);
      of.insert(of.end(), dxf.begin(), dxf.end());
      return of;
    });
  }
}

// ---- Gather / scatter ----

TEST_CASE("train_backbone/gather_tokens: zero pads, backward matches finite differences (repeated indices add up)") {
  Rng rng(905);
  const int64_t B = 3, rows = 13, C = 19;
  Order o = random_order(rng, rows, 4);
  o.gather[1] = o.gather[5] = 2;  // a row read twice: its gradient is the sum
  Vec x = random_vec(rng, size_t(B * rows * C)), R = random_vec(rng, size_t(B * o.steps * C));
  auto reference = [&] {
    Vec out(size_t(B * o.steps * C), 0.0);
    for (int64_t b = 0; b < B; ++b)
      for (int64_t t = 0; t < o.steps; ++t)
        if (o.gather[size_t(t)] >= 0)
          for (int64_t c = 0; c < C; ++c) out[size_t((b * o.steps + t) * C + c)] = x[size_t((b * rows + o.gather[size_t(t)]) * C + c)];
    return out;
  };
  Vec out(size_t(B * o.steps * C), 9.0);
  train_gather_tokens<double>(B, rows, o.steps, C, x.data(), o.gather.data(), out.data());
  CHECK(out == reference());
  Vec dx(x.size(), 5.0);
  train_gather_tokens_backward<double>(B, rows, o.steps, C, o.gather.data(), R.data(), dx.data(), false);
  check_fd("gather_tokens dx", x, dx, [&] { return dot(reference(), R); });
  Vec acc(x.size(), 0.5);
  train_gather_tokens_backward<double>(B, rows, o.steps, C, o.gather.data(), R.data(), acc.data(), true);
  for (size_t i = 0; i < acc.size(); ++i) CHECK(std::fabs(acc[i] - dx[i] - 0.5) < 1e-12);
}

TEST_CASE("train_backbone/scatter_tokens with a gate: forward, dy and dgate against finite differences") {
  Rng rng(906);
  const int64_t B = 2, rows = 17, C = 71;  // channels over two reduction blocks
  const Order o = random_order(rng, rows, 5);
  Vec y = random_vec(rng, size_t(B * o.steps * C)), gate = random_vec(rng, size_t(B * C), 0.f, 1.f),
      base = random_vec(rng, size_t(B * rows * C)), R = random_vec(rng, size_t(B * rows * C));
  for (bool accumulate : {false, true}) {
    for (bool gated : {false, true}) {
      auto reference = [&] {
        Vec out = base;
        for (int64_t b = 0; b < B; ++b)
          for (int64_t t = 0; t < o.steps; ++t) {
            const int32_t d = o.scatter[size_t(t)];
            if (d < 0) continue;
            for (int64_t c = 0; c < C; ++c) {
              const double v = y[size_t((b * o.steps + t) * C + c)] * (gated ? gate[size_t(b * C + c)] : 1.0);
              double& dst = out[size_t((b * rows + d) * C + c)];
              dst = accumulate ? dst + v : v;
            }
          }
        return out;
      };
      Vec out = base;
      train_scatter_tokens<double>(B, o.steps, rows, C, y.data(), o.scatter.data(), gated ? gate.data() : nullptr, accumulate,
                                   out.data());
      CHECK(rel_err(out, reference()) < 1e-15);
      Vec dy(y.size(), 2.0), dgate(gate.size(), 0.0);
      train_scatter_tokens_backward<double>(B, o.steps, rows, C, y.data(), o.scatter.data(), gated ? gate.data() : nullptr,
                                            R.data(), dy.data(), false, gated ? dgate.data() : nullptr);
      check_fd("scatter_tokens dy", y, dy, [&] { return dot(reference(), R); });
      if (gated) check_fd("scatter_tokens dgate", gate, dgate, [&] { return dot(reference(), R); });
      auto yf = to_f32(y), gf = to_f32(gate), Rf = to_f32(R);
      check_thread_independent("scatter_tokens float", [&] {
        std::vector<float> dyf(y.size()), dgf(gate.size(), 0.f);
        train_scatter_tokens_backward<float>(B, o.steps, rows, C, yf.data(), o.scatter.data(), gated ? gf.data() : nullptr,
                                             Rf.data(), dyf.data(), false, gated ? dgf.data() : nullptr);
        CHECK(rel_err(dyf, dy) < 1e-6);
        if (gated) CHECK(rel_err(dgf, dgate) < 1e-5);
        dyf.insert(dyf.end(), dgf.begin(), dgf.end());
        return dyf;
      });
    }
  }
}
