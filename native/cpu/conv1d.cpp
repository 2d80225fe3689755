// causal_conv1d_f32 and causal_conv1d_silu_quantize_f32 drivers: weight transposed once to
// [K, E], tokens split across threads, per-ISA token loop (conv1d_rows.h); scalar references.
#include "ptq4vm/conv1d.h"

#include <algorithm>
#include <cmath>

#include "ptq4vm/conv1d_quant.h"
#include "ptq4vm/quantize.h"
#include "ptq4vm/runtime.h"
#include "scratch.h"
#include "vector_kernels.h"

namespace ptq4vm {
namespace {

void run_tokens(int64_t B, int64_t L, int64_t E, int64_t K, const float* x, int64_t ldx, const float* weight,
                const float* bias, bool reverse, bool apply_silu, MathMode silu_math, float* out,
                int64_t ldo, const TokenQuantizer* quant, uint8_t* q, int64_t ldq) {
  if (B <= 0 || L <= 0 || E <= 0) return;
  float* weight_t = cpu::thread_scratch_as<float>(cpu::ScratchSlot::KernelLocal, size_t(K * E));
  for (int64_t e = 0; e < E; ++e)
    for (int64_t k = 0; k < K; ++k) weight_t[k * E + e] = weight[e * K + k];
  const auto rows_fn = cpu::pick_isa(int(active_isa()), cpu::scalar::causal_conv1d_rows,
                                     cpu::avx2::causal_conv1d_rows, cpu::avx512::causal_conv1d_rows);
  // Work items are tokens of the flattened [B·L] sequence; a chunk may span batch items.
  parallel_for(B * L, std::max<int64_t>(1, 8192 / (E * std::max<int64_t>(K, 1))),
               [&](int64_t i0, int64_t i1) {
                 while (i0 < i1) {
                   const int64_t b = i0 / L, t0 = i0 % L, t1 = std::min(L, t0 + (i1 - i0));
                   rows_fn(b, t0, t1, L, E, K, x, ldx, weight_t, bias, reverse, apply_silu, silu_math, out,
                           ldo, quant, q, ldq);
                   i0 += t1 - t0;
                 }
               });
}

}  // namespace

void causal_conv1d_f32(int64_t B, int64_t L, int64_t E, int64_t K, const float* x, int64_t ldx,
                       const float* weight, const float* bias, bool reverse, bool apply_silu,
                       float* out, int64_t ldo, MathMode silu_math) {
  run_tokens(B, L, E, K, x, ldx, weight, bias, reverse, apply_silu, silu_math, out, ldo, nullptr, nullptr, 0);
}

void causal_conv1d_silu_quantize_f32(int64_t B, int64_t L, int64_t E, int64_t K, const float* x,
                                     int64_t ldx, const float* weight, const float* bias,
                                     bool reverse, float* out, int64_t ldo,
                                     const TokenQuantizer& quant, uint8_t* q, int64_t ldq,
                                     MathMode silu_math) {
  run_tokens(B, L, E, K, x, ldx, weight, bias, reverse, true, silu_math, out, ldo, &quant, q, ldq);
}

void causal_conv1d_f32_ref(int64_t B, int64_t L, int64_t E, int64_t K, const float* x, int64_t ldx,
                           const float* weight, const float* bias, bool reverse, bool apply_silu,
                           float* out, int64_t ldo) {
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t < L; ++t)
      for (int64_t e = 0; e < E; ++e) {
        double acc = bias ? bias[e] : 0.0;
        for (int64_t j = 0; j < K; ++j) {
          const int64_t src = reverse ? t + j : t - j;
          if (src < 0 || src >= L) continue;
          acc += double(weight[e * K + K - 1 - j]) * x[(b * L + src) * ldx + e];
        }
        if (apply_silu) acc = acc / (1.0 + std::exp(-acc));
        out[(b * L + t) * ldo + e] = float(acc);
      }
}

void causal_conv1d_silu_quantize_f32_ref(int64_t B, int64_t L, int64_t E, int64_t K,
                                         const float* x, int64_t ldx, const float* weight,
                                         const float* bias, bool reverse, float* out, int64_t ldo,
                                         const TokenQuantizer& quant, uint8_t* q, int64_t ldq) {
  causal_conv1d_f32_ref(B, L, E, K, x, ldx, weight, bias, reverse, true, out, ldo);
  quantize_u8_ref(B * L, E, quant.period, out, ldo, quant.inv_smooth, quant.inv_scale, quant.zero, quant.qmax,
                  q, ldq);
}

}  // namespace ptq4vm
