// FP32 GEMM. Layout convention for the whole project: activations are token-major
// row-major matrices [tokens, channels]; a linear layer's weight is [out, in] (PyTorch),
// so the inference product is C = A · Wᵀ ("NT").
#pragma once
#include <cstdint>

namespace ptq4vm {

// C[M,N] = op(A)[M,K] · op(B)[K,N] + bias[N] (+ C if accumulate).
//   op(A) = A   : A stored M×K row-major with row stride lda;  transA: A stored K×M.
//   op(B) = B   : B stored K×N row-major with row stride ldb;  transB: B stored N×K (a weight).
// bias may be null. M, N or K may be 0 (K = 0 writes bias or leaves C when accumulating).
void gemm_f32(bool transA, bool transB, int64_t M, int64_t N, int64_t K,
              const float* A, int64_t lda, const float* B, int64_t ldb,
              const float* bias, bool accumulate, float* C, int64_t ldc);

// Scalar reference of the same contract (double accumulation), for tests.
void gemm_f32_ref(bool transA, bool transB, int64_t M, int64_t N, int64_t K,
                  const float* A, int64_t lda, const float* B, int64_t ldb,
                  const float* bias, bool accumulate, float* C, int64_t ldc);

}  // namespace ptq4vm
