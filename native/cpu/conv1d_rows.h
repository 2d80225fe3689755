// Inner loop of causal_conv1d_f32 / causal_conv1d_silu_quantize_f32 against VecF (see
// vector_kernels.h): for each token, each channel block accumulates the K taps that fall
// inside the sequence, applies SiLU (FastSilu: MathMode::fast's), stores, and quantizes when a
// quantizer is given.
#pragma once
#include <algorithm>
#include <cstdint>

#include "ptq4vm/token_quant.h"
#include "quantize_rows.h"
#include "simd.h"

namespace ptq4vm::cpu {
namespace {

// How far ahead the token loop prefetches the row of x it will need (1–8 measured alike).
constexpr int64_t kConvPrefetchTokens = 2;

template <bool FastSilu>
void causal_conv1d_rows_impl(int64_t b, int64_t t0, int64_t t1, int64_t L, int64_t E, int64_t K,
                             const float* x, int64_t ldx, const float* weight_t, const float* bias,
                             bool reverse, bool apply_silu, float* out, int64_t ldo,
                             const TokenQuantizer* quant, uint8_t* q, int64_t ldq) {
  constexpr int W = VecF::kWidth;
  const float* xb = x + b * L * ldx;
  float* ob = out + b * L * ldo;
  // Tap j reads token t − j (forward) or t + j (reverse) with weight weight_t[K − 1 − j].
  const int64_t step = reverse ? 1 : -1;
  for (int64_t t = t0; t < t1; ++t) {
    const int64_t taps = reverse ? std::min<int64_t>(K, L - t) : std::min<int64_t>(K, t + 1);
    float* orow = ob + t * ldo;
    VecF q_inv_scale, q_zero, q_max;
    uint8_t* qrow = nullptr;
    if (quant) {
      const int64_t row = b * L + t, p = row % quant->period;
      q_inv_scale = VecF::set1(quant->inv_scale[p]);
      q_zero = VecF::set1(float(quant->zero[p]));
      q_max = VecF::set1(float(quant->qmax));
      qrow = q + row * ldq;
    }
    // The one row of x this token's taps add to the window (t, or t + K − 1 in reverse) comes
    // from memory the op before wrote (in_proj: megabytes, out of L2); it is fetched
    // kConvPrefetchTokens tokens ahead, a cache line per channel block, so the loads below
    // hit (Zen 4, Vim-Ti batch 8 with the input out of cache: 1.3 → 0.8 ms per layer, 1 thread).
    const int64_t ahead = (reverse ? t + K - 1 : t) + kConvPrefetchTokens;
    const float* prefetch_row = ahead < L ? xb + ahead * ldx : nullptr;
    for (int64_t e = 0; e < E; e += W) {
      if (prefetch_row) __builtin_prefetch(prefetch_row + e);
      const int n = E - e < W ? int(E - e) : W;
      const bool full = n == W;
      VecF acc = bias ? (full ? VecF::load(bias + e) : VecF::load_partial(bias + e, n)) : VecF::zero();
      for (int64_t j = 0; j < taps; ++j) {
        const float* xr = xb + (t + step * j) * ldx + e;
        const float* wr = weight_t + (K - 1 - j) * E + e;
        acc = full ? fma(VecF::load(wr), VecF::load(xr), acc)
                   : fma(VecF::load_partial(wr, n), VecF::load_partial(xr, n), acc);
      }
      if (apply_silu) acc = FastSilu ? silu_fast_f32(acc) : silu_f32(acc);
      if (full) acc.store(orow + e);
      else acc.store_partial(orow + e, n);
      if (qrow) {
        const VecF sm = quant->inv_smooth ? (full ? VecF::load(quant->inv_smooth + e)
                                                  : VecF::load_partial(quant->inv_smooth + e, n))
                                          : VecF::set1(1.0f);
        store_u8(qrow + e, quantize_lanes(acc, sm, q_inv_scale, q_zero, q_max), n);
      }
    }
  }
}

}  // namespace
}  // namespace ptq4vm::cpu
