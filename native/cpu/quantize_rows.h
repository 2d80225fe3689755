// Inner loops of quantize_u8 / quantize_params_dynamic against VecF (see vector_kernels.h).
// Exactly the reference's fp32 operations in the same order, so every ISA produces the same
// integers: v = (x · inv_smooth) · inv_scale, round half to even (the hardware default mode),
// + zero, clamp to [0, qmax] (a NaN becomes 0).
#pragma once
#include <cstdint>

#include "simd.h"

namespace ptq4vm::cpu {
namespace {

inline VecF quantize_lanes(VecF x, VecF inv_smooth, VecF inv_scale, VecF zero, VecF qmax) {
  const VecF v = (x * inv_smooth) * inv_scale;
  return min(max(round_even(v) + zero, VecF::zero()), qmax);
}

// One row of cols values → bytes, with this row's parameters.
inline void quantize_row(int64_t cols, const float* x, const float* inv_smooth, float inv_scale,
                         int32_t zero, int qmax, uint8_t* q) {
  constexpr int W = VecF::kWidth;
  const VecF is = VecF::set1(inv_scale), zf = VecF::set1(float(zero)), qm = VecF::set1(float(qmax));
  const VecF one = VecF::set1(1.0f);
  int64_t j = 0;
  for (; j + W <= cols; j += W) {
    const VecF sm = inv_smooth ? VecF::load(inv_smooth + j) : one;
    store_u8(q + j, quantize_lanes(VecF::load(x + j), sm, is, zf, qm), W);
  }
  if (j < cols) {
    const int n = int(cols - j);
    const VecF sm = inv_smooth ? VecF::load_partial(inv_smooth + j, n) : one;
    store_u8(q + j, quantize_lanes(VecF::load_partial(x + j, n), sm, is, zf, qm), n);
  }
}

void quantize_u8_rows_impl(int64_t r0, int64_t r1, int64_t cols, int64_t period, const float* x,
                           int64_t ldx, const float* inv_smooth, const float* inv_scale,
                           const int32_t* zero, int qmax, uint8_t* q, int64_t ldq) {
  for (int64_t r = r0; r < r1; ++r) {
    const int64_t p = r % period;
    quantize_row(cols, x + r * ldx, inv_smooth, inv_scale[p], zero[p], qmax, q + r * ldq);
  }
}

// min and max over a row of x · inv_smooth (lanes past cols excluded).
inline void row_min_max(int64_t cols, const float* x, const float* inv_smooth, float* lo, float* hi) {
  constexpr int W = VecF::kWidth;
  VecF vmin = VecF::set1(0.0f), vmax = VecF::set1(0.0f);  // the range always includes 0
  const VecF one = VecF::set1(1.0f);
  int64_t j = 0;
  for (; j + W <= cols; j += W) {
    const VecF v = VecF::load(x + j) * (inv_smooth ? VecF::load(inv_smooth + j) : one);
    vmin = min(v, vmin);  // x86 min/max return the second operand for a NaN: skip NaNs
    vmax = max(v, vmax);
  }
  if (j < cols) {
    const int n = int(cols - j);
    // Missing lanes load as 0, which the range contains anyway.
    const VecF v = VecF::load_partial(x + j, n) * (inv_smooth ? VecF::load_partial(inv_smooth + j, n) : one);
    vmin = min(v, vmin);
    vmax = max(v, vmax);
  }
  alignas(64) float lanes_min[W], lanes_max[W];
  vmin.store(lanes_min);
  vmax.store(lanes_max);
  float m0 = 0.0f, m1 = 0.0f;
  for (int i = 0; i < W; ++i) {
    m0 = lanes_min[i] < m0 ? lanes_min[i] : m0;
    m1 = lanes_max[i] > m1 ? lanes_max[i] : m1;
  }
  *lo = m0;
  *hi = m1;
}

// The dynamic parameters of one row from its range (quantize.h); shared with the reference.
inline void params_from_range(float lo, float hi, int qmax, float* scale, float* inv_scale, int32_t* zero) {
  float range = hi - lo;
  if (!(range >= 1e-8f)) range = 1e-8f;
  const float s = range / float(qmax);
  float z = std::nearbyint(-lo / s);
  z = z < 0.0f ? 0.0f : (z > float(qmax) ? float(qmax) : z);
  *scale = s;
  *inv_scale = 1.0f / s;
  *zero = int32_t(z);
}

void quantize_params_rows_impl(int64_t r0, int64_t r1, int64_t cols, const float* x, int64_t ldx,
                               const float* inv_smooth, int qmax, float* scale, float* inv_scale,
                               int32_t* zero) {
  for (int64_t r = r0; r < r1; ++r) {
    float lo, hi;
    row_min_max(cols, x + r * ldx, inv_smooth, &lo, &hi);
    params_from_range(lo, hi, qmax, scale + r, inv_scale + r, zero + r);
  }
}

}  // namespace
}  // namespace ptq4vm::cpu
