// FP32 GEMM, portable path (any x86-64 or other CPU): 4 × 8 micro-tile in plain C++.
#include "gemm_f32_kernels.h"
#include "gemm_f32_packing.h"

namespace ptq4vm::cpu::scalar {
namespace {

constexpr int MR = kGemmMR, NR = kGemmNR;

void micro_kernel(int64_t kc, const float* __restrict a, const float* __restrict b, float* c,
                  int64_t ldc, int m, int n, const float* bias, bool load_c) {
  float acc[MR][NR] = {};
  for (int64_t k = 0; k < kc; ++k) {
    for (int i = 0; i < MR; ++i)
      for (int j = 0; j < NR; ++j) acc[i][j] += a[i] * b[j];
    a += MR;
    b += NR;
  }
  for (int i = 0; i < m; ++i) {
    float* row = c + i * ldc;
    for (int j = 0; j < n; ++j) {
      float v = acc[i][j];
      if (load_c) v += row[j];
      row[j] = bias ? v + bias[j] : v;
    }
  }
}

}  // namespace

void gemm_f32_pack_a(bool trans_a, int64_t mc, int64_t kc, const float* a, int64_t lda, float* ap) {
  pack_a_panels<MR>(trans_a, mc, kc, a, lda, ap);
}

void gemm_f32_pack_b(bool trans_b, int64_t kc, int64_t nc, const float* b, int64_t ldb, float* bp) {
  pack_b_panels<NR>(trans_b, kc, nc, b, ldb, bp);
}

void gemm_f32_macro(int64_t mc, int64_t nc, int64_t kc, const float* ap, const float* bp, float* c,
                    int64_t ldc, const float* bias, bool load_c) {
  for (int64_t jr = 0; jr < nc; jr += NR) {
    const int n = int(nc - jr < NR ? nc - jr : NR);
    for (int64_t ir = 0; ir < mc; ir += MR) {
      const int m = int(mc - ir < MR ? mc - ir : MR);
      micro_kernel(kc, ap + ir * kc, bp + jr * kc, c + ir * ldc + jr, ldc, m, n,
                   bias ? bias + jr : nullptr, load_c);
    }
  }
}

}  // namespace ptq4vm::cpu::scalar
