// Residual add + RMSNorm + per-token quantization for in_proj, in one pass over the rows.
#pragma once
#include <cstdint>

#include "ptq4vm/token_quant.h"

namespace ptq4vm {

// add_rmsnorm_f32 (norm.h), then q = quant(out) with the in_proj quantizer (σ folded in via
// quant.inv_smooth). out may be null (the normalized rows are then not stored); q has row
// stride ldq. residual_out may alias residual_in.
void add_rmsnorm_quantize_f32(int64_t rows, int64_t D, const float* x, const float* residual_in,
                              float* residual_out, const float* weight, float eps, float* out,
                              const TokenQuantizer& quant, uint8_t* q, int64_t ldq);
void add_rmsnorm_quantize_f32_ref(int64_t rows, int64_t D, const float* x, const float* residual_in,
                                  float* residual_out, const float* weight, float eps, float* out,
                                  const TokenQuantizer& quant, uint8_t* q, int64_t ldq);

}  // namespace ptq4vm
