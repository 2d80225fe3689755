// FP32 GEMM, AVX-512: 12 × 32 micro-tiles (24 zmm accumulators, 2 for B, A broadcast from
// memory), 8 × 48 tiles for column counts that 48-wide panels pad less and 12 × 16 tiles for
// narrow outputs. Besides packed panels, the kernels read a row-major op(A) or op(B) in place
// (gemm_f32_macro_direct), which saves the packing where each element feeds few products.
#include <immintrin.h>

#include <algorithm>

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

// C[m, n] (+)= A-tile · B-tile over kc, for the valid corner m ≤ MR, n ≤ 16·NV of the tile.
// The A tile is a packed panel (element (i, k) at a[k·MR + i]) or, kDirectA, rows of the
// caller's row-major op(A) (a[i·lda + k]); the B tile a packed panel (b[k·NR + j]) or,
// kDirectB, rows of the caller's row-major op(B) (b[k·ldb + j], columns past n not read).
template <int MR, int NV, bool kDirectA, bool kDirectB>
void micro_kernel(int64_t kc, const float* __restrict a, int64_t lda, const float* __restrict b, int64_t ldb,
                  float* c, int64_t ldc, int m, int n, const float* bias, bool load_c) {
  constexpr int NR = 16 * NV;
  __m512 acc[MR][NV];
#pragma GCC unroll 12
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 3
    for (int j = 0; j < NV; ++j) acc[i][j] = _mm512_setzero_ps();
  __mmask16 mask[NV];
#pragma GCC unroll 3
  for (int j = 0; j < NV; ++j) mask[j] = lane_mask(n - 16 * j);
  // Direct rows past m read row m − 1 again (in bounds; those accumulators are never stored).
  const float* rows[kDirectA ? MR : 1];
  if constexpr (kDirectA) {
    for (int i = 0; i < MR; ++i) rows[i] = a + (i < m ? i : m - 1) * lda;
  }
#pragma GCC unroll 2
  for (int64_t k = 0; k < kc; ++k) {
    __m512 bv[NV];
#pragma GCC unroll 3
    for (int j = 0; j < NV; ++j)
      bv[j] = kDirectB ? _mm512_maskz_loadu_ps(mask[j], b + 16 * j) : _mm512_load_ps(b + 16 * j);
#pragma GCC unroll 12
    for (int i = 0; i < MR; ++i) {
      const __m512 ai = _mm512_set1_ps(kDirectA ? rows[i][k] : a[i]);
#pragma GCC unroll 3
      for (int j = 0; j < NV; ++j) acc[i][j] = _mm512_fmadd_ps(ai, bv[j], acc[i][j]);
    }
    if constexpr (!kDirectA) a += MR;
    b += kDirectB ? ldb : NR;
  }
  __m512 bias_v[NV];
#pragma GCC unroll 3
  for (int j = 0; j < NV; ++j) bias_v[j] = bias ? _mm512_maskz_loadu_ps(mask[j], bias + 16 * j) : _mm512_setzero_ps();
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

// Transposes the 16×16 block r[0..15] in place (r[i] lane j ↦ r[j] lane i).
inline void transpose16(__m512 r[16]) {
  __m512 t[16];
  for (int i = 0; i < 16; i += 2) {
    t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
  }
  for (int i = 0; i < 16; i += 4) {
    for (int h = 0; h < 2; ++h) {
      const __m512d a = _mm512_castps_pd(t[i + h]), b = _mm512_castps_pd(t[i + 2 + h]);
      r[i + h] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, b));
      r[i + 2 + h] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, b));
    }
  }
  // Now, in each 128-bit lane L, r[4q + s] holds rows 4q..4q+3 of column 4L + {0, 2, 1, 3}[s].
  for (int s = 0; s < 4; ++s) {
    const int o = s == 1 ? 2 : s == 2 ? 1 : s;  // the column offset r[4q + s] holds
    const __m512 a0 = _mm512_shuffle_f32x4(r[s], r[4 + s], 0x44);       // g0.L0 g0.L1 g1.L0 g1.L1
    const __m512 a1 = _mm512_shuffle_f32x4(r[s], r[4 + s], 0xEE);       // g0.L2 g0.L3 g1.L2 g1.L3
    const __m512 a2 = _mm512_shuffle_f32x4(r[8 + s], r[12 + s], 0x44);  // g2.L0 g2.L1 g3.L0 g3.L1
    const __m512 a3 = _mm512_shuffle_f32x4(r[8 + s], r[12 + s], 0xEE);  // g2.L2 g2.L3 g3.L2 g3.L3
    t[o] = _mm512_shuffle_f32x4(a0, a2, 0x88);       // lane 0 of every group: column o
    t[4 + o] = _mm512_shuffle_f32x4(a0, a2, 0xDD);   // lane 1: column 4 + o
    t[8 + o] = _mm512_shuffle_f32x4(a1, a3, 0x88);   // lane 2
    t[12 + o] = _mm512_shuffle_f32x4(a1, a3, 0xDD);  // lane 3
  }
  for (int i = 0; i < 16; ++i) r[i] = t[i];
}

// pack_panels for rows contiguous along depth (the transposing case: row-major A, or a
// weight stored N×K as B): 16 rows × 16 depth indices at a time through a register
// transpose, instead of one scattered store per element. Same layout as pack_panels<P>.
template <int P>
void pack_panels_transposing(int64_t rows, int64_t depth, const float* src, int64_t row_stride, float* dst) {
  static_assert(P <= 16 || P % 16 == 0, "panels of up to 16 rows or whole groups of 16");
  constexpr int G = P < 16 ? P : 16;  // rows per register group
  const __mmask16 gmask = lane_mask(G);
  for (int64_t p0 = 0; p0 < rows; p0 += P) {
    float* panel = dst + p0 * depth;
    for (int g = 0; g < P; g += G) {
      const int64_t live = std::min<int64_t>(G, std::max<int64_t>(0, rows - p0 - g));
      int64_t k = 0;
      for (; k + 16 <= depth; k += 16) {
        __m512 r[16];
        for (int i = 0; i < 16; ++i)
          r[i] = i < live ? _mm512_loadu_ps(src + (p0 + g + i) * row_stride + k) : _mm512_setzero_ps();
        transpose16(r);
        for (int j = 0; j < 16; ++j) _mm512_mask_storeu_ps(panel + (k + j) * P + g, gmask, r[j]);
      }
      for (; k < depth; ++k)
        for (int i = 0; i < G; ++i) panel[k * P + g + i] = i < live ? src[(p0 + g + i) * row_stride + k] : 0.0f;
    }
  }
}

// C[mc, nc] (+)= A-block · B-block: ap is the packed A block or (kDirectA) op(A)[0, 0] of the
// block in a row-major op(A) (row stride lda); bp likewise for B (kDirectB: op(B) row-major,
// row stride ldb).
template <int MR, int NV, bool kDirectA, bool kDirectB>
void macro_kernel(int64_t mc, int64_t nc, int64_t kc, const float* ap, int64_t lda, const float* bp, int64_t ldb,
                  float* c, int64_t ldc, const float* bias, bool load_c) {
  constexpr int NR = 16 * NV;
  for (int64_t jr = 0; jr < nc; jr += NR) {
    const int n = int(nc - jr < NR ? nc - jr : NR);
    const float* b_panel = kDirectB ? bp + jr : bp + jr * kc;
    for (int64_t ir = 0; ir < mc; ir += MR) {
      const int m = int(mc - ir < MR ? mc - ir : MR);
      micro_kernel<MR, NV, kDirectA, kDirectB>(kc, kDirectA ? ap + ir * lda : ap + ir * kc, lda, b_panel, ldb,
                                               c + ir * ldc + jr, ldc, m, n, bias ? bias + jr : nullptr, load_c);
    }
  }
}

template <int MR, int NV>
void macro_any(int64_t mc, int64_t nc, int64_t kc, const float* a, int64_t lda, bool direct_a, const float* b,
               int64_t ldb, bool direct_b, float* c, int64_t ldc, const float* bias, bool load_c) {
  if (direct_a && direct_b) macro_kernel<MR, NV, true, true>(mc, nc, kc, a, lda, b, ldb, c, ldc, bias, load_c);
  else if (direct_a) macro_kernel<MR, NV, true, false>(mc, nc, kc, a, lda, b, ldb, c, ldc, bias, load_c);
  else if (direct_b) macro_kernel<MR, NV, false, true>(mc, nc, kc, a, lda, b, ldb, c, ldc, bias, load_c);
  else macro_kernel<MR, NV, false, false>(mc, nc, kc, a, lda, b, ldb, c, ldc, bias, load_c);
}

}  // namespace

static_assert(kGemmNR == 32 && wide::kGemmNR == 48 && narrow::kGemmNR == 16, "tile widths are whole zmm registers");

#define PTQ4VM_AVX512_GEMM_ENTRY_POINTS                                                                          \
  void gemm_f32_pack_a(bool trans_a, int64_t mc, int64_t kc, const float* a, int64_t lda, float* ap) {         \
    if (trans_a) pack_a_panels<kGemmMR>(trans_a, mc, kc, a, lda, ap);                                          \
    else pack_panels_transposing<kGemmMR>(mc, kc, a, lda, ap);                                                 \
  }                                                                                                            \
  void gemm_f32_pack_b(bool trans_b, int64_t kc, int64_t nc, const float* b, int64_t ldb, float* bp) {         \
    if (trans_b) pack_panels_transposing<kGemmNR>(nc, kc, b, ldb, bp);                                         \
    else pack_b_panels<kGemmNR>(trans_b, kc, nc, b, ldb, bp);                                                  \
  }                                                                                                            \
  void gemm_f32_macro(int64_t mc, int64_t nc, int64_t kc, const float* ap, const float* bp, float* c,         \
                      int64_t ldc, const float* bias, bool load_c) {                                          \
    macro_any<kGemmMR, kGemmNR / 16>(mc, nc, kc, ap, 0, false, bp, 0, false, c, ldc, bias, load_c);           \
  }                                                                                                            \
  void gemm_f32_macro_direct(int64_t mc, int64_t nc, int64_t kc, const float* a, int64_t lda, bool direct_a, \
                             const float* b, int64_t ldb, bool direct_b, float* c, int64_t ldc,               \
                             const float* bias, bool load_c) {                                                \
    macro_any<kGemmMR, kGemmNR / 16>(mc, nc, kc, a, lda, direct_a, b, ldb, direct_b, c, ldc, bias, load_c);   \
  }

PTQ4VM_AVX512_GEMM_ENTRY_POINTS
namespace wide {
PTQ4VM_AVX512_GEMM_ENTRY_POINTS
}  // namespace wide
namespace narrow {
PTQ4VM_AVX512_GEMM_ENTRY_POINTS
}  // namespace narrow

}  // namespace ptq4vm::cpu::avx512
