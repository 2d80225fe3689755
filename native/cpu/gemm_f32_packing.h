// Panel packing of the FP32 GEMM, shared by every ISA's translation unit (each instantiates it
// with its own MR/NR and compiler flags; internal linkage keeps the copies apart).
#pragma once
#include <cstdint>

namespace ptq4vm::cpu {
namespace {

// Packs `rows` × `depth` of a matrix into panels of P rows, each stored depth-major
// (P consecutive values per depth index), the last panel zero-padded.
// Element (i, k) is src[i * row_stride + k * depth_stride].
template <int P>
void pack_panels(int64_t rows, int64_t depth, const float* src, int64_t row_stride,
                 int64_t depth_stride, float* dst) {
  for (int64_t p0 = 0; p0 < rows; p0 += P) {
    const int64_t n = rows - p0 < P ? rows - p0 : P;
    float* panel = dst + p0 * depth;
    if (depth_stride != 1) {
      // The P rows of a panel are contiguous in memory for each depth index: copy P at a time.
      for (int64_t k = 0; k < depth; ++k) {
        const float* s = src + p0 * row_stride + k * depth_stride;
        float* d = panel + k * P;
        int64_t i = 0;
        for (; i < n; ++i) d[i] = s[i * row_stride];
        for (; i < P; ++i) d[i] = 0.0f;
      }
    } else {
      // Rows are contiguous along depth: read each row sequentially, scatter with stride P.
      for (int64_t i = 0; i < n; ++i) {
        const float* s = src + (p0 + i) * row_stride;
        for (int64_t k = 0; k < depth; ++k) panel[k * P + i] = s[k];
      }
      for (int64_t i = n; i < P; ++i)
        for (int64_t k = 0; k < depth; ++k) panel[k * P + i] = 0.0f;
    }
  }
}

// op(A) [mc, kc]: row i, depth k. Stored M×K (row stride lda) or, transposed, K×M.
template <int MR>
void pack_a_panels(bool trans_a, int64_t mc, int64_t kc, const float* a, int64_t lda, float* ap) {
  if (trans_a) pack_panels<MR>(mc, kc, a, 1, lda, ap);
  else pack_panels<MR>(mc, kc, a, lda, 1, ap);
}

// op(B) [kc, nc]: column j, depth k. Stored K×N (row stride ldb) or, transposed, N×K.
template <int NR>
void pack_b_panels(bool trans_b, int64_t kc, int64_t nc, const float* b, int64_t ldb, float* bp) {
  if (trans_b) pack_panels<NR>(nc, kc, b, ldb, 1, bp);
  else pack_panels<NR>(nc, kc, b, 1, ldb, bp);
}

}  // namespace
}  // namespace ptq4vm::cpu
