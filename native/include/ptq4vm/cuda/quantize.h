// Activation quantization on the GPU (device pointers), the formula of ptq4vm/quantize.h.
#pragma once
#include <cstdint>

#include "ptq4vm/cuda/runtime.h"

namespace ptq4vm::cuda {

// q[r,j] = clamp(round_half_even((x[r,j] · inv_smooth[j]) · inv_scale[p]) + zero[p], 0, qmax),
// p = r % quant.period; x is F32 or F16 with row stride ldx; q has row stride ldq.
void quantize_u8(int64_t rows, int64_t cols, DType x_type, const void* x, int64_t ldx,
                 const QuantParams& quant, uint8_t* q, int64_t ldq, cudaStream_t stream);

// x[r,j] = ((q[r,j] − zero[p]) · scale[p]) · smooth[j], written as F32 or F16.
void dequantize_u8(int64_t rows, int64_t cols, const uint8_t* q, int64_t ldq, const DequantParams& dq,
                   DType y_type, void* y, int64_t ldy, cudaStream_t stream);

}  // namespace ptq4vm::cuda
