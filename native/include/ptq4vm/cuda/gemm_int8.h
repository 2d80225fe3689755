// INT8 GEMM on the GPU (device pointers), the contract of ptq4vm/gemm_int8.h: u8 (or s8)
// activations [M, K] × s8 weights [N, K] → s32 accumulators, with the dequantizing epilogue
//   v = (float)(acc[m,n] − a_zero[p] · wsum[n]) · a_scale[p];  y[m,n] = fma(v, w_scale[n], bias[n]),
//   p = m % period, with exactly the roundings of gemm_int8.h (one product, one fused
// multiply-add), so that the fp32 result equals the CPU reference's bit for bit.
#pragma once
#include <cuda_fp16.h>

#include <cstdint>

#include "ptq4vm/cuda/runtime.h"
#include "ptq4vm/gemm_int8.h"

namespace ptq4vm::cuda {

// Which kernel computes a GEMM. Auto picks a tensor-core tile shape from M, N and the device
// (or Simple when KernelMode::Simple is active or the operands are not 16-byte aligned);
// tests and benchmarks name one explicitly.
enum class GemmTile : int { Auto = 0, Large = 1, Medium = 2, Small = 3, Simple = 4 };
const char* gemm_tile_name(GemmTile t);

// Weights uploaded once, zero padded to [n_pad, k_pad] (n_pad a multiple of 128, k_pad a
// multiple of 64) so that the kernels read whole tiles without bounds checks; wsum[n] =
// Σ_k qw[n,k] over the real K. K itself is arbitrary: activations are zero-filled past K.
struct Int8Weights {
  int64_t N = 0, K = 0, n_pad = 0, k_pad = 0;
  DeviceBuffer data;  // int8 [n_pad, k_pad]
  DeviceBuffer wsum;  // int32 [N]
  const int8_t* qw() const { return data.as<const int8_t>(); }
  const int32_t* wsum_ptr() const { return wsum.as<const int32_t>(); }
};
// qw: host [N, K] row-major. Uploads on ctx's stream (persistent memory, not the cache).
Int8Weights upload_int8_weights(Context& ctx, int64_t N, int64_t K, const int8_t* qw);

// Outputs the epilogue writes; any subset, at least one.
//   f32: y (accumulate: f32 += y), row stride ld_f32;  f16: y rounded to nearest even.
//   u8 : columns [0, u8_cols) of y quantized for the next op with `quant` (quantize.h formula,
//        p = m % quant.period, inv_smooth indexed by n), row stride ld_u8.
struct Int8GemmOut {
  float* f32 = nullptr;
  int64_t ld_f32 = 0;
  __half* f16 = nullptr;
  int64_t ld_f16 = 0;
  uint8_t* u8 = nullptr;
  int64_t ld_u8 = 0;
  int64_t u8_cols = 0;
  QuantParams quant;
};

// A: [M, K] u8 with row stride lda (device). ep: the CPU Int8Epilogue with device pointers
// (a_scale/a_zero [period], w_scale/bias [N]; accumulate applies to the f32 output).
// The tensor-core kernels need A 16-byte aligned and lda a multiple of 16; otherwise the
// simple kernel runs.
void gemm_u8s8(int64_t M, const uint8_t* A, int64_t lda, const Int8Weights& W,
               const Int8Epilogue& ep, const Int8GemmOut& out, cudaStream_t stream,
               GemmTile tile = GemmTile::Auto);
// Signed activations (symmetric: a_zero may be null, meaning 0).
void gemm_s8s8(int64_t M, const int8_t* A, int64_t lda, const Int8Weights& W,
               const Int8Epilogue& ep, const Int8GemmOut& out, cudaStream_t stream,
               GemmTile tile = GemmTile::Auto);
// Raw accumulators C[m,n] = Σ_k A[m,k]·qw[n,k] (tests check exact equality).
void gemm_u8s8_s32(int64_t M, const uint8_t* A, int64_t lda, const Int8Weights& W, int32_t* C,
                   int64_t ldc, cudaStream_t stream, GemmTile tile = GemmTile::Auto);
void gemm_s8s8_s32(int64_t M, const int8_t* A, int64_t lda, const Int8Weights& W, int32_t* C,
                   int64_t ldc, cudaStream_t stream, GemmTile tile = GemmTile::Auto);

// The tile Auto would pick (benchmarks print it).
GemmTile choose_gemm_tile(int64_t M, int64_t N, int device);

}  // namespace ptq4vm::cuda
