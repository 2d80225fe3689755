// Causal conv1d + SiLU + per-token quantization for x_proj, either scan direction.
#pragma once
#include <cstdint>

#include "ptq4vm/math_mode.h"
#include "ptq4vm/token_quant.h"

namespace ptq4vm {

// causal_conv1d_f32 (conv1d.h) with apply_silu = true writes out (fp32, the scan's u), and
// q = quant(out) with the x_proj quantizer (row stride ldq, rows b·L + t).
void causal_conv1d_silu_quantize_f32(int64_t B, int64_t L, int64_t E, int64_t K, const float* x,
                                     int64_t ldx, const float* weight, const float* bias,
                                     bool reverse, float* out, int64_t ldo,
                                     const TokenQuantizer& quant, uint8_t* q, int64_t ldq,
                                     MathMode silu_math = MathMode::exact);
void causal_conv1d_silu_quantize_f32_ref(int64_t B, int64_t L, int64_t E, int64_t K,
                                         const float* x, int64_t ldx, const float* weight,
                                         const float* bias, bool reverse, float* out, int64_t ldo,
                                         const TokenQuantizer& quant, uint8_t* q, int64_t ldq);

}  // namespace ptq4vm
