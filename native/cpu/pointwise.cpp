// pointwise.h drivers: rows split across threads, per-ISA loops (backbone_rows.h) for the
// transcendental ops; position tables and the token mean are plain loops (memory-bound).
// Scalar references compute in double.
#include "ptq4vm/pointwise.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "backbone_vec.h"
#include "ptq4vm/runtime.h"
#include "vector_kernels.h"

namespace ptq4vm {
namespace {

int64_t grain_rows(int64_t cols) { return std::max<int64_t>(1, 16384 / std::max<int64_t>(cols, 1)); }

}  // namespace

void gelu_f32(int64_t rows, int64_t cols, const float* x, int64_t ldx, float* out, int64_t ldo) {
  if (rows <= 0 || cols <= 0) return;
  const auto fn = cpu::pick_isa(int(active_isa()), cpu::scalar::gelu_rows, cpu::avx2::gelu_rows,
                                cpu::avx512::gelu_rows);
  parallel_for(rows, grain_rows(cols), [&](int64_t r0, int64_t r1) { fn(r0, r1, cols, x, ldx, out, ldo); });
}

void sigmoid_f32(int64_t rows, int64_t cols, const float* x, int64_t ldx, float* out, int64_t ldo) {
  if (rows <= 0 || cols <= 0) return;
  const auto fn = cpu::pick_isa(int(active_isa()), cpu::scalar::sigmoid_rows,
                                cpu::avx2::sigmoid_rows, cpu::avx512::sigmoid_rows);
  parallel_for(rows, grain_rows(cols), [&](int64_t r0, int64_t r1) { fn(r0, r1, cols, x, ldx, out, ldo); });
}

void mul_silu_f32(int64_t rows, int64_t cols, const float* x, int64_t ldx, const float* z,
                  int64_t ldz, float* out, int64_t ldo) {
  if (rows <= 0 || cols <= 0) return;
  const auto fn = cpu::pick_isa(int(active_isa()), cpu::scalar::mul_silu_rows,
                                cpu::avx2::mul_silu_rows, cpu::avx512::mul_silu_rows);
  parallel_for(rows, grain_rows(cols), [&](int64_t r0, int64_t r1) { fn(r0, r1, cols, x, ldx, z, ldz, out, ldo); });
}

void add_f32(int64_t rows, int64_t cols, const float* a, int64_t lda, const float* b, int64_t ldb,
             float* out, int64_t ldo) {
  if (rows <= 0 || cols <= 0) return;
  const auto fn = cpu::pick_isa(int(active_isa()), cpu::scalar::add_rows, cpu::avx2::add_rows,
                                cpu::avx512::add_rows);
  parallel_for(rows, grain_rows(cols), [&](int64_t r0, int64_t r1) { fn(r0, r1, cols, a, lda, b, ldb, out, ldo); });
}

void add_positions_f32(int64_t B, int64_t L, int64_t C, const float* x, int64_t ldx,
                       const float* table, float* out, int64_t ldo) {
  if (B <= 0 || L <= 0 || C <= 0) return;
  parallel_for(B * L, grain_rows(C), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const float* xr = x + r * ldx;
      const float* tr = table + (r % L) * C;
      float* o = out + r * ldo;
      for (int64_t j = 0; j < C; ++j) o[j] = xr[j] + tr[j];
    }
  });
}

void rope_f32(int64_t B, int64_t L, int64_t C, const float* x, int64_t ldx, const float* cos_table,
              const float* sin_table, float* out, int64_t ldo) {
  if (B <= 0 || L <= 0 || C <= 0) return;
  parallel_for(B * L, grain_rows(C), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const float* xr = x + r * ldx;
      const float* cr = cos_table + (r % L) * C;
      const float* sr = sin_table + (r % L) * C;
      float* o = out + r * ldo;
      // Pairs are read before either is written, so out may be x.
      for (int64_t j = 0; j + 1 < C; j += 2) {
        const float a = xr[j], b = xr[j + 1];
        o[j] = a * cr[j] - b * sr[j];
        o[j + 1] = b * cr[j + 1] + a * sr[j + 1];
      }
    }
  });
}

void token_mean_f32(int64_t B, int64_t L, int64_t C, const float* x, int64_t ldx, float* out) {
  if (B <= 0 || C <= 0) return;
  parallel_for(B, 1, [&](int64_t b0, int64_t b1) {
    std::vector<double> sum(static_cast<size_t>(C));
    for (int64_t b = b0; b < b1; ++b) {
      std::fill(sum.begin(), sum.end(), 0.0);
      for (int64_t t = 0; t < L; ++t) {
        const float* xr = x + (b * L + t) * ldx;
        for (int64_t j = 0; j < C; ++j) sum[size_t(j)] += xr[j];
      }
      const double inv = L > 0 ? 1.0 / double(L) : 0.0;
      for (int64_t j = 0; j < C; ++j) out[b * C + j] = float(sum[size_t(j)] * inv);
    }
  });
}

// ---- references

void gelu_f32_ref(int64_t rows, int64_t cols, const float* x, int64_t ldx, float* out, int64_t ldo) {
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < cols; ++j) {
      const double v = x[r * ldx + j];
      out[r * ldo + j] = float(0.5 * v * std::erfc(-v / std::sqrt(2.0)));
    }
}

void sigmoid_f32_ref(int64_t rows, int64_t cols, const float* x, int64_t ldx, float* out, int64_t ldo) {
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < cols; ++j) out[r * ldo + j] = float(1.0 / (1.0 + std::exp(-double(x[r * ldx + j]))));
}

void mul_silu_f32_ref(int64_t rows, int64_t cols, const float* x, int64_t ldx, const float* z,
                      int64_t ldz, float* out, int64_t ldo) {
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < cols; ++j) {
      const double zv = z[r * ldz + j];
      out[r * ldo + j] = float(double(x[r * ldx + j]) * zv / (1.0 + std::exp(-zv)));
    }
}

void add_f32_ref(int64_t rows, int64_t cols, const float* a, int64_t lda, const float* b,
                 int64_t ldb, float* out, int64_t ldo) {
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < cols; ++j) out[r * ldo + j] = a[r * lda + j] + b[r * ldb + j];
}

void add_positions_f32_ref(int64_t B, int64_t L, int64_t C, const float* x, int64_t ldx,
                           const float* table, float* out, int64_t ldo) {
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t < L; ++t)
      for (int64_t j = 0; j < C; ++j) out[(b * L + t) * ldo + j] = x[(b * L + t) * ldx + j] + table[t * C + j];
}

void rope_f32_ref(int64_t B, int64_t L, int64_t C, const float* x, int64_t ldx,
                  const float* cos_table, const float* sin_table, float* out, int64_t ldo) {
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t < L; ++t)
      for (int64_t i = 0; 2 * i + 1 < C; ++i) {
        const int64_t r = b * L + t, j = 2 * i;
        const double a = x[r * ldx + j], c = x[r * ldx + j + 1];
        const double o0 = a * cos_table[t * C + j] - c * sin_table[t * C + j];
        const double o1 = c * cos_table[t * C + j + 1] + a * sin_table[t * C + j + 1];
        out[r * ldo + j] = float(o0);
        out[r * ldo + j + 1] = float(o1);
      }
}

void token_mean_f32_ref(int64_t B, int64_t L, int64_t C, const float* x, int64_t ldx, float* out) {
  for (int64_t b = 0; b < B; ++b)
    for (int64_t j = 0; j < C; ++j) {
      double s = 0;
      for (int64_t t = 0; t < L; ++t) s += x[(b * L + t) * ldx + j];
      out[b * C + j] = L > 0 ? float(s / double(L)) : 0.0f;
    }
}

}  // namespace ptq4vm
