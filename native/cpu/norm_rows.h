// Inner loop of add_rmsnorm_f32 / add_rmsnorm_quantize_f32 against VecF (see
// vector_kernels.h). Two passes per row: residual add + sum of squares (four independent
// accumulators), then scale (and quantize when a quantizer is given; out may then be null).
#pragma once
#include <cmath>
#include <cstdint>

#include "ptq4vm/token_quant.h"
#include "quantize_rows.h"
#include "simd.h"

namespace ptq4vm::cpu {
namespace {

void add_rmsnorm_rows_impl(int64_t r0, int64_t r1, int64_t D, const float* x,
                           const float* residual_in, float* residual_out, const float* weight,
                           float eps, float* out, const TokenQuantizer* quant, uint8_t* q, int64_t ldq) {
  constexpr int W = VecF::kWidth;
  for (int64_t r = r0; r < r1; ++r) {
    const float* xr = x + r * D;
    const float* rin = residual_in ? residual_in + r * D : nullptr;
    float* rout = residual_out + r * D;
    VecF s0 = VecF::zero(), s1 = VecF::zero(), s2 = VecF::zero(), s3 = VecF::zero();
    int64_t j = 0;
    for (; j + 4 * W <= D; j += 4 * W) {
      VecF v0 = VecF::load(xr + j), v1 = VecF::load(xr + j + W);
      VecF v2 = VecF::load(xr + j + 2 * W), v3 = VecF::load(xr + j + 3 * W);
      if (rin) {
        v0 = v0 + VecF::load(rin + j);
        v1 = v1 + VecF::load(rin + j + W);
        v2 = v2 + VecF::load(rin + j + 2 * W);
        v3 = v3 + VecF::load(rin + j + 3 * W);
      }
      v0.store(rout + j);
      v1.store(rout + j + W);
      v2.store(rout + j + 2 * W);
      v3.store(rout + j + 3 * W);
      s0 = fma(v0, v0, s0);
      s1 = fma(v1, v1, s1);
      s2 = fma(v2, v2, s2);
      s3 = fma(v3, v3, s3);
    }
    for (; j < D; j += W) {
      const int n = D - j < W ? int(D - j) : W;
      VecF v = VecF::load_partial(xr + j, n);
      if (rin) v = v + VecF::load_partial(rin + j, n);
      v.store_partial(rout + j, n);
      s0 = fma(v, v, s0);
    }
    const float mean_sq = ((s0 + s1) + (s2 + s3)).reduce_add() / float(D);
    const VecF scale = VecF::set1(1.0f / std::sqrt(mean_sq + eps));
    float* o = out ? out + r * D : nullptr;
    VecF q_inv_scale, q_zero, q_max;
    uint8_t* qr = nullptr;
    if (quant) {
      const int64_t p = r % quant->period;
      q_inv_scale = VecF::set1(quant->inv_scale[p]);
      q_zero = VecF::set1(float(quant->zero[p]));
      q_max = VecF::set1(float(quant->qmax));
      qr = q + r * ldq;
    }
    for (j = 0; j < D; j += W) {
      const int n = D - j < W ? int(D - j) : W;
      const bool full = n == W;
      const VecF v = full ? VecF::load(rout + j) * scale * VecF::load(weight + j)
                          : VecF::load_partial(rout + j, n) * scale * VecF::load_partial(weight + j, n);
      if (o) {
        if (full) v.store(o + j);
        else v.store_partial(o + j, n);
      }
      if (qr) {
        const VecF sm = quant->inv_smooth ? (full ? VecF::load(quant->inv_smooth + j)
                                                  : VecF::load_partial(quant->inv_smooth + j, n))
                                          : VecF::set1(1.0f);
        store_u8(qr + j, quantize_lanes(v, sm, q_inv_scale, q_zero, q_max), n);
      }
    }
  }
}

}  // namespace
}  // namespace ptq4vm::cpu
