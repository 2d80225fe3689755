// Residual add + RMSNorm (Mamba "fused add norm", residual kept in fp32).
#pragma once
#include <cstdint>

namespace ptq4vm {

// For each row r of `rows`, over D channels (all buffers contiguous, row stride D):
//   res = x[r] + (residual_in ? residual_in[r] : 0)      -> residual_out[r]
//   out[r] = res * rsqrt(mean(res²) + eps) * weight      (1/sqrt in fp32, sum of squares in fp32)
// Aliasing: residual_out may be residual_in or x; out may be x or residual_in, never residual_out.
void add_rmsnorm_f32(int64_t rows, int64_t D, const float* x, const float* residual_in,
                     float* residual_out, const float* weight, float eps, float* out);
void add_rmsnorm_f32_ref(int64_t rows, int64_t D, const float* x, const float* residual_in,
                         float* residual_out, const float* weight, float eps, float* out);

}  // namespace ptq4vm
