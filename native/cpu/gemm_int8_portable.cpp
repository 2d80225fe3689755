// INT8 GEMM, portable path: one row × one panel at a time in plain C++ on the packed layout.
#include "gemm_int8_tiles.h"

namespace ptq4vm::cpu::scalar {

void gemm_u8s8_block(int64_t m0, int64_t m1, int64_t p0, int64_t p1, const uint8_t* A, int64_t lda,
                     const Int8PackedView& W, const Int8Epilogue* ep, float* c_f32, int32_t* c_s32,
                     int64_t ldc) {
  for (int64_t p = p0; p < p1; ++p) {
    const int8_t* b = W.data + p * W.K4 * kInt8GroupBytes;
    const int64_t n0 = p * kInt8PanelCols;
    const int64_t cols = W.N - n0 < kInt8PanelCols ? W.N - n0 : kInt8PanelCols;
    for (int64_t r = m0; r < m1; ++r) {
      const uint8_t* row = A + r * lda;
      int32_t acc[kInt8PanelCols] = {};
      for (int64_t g = 0; g < W.K4; ++g) {
        const int8_t* bg = b + g * kInt8GroupBytes;
        const int64_t kn = W.K - 4 * g < 4 ? W.K - 4 * g : 4;
        for (int64_t c = 0; c < kInt8PanelCols; ++c)
          for (int64_t j = 0; j < kn; ++j) acc[c] += int32_t(row[4 * g + j]) * int32_t(bg[4 * c + j]);
      }
      if (!ep) {
        for (int64_t c = 0; c < cols; ++c) c_s32[r * ldc + n0 + c] = acc[c];
        continue;
      }
      const RowParams rp = row_params(*ep, r);
      for (int64_t c = 0; c < cols; ++c) {
        const int64_t n = n0 + c;
        float y = int8_epilogue_value(acc[c], rp.zero, W.wsum[n], rp.scale, ep->w_scale[n],
                                      ep->bias ? ep->bias[n] : 0.0f);
        float& out = c_f32[r * ldc + n];
        out = ep->accumulate ? out + y : y;
      }
    }
  }
}

}  // namespace ptq4vm::cpu::scalar
