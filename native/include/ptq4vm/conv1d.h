// Causal depthwise conv1d (+ optional SiLU) along the token axis, token-major layout.
#pragma once
#include <cstdint>

#include "ptq4vm/math_mode.h"

namespace ptq4vm {

// x: [B, L, E] with row (token) stride ldx; weight: [E, K] (PyTorch [E,1,K] squeezed); bias: [E] or null.
// Forward (reverse = false), zero padding before the sequence:
//   out[b,t,e] = bias[e] + Σ_{j=0}^{K-1} weight[e, K-1-j] · x[b, t-j, e]
// Reverse (the Vim backward branch run in original token order; equals flip → conv → flip):
//   out[b,t,e] = bias[e] + Σ_{j=0}^{K-1} weight[e, K-1-j] · x[b, t+j, e]
// then out = silu(out) if apply_silu, evaluated per silu_math (math_mode.h). out: [B, L, E]
// with row stride ldo; it must not overlap x (each output token reads its neighbours).
void causal_conv1d_f32(int64_t B, int64_t L, int64_t E, int64_t K, const float* x, int64_t ldx,
                       const float* weight, const float* bias, bool reverse, bool apply_silu,
                       float* out, int64_t ldo, MathMode silu_math = MathMode::exact);
// The reference always computes exactly (in double).
void causal_conv1d_f32_ref(int64_t B, int64_t L, int64_t E, int64_t K, const float* x, int64_t ldx,
                           const float* weight, const float* bias, bool reverse, bool apply_silu,
                           float* out, int64_t ldo);

}  // namespace ptq4vm
