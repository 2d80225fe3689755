// Residual add + RMSNorm on the GPU (device pointers), the contract of ptq4vm/norm.h, with the
// normalised output written as F32, F16 or quantized U8 (the fused norm + per-token quantize
// that feeds in_proj).
#pragma once
#include <cstdint>

#include "ptq4vm/cuda/runtime.h"

namespace ptq4vm::cuda {

// For each row r (all buffers contiguous, row stride D):
//   res = x[r] + (residual_in ? residual_in[r] : 0)    -> residual_out[r] (fp32; may alias residual_in)
//   y   = res · rsqrt(mean(res²) + eps) · weight
//   out[r] = y as out_type; for U8: quantize.h with quant (p = r % quant.period, inv_smooth[j]).
// x is F32 or F16. residual_out may be null (then the sum is not stored).
struct AddRmsNormArgs {
  int64_t rows = 0, D = 0;
  DType x_type = DType::F32;
  const void* x = nullptr;
  const float* residual_in = nullptr;
  float* residual_out = nullptr;
  const float* weight = nullptr;
  float eps = 1e-5f;
  DType out_type = DType::F32;
  void* out = nullptr;
  QuantParams quant;  // U8 only
};
void add_rmsnorm(const AddRmsNormArgs& a, cudaStream_t stream);

}  // namespace ptq4vm::cuda
