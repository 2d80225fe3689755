// INT8 GEMM, AVX2: u8 activations and s8 weights are widened to s16 and multiplied with
// vpmaddwd (two products per 32-bit lane, at most 2·255·127, so nothing saturates; vpmaddubsw
// would). Tiles of 2 rows × 16 columns; lanes hold (column, k-pair) partial sums that are
// folded with one horizontal add at the end.
#include <immintrin.h>

#include "gemm_int8_tiles.h"

namespace ptq4vm::cpu::avx2 {
namespace {

constexpr int MR = 2;

__m256i lane_mask(int64_t n) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(int(n < 8 ? n : 8)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

// Four u8 zero-extended to s16, broadcast to every 64-bit lane.
__m256i broadcast_a(int32_t a4) {
  const __m128i w = _mm_cvtepu8_epi16(_mm_cvtsi32_si128(a4));
  return _mm256_broadcastq_epi64(w);
}

// Eight consecutive output columns of one row: raw store or the fp32 epilogue.
void store8(__m256i acc, int64_t row, int64_t n0, int64_t valid, const int32_t* wsum, const Int8Epilogue* ep,
            const RowParams& rp, float* c_f32, int32_t* c_s32, int64_t ldc) {
  const __m256i mask = lane_mask(valid);
  if (!ep) {
    _mm256_maskstore_epi32(c_s32 + row * ldc + n0, mask, acc);
    return;
  }
  const __m256i ws_int = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(wsum + n0));
  const __m256i centred = _mm256_sub_epi32(acc, _mm256_mullo_epi32(_mm256_set1_epi32(rp.zero), ws_int));
  const __m256 v = _mm256_mul_ps(_mm256_cvtepi32_ps(centred), _mm256_set1_ps(rp.scale));
  const __m256 ws = _mm256_maskload_ps(ep->w_scale + n0, mask);
  const __m256 bias = ep->bias ? _mm256_maskload_ps(ep->bias + n0, mask) : _mm256_setzero_ps();
  __m256 y = _mm256_fmadd_ps(v, ws, bias);
  float* c = c_f32 + row * ldc + n0;
  if (ep->accumulate) y = _mm256_add_ps(_mm256_maskload_ps(c, mask), y);
  _mm256_maskstore_ps(c, mask, y);
}

void tile(int m, int64_t row0, int64_t panel, const uint8_t* A, int64_t lda, const Int8PackedView& W,
          const Int8Epilogue* ep, float* c_f32, int32_t* c_s32, int64_t ldc) {
  const int64_t K = W.K, K4 = W.K4, full_groups = K / 4;
  const int8_t* b = W.data + panel * K4 * kInt8GroupBytes;
  const uint8_t* rows[MR];
  for (int i = 0; i < MR; ++i) rows[i] = A + (row0 + (i < m ? i : m - 1)) * lda;
  __m256i acc[MR][4];
  for (int i = 0; i < MR; ++i)
    for (int q = 0; q < 4; ++q) acc[i][q] = _mm256_setzero_si256();
  for (int64_t g = 0; g < K4; ++g) {
    const int8_t* bg = b + g * kInt8GroupBytes;
    __m256i bv[4];
    for (int q = 0; q < 4; ++q)
      bv[q] = _mm256_cvtepi8_epi16(_mm_load_si128(reinterpret_cast<const __m128i*>(bg + 16 * q)));
    for (int i = 0; i < MR; ++i) {
      int32_t a4;
      if (g < full_groups) std::memcpy(&a4, rows[i] + 4 * g, 4);
      else a4 = load_a_group(rows[i], g, K);
      const __m256i av = broadcast_a(a4);
      for (int q = 0; q < 4; ++q) acc[i][q] = _mm256_add_epi32(acc[i][q], _mm256_madd_epi16(av, bv[q]));
    }
  }
  const int64_t n0 = panel * kInt8PanelCols;
  for (int i = 0; i < m; ++i) {
    const int64_t row = row0 + i;
    RowParams rp{0, 0.0f};
    if (ep) rp = row_params(*ep, row);
    const __m256i lo = _mm256_permute4x64_epi64(_mm256_hadd_epi32(acc[i][0], acc[i][1]), 0xD8);
    const __m256i hi = _mm256_permute4x64_epi64(_mm256_hadd_epi32(acc[i][2], acc[i][3]), 0xD8);
    store8(lo, row, n0, W.N - n0, W.wsum, ep, rp, c_f32, c_s32, ldc);
    if (W.N - n0 > 8) store8(hi, row, n0 + 8, W.N - n0 - 8, W.wsum, ep, rp, c_f32, c_s32, ldc);
  }
}

}  // namespace

void gemm_u8s8_block(int64_t m0, int64_t m1, int64_t p0, int64_t p1, const uint8_t* A, int64_t lda,
                     const Int8PackedView& W, const Int8Epilogue* ep, float* c_f32, int32_t* c_s32,
                     int64_t ldc) {
  for (int64_t p = p0; p < p1; ++p)
    for (int64_t r = m0; r < m1; r += MR)
      tile(int(m1 - r < MR ? m1 - r : MR), r, p, A, lda, W, ep, c_f32, c_s32, ldc);
}

}  // namespace ptq4vm::cpu::avx2
