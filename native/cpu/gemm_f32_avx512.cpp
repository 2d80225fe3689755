// FP32 GEMM, AVX-512: 12 × 32 micro-tiles (24 zmm accumulators, 2 for B, A broadcast from
// memory), and 8 × 48 tiles for column counts that 48-wide panels pad less.
#include <immintrin.h>

#include "gemm_f32_kernels.h"
#include "gemm_f32_packing.h"

#if defined(__GNUC__) && !defined(__clang__)
// GCC 12 false positive on the _mm512_undefined_* placeholders inside its own intrinsics.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif

namespace ptq4vm::cpu::avx512 {
namespace {

__mmask16 lane_mask(int n) { return n >= 16 ? __mmask16(0xFFFF) : n <= 0 ? __mmask16(0) : __mmask16((1u << n) - 1u); }

// C[m, n] (+)= a-panel · b-panel over kc, for the valid corner m ≤ MR, n ≤ 16·NV of the tile.
template <int MR, int NV>
void micro_kernel(int64_t kc, const float* __restrict a, const float* __restrict b, float* c,
                  int64_t ldc, int m, int n, const float* bias, bool load_c) {
  constexpr int NR = 16 * NV;
  __m512 acc[MR][NV];
#pragma GCC unroll 12
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 3
    for (int j = 0; j < NV; ++j) acc[i][j] = _mm512_setzero_ps();
#pragma GCC unroll 2
  for (int64_t k = 0; k < kc; ++k) {
    __m512 bv[NV];
#pragma GCC unroll 3
    for (int j = 0; j < NV; ++j) bv[j] = _mm512_load_ps(b + 16 * j);
#pragma GCC unroll 12
    for (int i = 0; i < MR; ++i) {
      const __m512 ai = _mm512_set1_ps(a[i]);
#pragma GCC unroll 3
      for (int j = 0; j < NV; ++j) acc[i][j] = _mm512_fmadd_ps(ai, bv[j], acc[i][j]);
    }
    a += MR;
    b += NR;
  }
  __mmask16 mask[NV];
  __m512 bias_v[NV];
#pragma GCC unroll 3
  for (int j = 0; j < NV; ++j) {
    mask[j] = lane_mask(n - 16 * j);
    bias_v[j] = bias ? _mm512_maskz_loadu_ps(mask[j], bias + 16 * j) : _mm512_setzero_ps();
  }
  // Fully unrolled so every acc index is a constant (else GCC keeps acc in memory throughout).
#pragma GCC unroll 12
  for (int i = 0; i < MR; ++i) {
    if (i >= m) break;
    float* row = c + i * ldc;
#pragma GCC unroll 3
    for (int j = 0; j < NV; ++j) {
      __m512 v = acc[i][j];
      if (load_c) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(mask[j], row + 16 * j));
      _mm512_mask_storeu_ps(row + 16 * j, mask[j], _mm512_add_ps(v, bias_v[j]));
    }
  }
}

template <int MR, int NV>
void macro_kernel(int64_t mc, int64_t nc, int64_t kc, const float* ap, const float* bp, float* c,
                  int64_t ldc, const float* bias, bool load_c) {
  constexpr int NR = 16 * NV;
  for (int64_t jr = 0; jr < nc; jr += NR) {
    const int n = int(nc - jr < NR ? nc - jr : NR);
    const float* b_panel = bp + jr * kc;
    for (int64_t ir = 0; ir < mc; ir += MR) {
      const int m = int(mc - ir < MR ? mc - ir : MR);
      micro_kernel<MR, NV>(kc, ap + ir * kc, b_panel, c + ir * ldc + jr, ldc, m, n,
                           bias ? bias + jr : nullptr, load_c);
    }
  }
}

}  // namespace

static_assert(kGemmNR == 32 && wide::kGemmNR == 48, "tile widths are whole zmm registers");

void gemm_f32_pack_a(bool trans_a, int64_t mc, int64_t kc, const float* a, int64_t lda, float* ap) {
  pack_a_panels<kGemmMR>(trans_a, mc, kc, a, lda, ap);
}
void gemm_f32_pack_b(bool trans_b, int64_t kc, int64_t nc, const float* b, int64_t ldb, float* bp) {
  pack_b_panels<kGemmNR>(trans_b, kc, nc, b, ldb, bp);
}
void gemm_f32_macro(int64_t mc, int64_t nc, int64_t kc, const float* ap, const float* bp, float* c,
                    int64_t ldc, const float* bias, bool load_c) {
  macro_kernel<kGemmMR, kGemmNR / 16>(mc, nc, kc, ap, bp, c, ldc, bias, load_c);
}

namespace wide {
void gemm_f32_pack_a(bool trans_a, int64_t mc, int64_t kc, const float* a, int64_t lda, float* ap) {
  pack_a_panels<kGemmMR>(trans_a, mc, kc, a, lda, ap);
}
void gemm_f32_pack_b(bool trans_b, int64_t kc, int64_t nc, const float* b, int64_t ldb, float* bp) {
  pack_b_panels<kGemmNR>(trans_b, kc, nc, b, ldb, bp);
}
void gemm_f32_macro(int64_t mc, int64_t nc, int64_t kc, const float* ap, const float* bp, float* c,
                    int64_t ldc, const float* bias, bool load_c) {
  macro_kernel<kGemmMR, kGemmNR / 16>(mc, nc, kc, ap, bp, c, ldc, bias, load_c);
}
}  // namespace wide

}  // namespace ptq4vm::cpu::avx512
