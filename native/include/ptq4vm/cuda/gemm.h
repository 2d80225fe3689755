// FP16 GEMM on tensor cores (fp32 accumulation), the honest baseline of the INT8 path, and a
// plain fp32 GEMM for the fp32 device path. Layout as in ptq4vm/gemm.h: C = A · Wᵀ + bias with
// activations [M, K] token-major and weights [N, K].
#pragma once
#include <cuda_fp16.h>

#include <cstdint>

#include "ptq4vm/cuda/gemm_int8.h"
#include "ptq4vm/cuda/runtime.h"

namespace ptq4vm::cuda {

// Weights as fp16, zero padded like Int8Weights (n_pad multiple of 128, k_pad multiple of 32).
struct F16Weights {
  int64_t N = 0, K = 0, n_pad = 0, k_pad = 0;
  DeviceBuffer data;  // half [n_pad, k_pad]
  const __half* w() const { return data.as<const __half>(); }
};
// w: host fp32 [N, K], rounded to fp16 (nearest even).
F16Weights upload_f16_weights(Context& ctx, int64_t N, int64_t K, const float* w);

// Outputs: any subset, at least one. y = Σ_k A·W (fp32) + bias[n].
struct F16GemmOut {
  __half* f16 = nullptr;
  int64_t ld_f16 = 0;
  float* f32 = nullptr;
  int64_t ld_f32 = 0;
  bool accumulate = false;  // f32 += y
};

// A: [M, K] half, row stride lda. bias: fp32 [N] or null. Tensor cores need A 16-byte
// aligned and lda a multiple of 8; otherwise the simple kernel runs.
void gemm_f16(int64_t M, const __half* A, int64_t lda, const F16Weights& W, const float* bias,
              const F16GemmOut& out, cudaStream_t stream, GemmTile tile = GemmTile::Auto);

// fp32 GEMM (SIMT), the contract of gemm_f32 with transA = false, transB = true:
// C[M,N] = A[M,K] · W[N,K]ᵀ + bias (+ C when accumulate). W is a plain device [N, K] matrix
// with row stride ldw.
void gemm_f32_nt(int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, const float* W,
                 int64_t ldw, const float* bias, bool accumulate, float* C, int64_t ldc,
                 cudaStream_t stream);

}  // namespace ptq4vm::cuda
