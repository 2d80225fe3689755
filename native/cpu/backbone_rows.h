// Inner loops of the backbone kernels against VecF (see backbone_vec.h); compiled once per ISA.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>

#include "simd.h"

namespace ptq4vm::cpu {
namespace {

// ---- erf / GELU. erf(a) for a in [0, kErfSplit]: a·P(a²) (degree 6, fitted to erf(a)/a);
// above it erfc(a) = e^(−a²)·Q(1/a) (degree 9 in 1/a, fitted to the relative error of
// erfc(a)·e^(a²) on [kErfSplit, 4]; Q is held at a = 4, where erfc < 1.6e-8). Both fits are
// weighted least squares on Chebyshev nodes; float32 evaluation stays within 1.1e-7 of erf.
constexpr float kErfSplit = 0.84f;
constexpr float kErfSmall[7] = {1.12837917f,    -0.376126376f,  0.112837573f,  -0.0268630819f,
                                0.00521093722f, -0.00082651974f, 8.9369988e-05f};
constexpr float kErfcLarge[10] = {0.000212244658f, 0.560088025f,  0.0338500103f, -0.435419622f,
                                  0.396161741f,    -0.0596413824f, -0.190595187f, 0.186829085f,
                                  -0.0761230519f,  0.0122216939f};

template <int N>
inline VecF horner(const float (&c)[N], VecF t) {
  VecF p = VecF::set1(c[N - 1]);
  for (int i = N - 2; i >= 0; --i) p = fma(p, t, VecF::set1(c[i]));
  return p;
}

// gelu(x) = 0.5·x·(1 + erf(x/√2)). For x/√2 < −kErfSplit the factor 1 + erf is erfc(|x|/√2),
// taken directly, so the far negative tail keeps its relative precision.
inline VecF gelu_f32(VecF x) {
  const VecF z = x * VecF::set1(0.70710678118654752f);
  const VecF a = abs(z);
  const VecF a2 = a * a;
  const VecF erf_small = a * horner(kErfSmall, a2);
  const VecF t = recip_f32(min(max(a, VecF::set1(kErfSplit)), VecF::set1(4.0f)));
  const VecF erfc_large = exp_f32(VecF::zero() - a2) * horner(kErfcLarge, t);
  const VecF one = VecF::set1(1.0f);
  const VecF split = VecF::set1(kErfSplit);
  const VecF erf_a = select_gt(a, split, one - erfc_large, erf_small);
  const VecF one_minus = select_gt(a, split, erfc_large, one - erf_small);  // 1 − erf(a)
  const VecF one_plus_erf_z = select_gt(z, VecF::zero(), one + erf_a, one_minus);
  return VecF::set1(0.5f) * x * one_plus_erf_z;
}

// sigmoid(x) = 1/(1 + e^−x); x is held above −80 so e^−x stays finite (sigmoid(−80) ≈ 2e-35).
inline VecF sigmoid_f32(VecF x) {
  const VecF e = exp_f32(VecF::zero() - max(x, VecF::set1(-80.0f)));
  return recip_f32(VecF::set1(1.0f) + e);
}

template <typename F>
void unary_rows_impl(int64_t r0, int64_t r1, int64_t cols, const float* x, int64_t ldx, float* out,
                     int64_t ldo, F f) {
  constexpr int W = VecF::kWidth;
  for (int64_t r = r0; r < r1; ++r) {
    const float* xr = x + r * ldx;
    float* o = out + r * ldo;
    int64_t j = 0;
    for (; j + W <= cols; j += W) f(VecF::load(xr + j)).store(o + j);
    if (j < cols) f(VecF::load_partial(xr + j, int(cols - j))).store_partial(o + j, int(cols - j));
  }
}

template <typename F>
void binary_rows_impl(int64_t r0, int64_t r1, int64_t cols, const float* a, int64_t lda,
                      const float* b, int64_t ldb, float* out, int64_t ldo, F f) {
  constexpr int W = VecF::kWidth;
  for (int64_t r = r0; r < r1; ++r) {
    const float* ar = a + r * lda;
    const float* br = b + r * ldb;
    float* o = out + r * ldo;
    int64_t j = 0;
    for (; j + W <= cols; j += W) f(VecF::load(ar + j), VecF::load(br + j)).store(o + j);
    if (j < cols) {
      const int n = int(cols - j);
      f(VecF::load_partial(ar + j, n), VecF::load_partial(br + j, n)).store_partial(o + j, n);
    }
  }
}

// Mean and 1/sqrt(var + eps) of one row: the mean first, then the mean of squared deviations
// (two passes over data already in cache; avoids the cancellation of E[x²] − E[x]²).
inline void row_moments(int64_t D, const float* xr, float eps, float* mean, float* rstd) {
  constexpr int W = VecF::kWidth;
  VecF s0 = VecF::zero(), s1 = VecF::zero();
  int64_t j = 0;
  for (; j + 2 * W <= D; j += 2 * W) {
    s0 = s0 + VecF::load(xr + j);
    s1 = s1 + VecF::load(xr + j + W);
  }
  for (; j < D; j += W) s0 = s0 + VecF::load_partial(xr + j, D - j < W ? int(D - j) : W);
  const float m = (s0 + s1).reduce_add() / float(D);
  const VecF mv = VecF::set1(m);
  VecF q0 = VecF::zero(), q1 = VecF::zero();
  j = 0;
  for (; j + 2 * W <= D; j += 2 * W) {
    const VecF d0 = VecF::load(xr + j) - mv, d1 = VecF::load(xr + j + W) - mv;
    q0 = fma(d0, d0, q0);
    q1 = fma(d1, d1, q1);
  }
  float tail = 0.0f;  // scalar tail: a partial vector would add m² for every lane past D
  for (; j < D; ++j) tail += (xr[j] - m) * (xr[j] - m);
  *mean = m;
  *rstd = 1.0f / std::sqrt(((q0 + q1).reduce_add() + tail) / float(D) + eps);
}

// y = (x − mean)·rstd·w + b for the n ≤ W lanes at j.
inline VecF normalize_lanes(const float* xr, int64_t j, int n, VecF mv, VecF rv, const float* weight,
                            const float* bias) {
  constexpr int W = VecF::kWidth;
  const bool full = n == W;
  VecF y = ((full ? VecF::load(xr + j) : VecF::load_partial(xr + j, n)) - mv) * rv;
  if (weight) y = y * (full ? VecF::load(weight + j) : VecF::load_partial(weight + j, n));
  if (bias) y = y + (full ? VecF::load(bias + j) : VecF::load_partial(bias + j, n));
  return y;
}

void layer_norm_rows_impl(int64_t r0, int64_t r1, int64_t D, const float* x, int64_t ldx,
                          const float* weight, const float* bias, float eps, float* out, int64_t ldo) {
  constexpr int W = VecF::kWidth;
  for (int64_t r = r0; r < r1; ++r) {
    const float* xr = x + r * ldx;
    float mean, rstd;
    row_moments(D, xr, eps, &mean, &rstd);
    const VecF mv = VecF::set1(mean), rv = VecF::set1(rstd);
    float* o = out + r * ldo;
    for (int64_t j = 0; j < D; j += W) {
      const int n = D - j < W ? int(D - j) : W;
      const VecF y = normalize_lanes(xr, j, n, mv, rv, weight, bias);
      if (n == W) y.store(o + j);
      else y.store_partial(o + j, n);
    }
  }
}

int64_t layer_norm_sum_rows_impl(int64_t t0, int64_t t1, int64_t D, const float* x, int64_t ldx,
                                 const int32_t* select, const float* weight, const float* bias,
                                 float eps, float* acc) {
  constexpr int W = VecF::kWidth;
  int64_t counted = 0;
  for (int64_t t = t0; t < t1; ++t) {
    if (select && select[t] < 0) continue;
    ++counted;
    const float* xr = x + t * ldx;
    float mean, rstd;
    row_moments(D, xr, eps, &mean, &rstd);
    const VecF mv = VecF::set1(mean), rv = VecF::set1(rstd);
    for (int64_t j = 0; j < D; j += W) {
      const int n = D - j < W ? int(D - j) : W;
      const VecF y = normalize_lanes(xr, j, n, mv, rv, weight, bias);
      if (n == W) (VecF::load(acc + j) + y).store(acc + j);
      else (VecF::load_partial(acc + j, n) + y).store_partial(acc + j, n);
    }
  }
  return counted;
}

void scale_add_row_impl(int64_t C, const float* y, const float* gate, bool accumulate, float* out) {
  constexpr int W = VecF::kWidth;
  int64_t j = 0;
  for (; j + W <= C; j += W) {
    VecF v = VecF::load(y + j);
    if (gate) v = v * VecF::load(gate + j);
    if (accumulate) v = v + VecF::load(out + j);
    v.store(out + j);
  }
  if (j < C) {
    const int n = int(C - j);
    VecF v = VecF::load_partial(y + j, n);
    if (gate) v = v * VecF::load_partial(gate + j, n);
    if (accumulate) v = v + VecF::load_partial(out + j, n);
    v.store_partial(out + j, n);
  }
}

void depthwise_conv_rows_impl(int64_t b, int64_t y0, int64_t y1, int64_t H, int64_t W, int64_t C,
                              const float* x, int64_t ldx, int64_t K, const float* weight_t,
                              const float* bias, bool apply_silu, float* out, int64_t ldo) {
  constexpr int VW = VecF::kWidth;
  const int64_t pad = K / 2;
  const float* img = x + b * H * W * ldx;
  float* oimg = out + b * H * W * ldo;
  for (int64_t oy = y0; oy < y1; ++oy) {
    const int64_t ky0 = std::max<int64_t>(0, pad - oy), ky1 = std::min<int64_t>(K, H + pad - oy);
    for (int64_t ox = 0; ox < W; ++ox) {
      const int64_t kx0 = std::max<int64_t>(0, pad - ox), kx1 = std::min<int64_t>(K, W + pad - ox);
      float* o = oimg + (oy * W + ox) * ldo;
      for (int64_t c = 0; c < C; c += VW) {
        const int n = C - c < VW ? int(C - c) : VW;
        const bool full = n == VW;
        VecF acc = bias ? (full ? VecF::load(bias + c) : VecF::load_partial(bias + c, n)) : VecF::zero();
        for (int64_t ky = ky0; ky < ky1; ++ky) {
          const float* row = img + ((oy + ky - pad) * W) * ldx;
          const float* wrow = weight_t + (ky * K) * C + c;
          for (int64_t kx = kx0; kx < kx1; ++kx) {
            const float* src = row + (ox + kx - pad) * ldx + c;
            const float* wk = wrow + kx * C;
            acc = full ? fma(VecF::load(wk), VecF::load(src), acc)
                       : fma(VecF::load_partial(wk, n), VecF::load_partial(src, n), acc);
          }
        }
        if (apply_silu) acc = silu_f32(acc);
        if (full) acc.store(o + c);
        else acc.store_partial(o + c, n);
      }
    }
  }
}

}  // namespace
}  // namespace ptq4vm::cpu
