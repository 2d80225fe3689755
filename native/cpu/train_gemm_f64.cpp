// Naive double GEMM with the gemm_f32 contract, for the float64 mode of lib/autograd (gradient
// checks on tiny shapes); speed is not a goal.
#include "ptq4vm/train.h"

namespace ptq4vm {

void gemm_f64(bool transA, bool transB, int64_t M, int64_t N, int64_t K, const double* A, int64_t lda,
              const double* B, int64_t ldb, const double* bias, bool accumulate, double* C, int64_t ldc) {
  for (int64_t i = 0; i < M; ++i) {
    for (int64_t j = 0; j < N; ++j) {
      double acc = bias ? bias[j] : 0.0;
      for (int64_t k = 0; k < K; ++k) {
        const double a = transA ? A[k * lda + i] : A[i * lda + k];
        const double b = transB ? B[j * ldb + k] : B[k * ldb + j];
        acc += a * b;
      }
      C[i * ldc + j] = accumulate ? C[i * ldc + j] + acc : acc;
    }
  }
}

}  // namespace ptq4vm
