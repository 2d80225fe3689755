// INT8 GEMM, AVX-512 VNNI: 8 rows × 48 columns per tile (24 zmm accumulators); each vpdpbusd
// adds 4 u8·s8 products per 32-bit lane, exactly (no intermediate saturation).
#include <immintrin.h>

#include "gemm_int8_tiles.h"

#if defined(__GNUC__) && !defined(__clang__)
// GCC 12 false positive on the _mm512_undefined_* placeholders inside its own intrinsics.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif

namespace ptq4vm::cpu::vnni {
namespace {

constexpr int MR = 8;

inline int32_t load_u32(const uint8_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

// acc += Σ4 u8(a)·s8(b) per 32-bit lane. Inline asm with a read-write register operand: GCC 12
// allocates _mm512_dpbusd_epi32's tied accumulator poorly (a copy and a spill per use).
inline void dpbusd(__m512i& acc, __m512i a, __m512i b) {
  __asm__("vpdpbusd %2, %1, %0" : "+v"(acc) : "v"(a), "v"(b));
}

// One k-group of a tile: NP weight vectors, then per row a broadcast of its 4 bytes and NP
// vpdpbusd.
template <int NP>
__attribute__((always_inline)) inline void k_group(__m512i (&acc)[MR][NP], const int8_t* b, int64_t panel_stride,
                                                   const int32_t* a4) {
  __m512i bv[NP];
#pragma GCC unroll 3
  for (int j = 0; j < NP; ++j) bv[j] = _mm512_load_si512(b + j * panel_stride);
#pragma GCC unroll 8
  for (int i = 0; i < MR; ++i) {
    const __m512i av = _mm512_set1_epi32(a4[i]);
#pragma GCC unroll 3
    for (int j = 0; j < NP; ++j) dpbusd(acc[i][j], av, bv[j]);
  }
}

__mmask16 col_mask(int64_t n) { return n >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << n) - 1u); }

template <int NP>
void tile(int m, int64_t row0, int64_t panel0, const uint8_t* A, int64_t lda, const Int8PackedView& W,
          const Int8Epilogue* ep, float* c_f32, int32_t* c_s32, int64_t ldc, int m_next) {
  const int64_t K = W.K, K4 = W.K4, full_groups = K / 4;
  const int64_t panel_stride = K4 * kInt8GroupBytes;
  const int8_t* b = W.data + panel0 * panel_stride;
  const uint8_t* rows[MR];
  for (int i = 0; i < MR; ++i) rows[i] = A + (row0 + (i < m ? i : m - 1)) * lda;

  // The next row tile's output lines and A rows are fetched while this tile computes: the
  // output (in_proj: 4.8 MB at Vim-Ti batch 8) is out of cache, and its lines, a row stride
  // apart, defeat the hardware prefetcher (Vim-Ti batch 8, one thread, in the forward: in_proj
  // 32–36 → 31 ms per forward; fetching the next column tile's weights as well gained nothing).
  {
    char* cn = ep ? reinterpret_cast<char*>(c_f32) : reinterpret_cast<char*>(c_s32);
    for (int i = 0; i < m_next; ++i) {
      char* crow = cn + ((row0 + MR + i) * ldc + panel0 * kInt8PanelCols) * 4;
      for (int j = 0; j < NP; ++j) __builtin_prefetch(crow + 64 * j, 1);
      const uint8_t* arow = A + (row0 + MR + i) * lda;
      for (int64_t off = 0; off < K; off += 64) __builtin_prefetch(arow + off);
    }
  }
  __m512i acc[MR][NP];
#pragma GCC unroll 8
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 3
    for (int j = 0; j < NP; ++j) acc[i][j] = _mm512_setzero_si512();

  for (int64_t g = 0; g < full_groups; ++g) {
    int32_t a4[MR];
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i) a4[i] = load_u32(rows[i] + 4 * g);
    k_group<NP>(acc, b + g * kInt8GroupBytes, panel_stride, a4);
  }
  if (full_groups < K4) {
    int32_t a4[MR];
    for (int i = 0; i < MR; ++i) a4[i] = load_a_group(rows[i], full_groups, K);
    k_group<NP>(acc, b + full_groups * kInt8GroupBytes, panel_stride, a4);
  }

  // Fully unrolled so every acc index is a constant (else GCC keeps acc in memory throughout).
#pragma GCC unroll 8
  for (int i = 0; i < MR; ++i) {
    if (i >= m) break;
    const int64_t row = row0 + i;
    RowParams rp{0, 0.0f};
    if (ep) rp = row_params(*ep, row);
#pragma GCC unroll 3
    for (int j = 0; j < NP; ++j) {
      const int64_t n0 = (panel0 + j) * kInt8PanelCols;
      const __mmask16 mask = col_mask(W.N - n0);
      if (!ep) {
        _mm512_mask_storeu_epi32(c_s32 + row * ldc + n0, mask, acc[i][j]);
        continue;
      }
      const __m512i wsum = _mm512_load_si512(W.wsum + n0);
      const __m512i centred = _mm512_sub_epi32(acc[i][j], _mm512_mullo_epi32(_mm512_set1_epi32(rp.zero), wsum));
      const __m512 v = _mm512_mul_ps(_mm512_cvtepi32_ps(centred), _mm512_set1_ps(rp.scale));
      const __m512 ws = _mm512_maskz_loadu_ps(mask, ep->w_scale + n0);
      const __m512 bias = ep->bias ? _mm512_maskz_loadu_ps(mask, ep->bias + n0) : _mm512_setzero_ps();
      __m512 y = _mm512_fmadd_ps(v, ws, bias);
      float* c = c_f32 + row * ldc + n0;
      if (ep->accumulate) y = _mm512_add_ps(_mm512_maskz_loadu_ps(mask, c), y);
      _mm512_mask_storeu_ps(c, mask, y);
    }
  }
}

}  // namespace

void gemm_u8s8_block(int64_t m0, int64_t m1, int64_t p0, int64_t p1, const uint8_t* A, int64_t lda,
                     const Int8PackedView& W, const Int8Epilogue* ep, float* c_f32, int32_t* c_s32,
                     int64_t ldc) {
  // Column tiles outside, row tiles inside: a tile's weights (K4 · 192 bytes) stay in L1 while
  // the rows stream past.
  for (int64_t p = p0; p < p1; p += 3) {
    const int64_t np = p1 - p < 3 ? p1 - p : 3;
    for (int64_t r = m0; r < m1; r += MR) {
      const int m = int(m1 - r < MR ? m1 - r : MR);
      const int m_next = int(m1 - r - m < MR ? m1 - r - m : MR);
      if (np == 3) tile<3>(m, r, p, A, lda, W, ep, c_f32, c_s32, ldc, m_next);
      else if (np == 2) tile<2>(m, r, p, A, lda, W, ep, c_f32, c_s32, ldc, m_next);
      else tile<1>(m, r, p, A, lda, W, ep, c_f32, c_s32, ldc, m_next);
    }
  }
}

}  // namespace ptq4vm::cpu::vnni
