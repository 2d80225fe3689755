// The vector exp/exp2/softplus/silu of every ISA build against double-precision libm, in ulps.
#include <cmath>
#include <cstring>

#include "../../cpu/vector_kernels.h"
#include "cpu_test_util.h"

using namespace ptq4vm;
using namespace ptq4vm::test;

namespace {

double ulps(float got, double want) {
  if (got == want) return 0;
  int e;
  std::frexp(want, &e);  // want = m · 2^e with m in [0.5, 1): one ulp is 2^(e − 24)
  return std::fabs(double(got) - want) / std::ldexp(1.0, std::max(e, -125) - 24);
}

void eval(Isa isa, cpu::MathFn fn, const std::vector<float>& x, std::vector<float>& y) {
  y.assign(x.size(), 0.0f);
  auto f = cpu::pick_isa(int(isa), cpu::scalar::eval_math, cpu::avx2::eval_math, cpu::avx512::eval_math);
  f(fn, int64_t(x.size()), x.data(), y.data());
}

std::vector<float> grid(float lo, float hi, int n, Rng& rng) {
  std::vector<float> x(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) x[i] = lo + (hi - lo) * float(i) / float(n - 1);
  for (int i = 0; i < n; i += 3) x[i] = rng.uniform(lo, hi);  // off-grid points too
  return x;
}

}  // namespace

TEST_CASE("vector math: exp and exp2 within 2 ulp (the scan's exp2 within 3), softplus and silu within 4 ulp") {
  Rng rng(5);
  for_each_isa([&](Isa isa) {
    std::vector<float> y;
    auto x = grid(-87.0f, 88.5f, 20011, rng);
    eval(isa, cpu::MathFn::Exp, x, y);
    double worst = 0;
    for (size_t i = 0; i < x.size(); ++i) worst = std::max(worst, ulps(y[i], std::exp(double(x[i]))));
    CHECK_MSG(worst <= 2.0, "exp worst " << worst << " ulp");

    x = grid(-125.0f, 127.5f, 20011, rng);
    eval(isa, cpu::MathFn::Exp2, x, y);
    worst = 0;
    for (size_t i = 0; i < x.size(); ++i) worst = std::max(worst, ulps(y[i], std::exp2(double(x[i]))));
    CHECK_MSG(worst <= 2.0, "exp2 worst " << worst << " ulp");
    // The scans' decays: the same range, 3 ulp (a 32-entry table and a quadratic).
    eval(isa, cpu::MathFn::Exp2InRange, x, y);
    worst = 0;
    for (size_t i = 0; i < x.size(); ++i)
      if (x[i] <= 125.0f) worst = std::max(worst, ulps(y[i], std::exp2(double(x[i]))));
    CHECK_MSG(worst <= 3.0, "exp2_in_range worst " << worst << " ulp");
    // Far outside the range: exact 0 and inf, no NaN.
    x = {-1000.0f, -200.0f, 200.0f, 1000.0f};
    eval(isa, cpu::MathFn::Exp2, x, y);
    CHECK(y[0] == 0.0f && y[1] == 0.0f && std::isinf(y[2]) && std::isinf(y[3]));

    x = grid(-40.0f, 40.0f, 20011, rng);
    eval(isa, cpu::MathFn::Softplus, x, y);
    worst = 0;
    for (size_t i = 0; i < x.size(); ++i) {
      const double v = x[i];
      const double want = v > 20.0 ? v : std::log1p(std::exp(v));
      worst = std::max(worst, ulps(y[i], want));
    }
    CHECK_MSG(worst <= 4.0, "softplus worst " << worst << " ulp");

    x = grid(-80.0f, 80.0f, 20011, rng);
    eval(isa, cpu::MathFn::Silu, x, y);
    worst = 0;
    for (size_t i = 0; i < x.size(); ++i) {
      const double v = x[i];
      worst = std::max(worst, ulps(y[i], v / (1.0 + std::exp(-v))));
    }
    CHECK_MSG(worst <= 4.0, "silu worst " << worst << " ulp");
  });
}

namespace {

// max |y/want − 1| over x (want from double-precision libm).
template <typename Want>
double worst_rel(const std::vector<float>& x, const std::vector<float>& y, Want&& want) {
  double worst = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    const double w = want(double(x[i]));
    worst = std::max(worst, w == 0 ? std::fabs(double(y[i])) : std::fabs(double(y[i]) / w - 1.0));
  }
  return worst;
}

}  // namespace

TEST_CASE("vector math: the fast functions of MathMode::fast within their relative bounds (1.1e-4)") {
  Rng rng(6);
  for_each_isa([&](Isa isa) {
    std::vector<float> y;
    // Decays: the scan's range, plus the small exponents whose error the recurrence raises to
    // high powers (exact at 0, relative error ∝ |x| near it).
    auto x = grid(-125.0f, 125.0f, 20011, rng);
    eval(isa, cpu::MathFn::Exp2FastInRange, x, y);
    double worst = worst_rel(x, y, [](double v) { return std::exp2(v); });
    CHECK_MSG(worst <= 1e-4, "exp2_fast_in_range worst relative error " << worst);
    x = grid(-1.0f / 64, 0.0f, 4001, rng);
    eval(isa, cpu::MathFn::Exp2FastInRange, x, y);
    for (size_t i = 0; i < x.size(); ++i) {
      // log2 of the decay against x: relative error of the exponent ≤ 0.95 % (slope 1/b, see simd.h).
      const double err = std::fabs(std::log2(double(y[i])) - double(x[i]));
      CHECK_MSG(err <= 0.0095 * std::fabs(double(x[i])) + 1e-7, "exp2_fast_in_range(" << x[i] << ") exponent error " << err);
    }
    eval(isa, cpu::MathFn::Exp2FastInRange, {0.0f}, y);
    CHECK(y[0] == 1.0f);

    x = grid(-86.0f, 86.0f, 20011, rng);
    eval(isa, cpu::MathFn::ExpFast, x, y);
    worst = worst_rel(x, y, [](double v) { return std::exp(v); });
    CHECK_MSG(worst <= 1.05e-4, "exp_fast worst relative error " << worst);

    x = grid(-40.0f, 40.0f, 20011, rng);
    eval(isa, cpu::MathFn::SoftplusFast, x, y);
    worst = worst_rel(x, y, [](double v) { return v > 20.0 ? v : std::log1p(std::exp(v)); });
    CHECK_MSG(worst <= 1.1e-4, "softplus_fast worst relative error " << worst);
    eval(isa, cpu::MathFn::SiluFast, x, y);
    worst = worst_rel(x, y, [](double v) { return v / (1.0 + std::exp(-v)); });
    CHECK_MSG(worst <= 1.1e-4, "silu_fast worst relative error " << worst);
    // Far outside the clamps: finite, with the right limits.
    x = {-1000.0f, -90.0f, 90.0f, 1000.0f};
    eval(isa, cpu::MathFn::SoftplusFast, x, y);
    CHECK_MSG(y[0] >= 0.0f && y[0] < 1e-30f && y[1] >= 0.0f && y[1] < 1e-30f && y[2] == 90.0f && y[3] == 1000.0f,
              "softplus_fast: " << y[0] << " " << y[1] << " " << y[2] << " " << y[3]);
    eval(isa, cpu::MathFn::SiluFast, x, y);
    CHECK_MSG(std::fabs(y[0]) < 1e-30f && std::fabs(y[1]) < 1e-30f && y[2] == 90.0f && y[3] == 1000.0f,
              "silu_fast: " << y[0] << " " << y[1] << " " << y[2] << " " << y[3]);
  });
}
