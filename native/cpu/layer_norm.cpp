// layer_norm_f32 / layer_norm_token_mean_f32 drivers: rows split across threads, per-ISA row
// loops (backbone_rows.h); scalar references with double accumulation.
#include "ptq4vm/layer_norm.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "backbone_vec.h"
#include "ptq4vm/runtime.h"
#include "vector_kernels.h"

namespace ptq4vm {

void layer_norm_f32(int64_t rows, int64_t D, const float* x, int64_t ldx, const float* weight,
                    const float* bias, float eps, float* out, int64_t ldo) {
  if (rows <= 0 || D <= 0) return;
  const auto fn = cpu::pick_isa(int(active_isa()), cpu::scalar::layer_norm_rows,
                                cpu::avx2::layer_norm_rows, cpu::avx512::layer_norm_rows);
  parallel_for(rows, std::max<int64_t>(1, 16384 / D), [&](int64_t r0, int64_t r1) {
    fn(r0, r1, D, x, ldx, weight, bias, eps, out, ldo);
  });
}

void layer_norm_token_mean_f32(int64_t B, int64_t L, int64_t D, const float* x, int64_t ldx,
                               const int32_t* select, const float* weight, const float* bias,
                               float eps, float* out) {
  if (B <= 0 || D <= 0) return;
  const auto fn = cpu::pick_isa(int(active_isa()), cpu::scalar::layer_norm_sum_rows,
                                cpu::avx2::layer_norm_sum_rows, cpu::avx512::layer_norm_sum_rows);
  // Fixed chunks of rows (independent of the thread count, so results are reproducible): each
  // sums its rows in float, the chunk sums are added in double.
  constexpr int64_t kChunk = 32;
  const int64_t chunks = (L + kChunk - 1) / kChunk;
  std::vector<float> partial(size_t(B * chunks * D), 0.0f);
  std::vector<int64_t> counts(size_t(B * chunks), 0);
  parallel_for(B * chunks, 1, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      const int64_t b = i / chunks, t0 = (i % chunks) * kChunk, t1 = std::min(L, t0 + kChunk);
      counts[size_t(i)] = fn(t0, t1, D, x + b * L * ldx, ldx, select, weight, bias, eps,
                             partial.data() + i * D);
    }
  });
  std::vector<double> sum(static_cast<size_t>(D));
  for (int64_t b = 0; b < B; ++b) {
    std::fill(sum.begin(), sum.end(), 0.0);
    int64_t n = 0;
    for (int64_t c = 0; c < chunks; ++c) {
      const float* p = partial.data() + (b * chunks + c) * D;
      for (int64_t j = 0; j < D; ++j) sum[size_t(j)] += p[j];
      n += counts[size_t(b * chunks + c)];
    }
    const double inv = n > 0 ? 1.0 / double(n) : 0.0;
    for (int64_t j = 0; j < D; ++j) out[b * D + j] = float(sum[size_t(j)] * inv);
  }
}

namespace {
void layer_norm_row_ref(int64_t D, const float* xr, const float* weight, const float* bias, float eps,
                        double* y) {
  double mean = 0;
  for (int64_t j = 0; j < D; ++j) mean += xr[j];
  mean /= double(D);
  double var = 0;
  for (int64_t j = 0; j < D; ++j) var += (xr[j] - mean) * (xr[j] - mean);
  var /= double(D);
  const double rstd = 1.0 / std::sqrt(var + double(eps));
  for (int64_t j = 0; j < D; ++j)
    y[j] = (xr[j] - mean) * rstd * (weight ? weight[j] : 1.0) + (bias ? bias[j] : 0.0);
}
}  // namespace

void layer_norm_f32_ref(int64_t rows, int64_t D, const float* x, int64_t ldx, const float* weight,
                        const float* bias, float eps, float* out, int64_t ldo) {
  std::vector<double> y(size_t(std::max<int64_t>(D, 1)));
  for (int64_t r = 0; r < rows; ++r) {
    layer_norm_row_ref(D, x + r * ldx, weight, bias, eps, y.data());
    for (int64_t j = 0; j < D; ++j) out[r * ldo + j] = float(y[size_t(j)]);
  }
}

void layer_norm_token_mean_f32_ref(int64_t B, int64_t L, int64_t D, const float* x, int64_t ldx,
                                   const int32_t* select, const float* weight, const float* bias,
                                   float eps, float* out) {
  std::vector<double> y(size_t(std::max<int64_t>(D, 1))), sum(size_t(std::max<int64_t>(D, 1)));
  for (int64_t b = 0; b < B; ++b) {
    std::fill(sum.begin(), sum.end(), 0.0);
    int64_t n = 0;
    for (int64_t t = 0; t < L; ++t) {
      if (select && select[t] < 0) continue;
      layer_norm_row_ref(D, x + (b * L + t) * ldx, weight, bias, eps, y.data());
      for (int64_t j = 0; j < D; ++j) sum[size_t(j)] += y[size_t(j)];
      ++n;
    }
    for (int64_t j = 0; j < D; ++j) out[b * D + j] = n ? float(sum[size_t(j)] / double(n)) : 0.0f;
  }
}

}  // namespace ptq4vm
