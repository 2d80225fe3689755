// FP32 GEMM, AVX2 + FMA: 6 × 16 micro-tile (12 ymm accumulators, 2 for B, 1 broadcast).
#include <immintrin.h>

#include "gemm_f32_kernels.h"
#include "gemm_f32_packing.h"

namespace ptq4vm::cpu::avx2 {
namespace {

constexpr int MR = kGemmMR, NR = kGemmNR;
static_assert(NR == 16, "the micro-kernel holds a tile row in two ymm registers");

__m256i lane_mask(int n) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

void micro_kernel(int64_t kc, const float* __restrict a, const float* __restrict b, float* c,
                  int64_t ldc, int m, int n, const float* bias, bool load_c) {
  __m256 acc[MR][2];
#pragma GCC unroll 6
  for (int i = 0; i < MR; ++i) acc[i][0] = acc[i][1] = _mm256_setzero_ps();
#pragma GCC unroll 2
  for (int64_t k = 0; k < kc; ++k) {
    const __m256 b0 = _mm256_load_ps(b), b1 = _mm256_load_ps(b + 8);
#pragma GCC unroll 6
    for (int i = 0; i < MR; ++i) {
      const __m256 ai = _mm256_broadcast_ss(a + i);
      acc[i][0] = _mm256_fmadd_ps(ai, b0, acc[i][0]);
      acc[i][1] = _mm256_fmadd_ps(ai, b1, acc[i][1]);
    }
    a += MR;
    b += NR;
  }
  const __m256i m0 = lane_mask(n), m1 = lane_mask(n - 8);
  const __m256 bias0 = bias ? _mm256_maskload_ps(bias, m0) : _mm256_setzero_ps();
  const __m256 bias1 = bias ? _mm256_maskload_ps(bias + 8, m1) : _mm256_setzero_ps();
#pragma GCC unroll 6
  for (int i = 0; i < MR; ++i) {
    if (i >= m) break;
    float* row = c + i * ldc;
    __m256 v0 = acc[i][0], v1 = acc[i][1];
    if (load_c) {
      v0 = _mm256_add_ps(v0, _mm256_maskload_ps(row, m0));
      v1 = _mm256_add_ps(v1, _mm256_maskload_ps(row + 8, m1));
    }
    _mm256_maskstore_ps(row, m0, _mm256_add_ps(v0, bias0));
    _mm256_maskstore_ps(row + 8, m1, _mm256_add_ps(v1, bias1));
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
    const float* b_panel = bp + jr * kc;
    for (int64_t ir = 0; ir < mc; ir += MR) {
      const int m = int(mc - ir < MR ? mc - ir : MR);
      micro_kernel(kc, ap + ir * kc, b_panel, c + ir * ldc + jr, ldc, m, n, bias ? bias + jr : nullptr,
                   load_c);
    }
  }
}

}  // namespace ptq4vm::cpu::avx2
