// Device helpers shared by the kernel families: element loads/stores by type, the
// quantization formula of quantize.h, activation functions, launch helpers.
#pragma once
#include <cuda_fp16.h>

#include <algorithm>
#include <cstdint>
#include <string>

#include "ptq4vm/cuda/runtime.h"

namespace ptq4vm::cuda {

// ---- typed loads / stores in fp32
__device__ __forceinline__ float to_f32(float x) { return x; }
__device__ __forceinline__ float to_f32(__half x) { return __half2float(x); }
__device__ __forceinline__ void store_f32(float* p, float v) { *p = v; }
__device__ __forceinline__ void store_f32(__half* p, float v) { *p = __float2half_rn(v); }

// ---- quantize.h, bit-exact: v = (x · inv_smooth) · inv_scale (two roundings, no FMA),
// q = clamp(round_half_even(v) + zero, 0, qmax).
__device__ __forceinline__ uint8_t quantize_value(float x, float inv_smooth, float inv_scale, int zero,
                                                  int qmax) {
  float v = __fmul_rn(__fmul_rn(x, inv_smooth), inv_scale);
  v = fminf(fmaxf(v, -1073741824.0f), 1073741824.0f);  // keep the int conversion and +zero in range
  int q = __float2int_rn(v) + zero;
  q = q < 0 ? 0 : (q > qmax ? qmax : q);
  return static_cast<uint8_t>(q);
}
// Dequantize: ((q − zero) · scale) · smooth.
__device__ __forceinline__ float dequantize_value(uint8_t q, int zero, float scale, float smooth) {
  return __fmul_rn(__fmul_rn(static_cast<float>(static_cast<int>(q) - zero), scale), smooth);
}

__device__ __forceinline__ float silu(float x) { return x / (1.0f + __expf(-x)); }
// softplus(x) = log(1 + e^x), and x itself above 20 (scan.h).
__device__ __forceinline__ float softplus(float x) { return x > 20.0f ? x : log1pf(__expf(x)); }

// ---- host helpers
inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
inline int64_t round_up(int64_t a, int64_t b) { return ceil_div(a, b) * b; }
inline bool aligned(const void* p, size_t bytes) {
  return (reinterpret_cast<uintptr_t>(p) % bytes) == 0;
}
// Throws CudaArgError("fn: message") unless cond.
inline void require(bool cond, const char* fn, const std::string& message) {
  if (!cond) throw CudaArgError(std::string(fn) + ": " + message);
}

}  // namespace ptq4vm::cuda
