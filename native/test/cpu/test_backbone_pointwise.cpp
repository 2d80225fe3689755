// pointwise.h and layer_norm.h kernels against their scalar references: ragged widths, strided
// rows, every ISA, one and two threads, in-place calls, and the erf-based GELU tails.
#include <cmath>

#include "cpu_test_util.h"
#include "ptq4vm/layer_norm.h"
#include "ptq4vm/pointwise.h"

using namespace ptq4vm;
using namespace ptq4vm::test;

namespace {
// max |a − b| over a strided [rows, cols] region.
double max_abs_diff(const std::vector<float>& a, const std::vector<float>& b, int64_t rows, int64_t cols, int64_t ld) {
  double m = 0;
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < cols; ++j) m = std::fmax(m, std::fabs(double(a[r * ld + j]) - b[r * ld + j]));
  return m;
}
}  // namespace

TEST_CASE("gelu/sigmoid/mul_silu/add: ragged strided rows, every ISA, matches the references") {
  Rng rng(101);
  ThreadCountGuard guard;
  for_each_isa([&](Isa) {
    for (int threads : {1, 2}) {
      set_num_threads(threads);
      for (int64_t cols : {1, 5, 16, 17, 33, 100, 257}) {
        const int64_t rows = rng.integer(1, 23), ld = cols + rng.integer(0, 5);
        auto x = rng.floats(size_t(rows * ld), -9, 9), z = rng.floats(size_t(rows * ld), -12, 12);
        std::vector<float> o(x.size(), 7.0f), o_ref(x.size(), 7.0f);
        gelu_f32(rows, cols, x.data(), ld, o.data(), ld);
        gelu_f32_ref(rows, cols, x.data(), ld, o_ref.data(), ld);
        CHECK_MSG(max_abs_diff(o, o_ref, rows, cols, ld) < 1e-6 * 9, "gelu cols=" << cols);
        if (ld > cols) CHECK_MSG(o[cols] == 7.0f, "gelu wrote past the row");
        sigmoid_f32(rows, cols, x.data(), ld, o.data(), ld);
        sigmoid_f32_ref(rows, cols, x.data(), ld, o_ref.data(), ld);
        CHECK_MSG(max_abs_diff(o, o_ref, rows, cols, ld) < 3e-7, "sigmoid cols=" << cols);
        mul_silu_f32(rows, cols, x.data(), ld, z.data(), ld, o.data(), ld);
        mul_silu_f32_ref(rows, cols, x.data(), ld, z.data(), ld, o_ref.data(), ld);
        CHECK_MSG(max_abs_diff(o, o_ref, rows, cols, ld) < 1e-6 * 9 * 12, "mul_silu cols=" << cols);
        add_f32(rows, cols, x.data(), ld, z.data(), ld, o.data(), ld);
        add_f32_ref(rows, cols, x.data(), ld, z.data(), ld, o_ref.data(), ld);
        CHECK_MSG(max_abs_diff(o, o_ref, rows, cols, ld) == 0, "add cols=" << cols);
        // In place.
        auto xi = x;
        gelu_f32(rows, cols, xi.data(), ld, xi.data(), ld);
        gelu_f32_ref(rows, cols, x.data(), ld, o_ref.data(), ld);
        CHECK_MSG(max_abs_diff(xi, o_ref, rows, cols, ld) < 1e-6 * 9, "in-place gelu");
      }
    }
  });
}

TEST_CASE("gelu: relative precision over the whole range, including both tails and the split") {
  for_each_isa([&](Isa) {
    std::vector<float> x;
    for (float v = -14.0f; v <= 14.0f; v += 0.0037f) x.push_back(v);
    for (float v : {0.84f * 1.41421356f, -0.84f * 1.41421356f, 4.0f * 1.41421356f, 0.0f, -0.0f, 1e-30f, -1e-30f}) x.push_back(v);
    const int64_t n = int64_t(x.size());
    std::vector<float> o(x.size()), r(x.size());
    gelu_f32(1, n, x.data(), n, o.data(), n);
    gelu_f32_ref(1, n, x.data(), n, r.data(), n);
    for (int64_t i = 0; i < n; ++i) {
      // Absolute 1.2e-7·|x| (erf to 1.1e-7), relative 1e-6 where the value is not tiny.
      const double tol = std::fmax(1.2e-7 * std::fabs(x[size_t(i)]), 1e-6 * std::fabs(r[size_t(i)])) + 1e-37;
      CHECK_MSG(std::fabs(double(o[size_t(i)]) - r[size_t(i)]) <= tol,
                "gelu(" << x[size_t(i)] << ") = " << o[size_t(i)] << ", expected " << r[size_t(i)]);
    }
  });
}

TEST_CASE("add_positions and rope: ragged shapes, strided rows, in place") {
  Rng rng(102);
  ThreadCountGuard guard;
  for (int threads : {1, 2}) {
    set_num_threads(threads);
    for (int64_t C : {2, 6, 64, 98}) {
      const int64_t B = rng.integer(1, 3), L = rng.integer(1, 37), ld = C + rng.integer(0, 3);
      auto x = rng.floats(size_t(B * L * ld)), cs = rng.floats(size_t(L * C)), sn = rng.floats(size_t(L * C));
      auto tbl = rng.floats(size_t(L * C));
      std::vector<float> o(x.size()), o_ref(x.size());
      add_positions_f32(B, L, C, x.data(), ld, tbl.data(), o.data(), ld);
      add_positions_f32_ref(B, L, C, x.data(), ld, tbl.data(), o_ref.data(), ld);
      CHECK(max_abs_diff(o, o_ref, B * L, C, ld) == 0);
      rope_f32(B, L, C, x.data(), ld, cs.data(), sn.data(), o.data(), ld);
      rope_f32_ref(B, L, C, x.data(), ld, cs.data(), sn.data(), o_ref.data(), ld);
      CHECK_MSG(max_abs_diff(o, o_ref, B * L, C, ld) < 3e-7, "rope C=" << C);
      auto xi = x;
      rope_f32(B, L, C, xi.data(), ld, cs.data(), sn.data(), xi.data(), ld);
      CHECK_MSG(max_abs_diff(xi, o_ref, B * L, C, ld) < 3e-7, "in-place rope C=" << C);
    }
  }
}

TEST_CASE("token_mean: ragged shapes, strided rows") {
  Rng rng(103);
  for (int64_t C : {1, 9, 130}) {
    const int64_t B = rng.integer(1, 4), L = rng.integer(1, 70), ld = C + rng.integer(0, 4);
    auto x = rng.floats(size_t(B * L * ld), -2, 2);
    std::vector<float> o(size_t(B * C)), o_ref(size_t(B * C));
    token_mean_f32(B, L, C, x.data(), ld, o.data());
    token_mean_f32_ref(B, L, C, x.data(), ld, o_ref.data());
    CHECK(rel_max_err(o.data(), o_ref.data(), o.size()) < 1e-6);
  }
}

TEST_CASE("layer_norm: ragged widths, strided rows, optional affine, in place, every ISA") {
  Rng rng(104);
  ThreadCountGuard guard;
  // Float inputs far from 0 carry ulp(|x|) of noise into x − mean, amplified by 1/std: the
  // tolerance of each row scales with max|x|/std (an offset well above the spread also checks
  // that the variance is taken of deviations, not as E[x²] − E[x]²).
  auto row_tol = [](const float* xr, int64_t D) {
    double mean = 0, var = 0, mx = 0;
    for (int64_t j = 0; j < D; ++j) mean += xr[j], mx = std::fmax(mx, std::fabs(xr[j]));
    mean /= double(D);
    for (int64_t j = 0; j < D; ++j) var += (xr[j] - mean) * (xr[j] - mean);
    const double sd = std::sqrt(var / double(D) + 1e-5);
    return 2e-6 + 6e-7 * mx / sd * 1.5;
  };
  for_each_isa([&](Isa) {
    for (int threads : {1, 2}) {
      set_num_threads(threads);
      for (int64_t D : {1, 3, 15, 16, 17, 31, 48, 100, 385}) {
        const int64_t rows = rng.integer(1, 30), ld = D + rng.integer(0, 5);
        auto x = rng.floats(size_t(rows * ld), 40, 44);
        auto w = rng.floats(size_t(D), 0.5f, 1.5f), bias = rng.floats(size_t(D));
        for (bool affine : {true, false}) {
          std::vector<float> o(x.size()), o_ref(x.size());
          const float* wp = affine ? w.data() : nullptr;
          const float* bp = affine ? bias.data() : nullptr;
          layer_norm_f32(rows, D, x.data(), ld, wp, bp, 1e-5f, o.data(), ld);
          layer_norm_f32_ref(rows, D, x.data(), ld, wp, bp, 1e-5f, o_ref.data(), ld);
          auto xi = x;
          layer_norm_f32(rows, D, xi.data(), ld, wp, bp, 1e-5f, xi.data(), ld);
          for (int64_t r = 0; r < rows; ++r) {
            const double tol = row_tol(x.data() + r * ld, D);
            for (int64_t j = 0; j < D; ++j) {
              const double ref = o_ref[size_t(r * ld + j)];
              CHECK_MSG(std::fabs(o[size_t(r * ld + j)] - ref) <= tol, "D=" << D << " affine=" << affine << " row " << r);
              CHECK_MSG(std::fabs(xi[size_t(r * ld + j)] - ref) <= tol, "in place, D=" << D);
            }
          }
        }
      }
    }
  });
}

TEST_CASE("layer_norm_token_mean: ragged shapes, selected rows only, every ISA") {
  Rng rng(105);
  ThreadCountGuard guard;
  for_each_isa([&](Isa) {
    for (int threads : {1, 2}) {
      set_num_threads(threads);
      for (int64_t D : {2, 17, 48, 130}) {
        const int64_t B = rng.integer(1, 3), L = rng.integer(1, 150), ld = D + rng.integer(0, 3);
        auto x = rng.floats(size_t(B * L * ld), -3, 3);
        auto w = rng.floats(size_t(D), 0.5f, 1.5f), bias = rng.floats(size_t(D));
        std::vector<int32_t> sel(static_cast<size_t>(L));
        for (int64_t t = 0; t < L; ++t) sel[size_t(t)] = (t == 0 || rng.integer(0, 3) > 0) ? int32_t(t) : -1;
        for (bool use_select : {false, true}) {
          const int32_t* s = use_select ? sel.data() : nullptr;
          std::vector<float> o(size_t(B * D)), o_ref(size_t(B * D));
          layer_norm_token_mean_f32(B, L, D, x.data(), ld, s, w.data(), bias.data(), 1e-5f, o.data());
          layer_norm_token_mean_f32_ref(B, L, D, x.data(), ld, s, w.data(), bias.data(), 1e-5f, o_ref.data());
          double m = 0;
          for (size_t i = 0; i < o.size(); ++i) m = std::fmax(m, std::fabs(double(o[i]) - o_ref[i]));
          CHECK_MSG(m < 2e-6, "D=" << D << " L=" << L << " select=" << use_select << " err " << m);
        }
        // The selection matters: dropping rows changes the mean.
        std::vector<float> all(size_t(B * D)), some(size_t(B * D));
        layer_norm_token_mean_f32(B, L, D, x.data(), ld, nullptr, w.data(), bias.data(), 1e-5f, all.data());
        layer_norm_token_mean_f32(B, L, D, x.data(), ld, sel.data(), w.data(), bias.data(), 1e-5f, some.data());
        bool dropped = false;
        for (auto v : sel) dropped |= v < 0;
        if (dropped) CHECK(all != some);
      }
    }
  });
}
