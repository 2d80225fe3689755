// token_permute.h: row copies (gather, patch merge) and a per-ISA scaled row add (scatter),
// split across threads by rows; scalar references.
#include "ptq4vm/token_permute.h"

#include <algorithm>
#include <cstring>

#include "backbone_vec.h"
#include "ptq4vm/runtime.h"
#include "vector_kernels.h"

namespace ptq4vm {
namespace {
int64_t grain_rows(int64_t C) { return std::max<int64_t>(1, 8192 / std::max<int64_t>(C, 1)); }
}  // namespace

void gather_tokens_f32(int64_t B, int64_t src_len, int64_t steps, int64_t C, const float* x,
                       int64_t ldx, const int32_t* index, float* out, int64_t ldo) {
  if (B <= 0 || steps <= 0 || C <= 0) return;
  parallel_for(B * steps, grain_rows(C), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t b = r / steps, src = index[r % steps];
      float* o = out + r * ldo;
      if (src < 0) std::memset(o, 0, size_t(C) * sizeof(float));
      else std::memcpy(o, x + (b * src_len + src) * ldx, size_t(C) * sizeof(float));
    }
  });
}

void scatter_tokens_f32(int64_t B, int64_t steps, int64_t dst_len, int64_t C, const float* y,
                        int64_t ldy, const int32_t* index, const float* gate, bool accumulate,
                        float* out, int64_t ldo) {
  if (B <= 0 || steps <= 0 || C <= 0) return;
  const auto fn = cpu::pick_isa(int(active_isa()), cpu::scalar::scale_add_row,
                                cpu::avx2::scale_add_row, cpu::avx512::scale_add_row);
  parallel_for(B * steps, grain_rows(C), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t b = r / steps, dst = index[r % steps];
      if (dst < 0) continue;
      fn(C, y + r * ldy, gate ? gate + b * C : nullptr, accumulate, out + (b * dst_len + dst) * ldo);
    }
  });
}

void patch_merge_f32(int64_t B, int64_t H, int64_t W, int64_t C, const float* x, float* out) {
  if (B <= 0 || H <= 0 || W <= 0 || C <= 0) return;
  const int64_t Ho = (H + 1) / 2, Wo = (W + 1) / 2;
  // (row, col) offsets of the four quarters, in the concatenation order.
  constexpr int64_t kDy[4] = {0, 1, 0, 1}, kDx[4] = {0, 0, 1, 1};
  parallel_for(B * Ho * Wo, grain_rows(4 * C), [&](int64_t p0, int64_t p1) {
    for (int64_t p = p0; p < p1; ++p) {
      const int64_t b = p / (Ho * Wo), i = (p / Wo) % Ho, j = p % Wo;
      for (int q = 0; q < 4; ++q) {
        const int64_t y = 2 * i + kDy[q], xx = 2 * j + kDx[q];
        float* o = out + p * 4 * C + q * C;
        if (y < H && xx < W) std::memcpy(o, x + ((b * H + y) * W + xx) * C, size_t(C) * sizeof(float));
        else std::memset(o, 0, size_t(C) * sizeof(float));
      }
    }
  });
}

void gather_tokens_f32_ref(int64_t B, int64_t src_len, int64_t steps, int64_t C, const float* x,
                           int64_t ldx, const int32_t* index, float* out, int64_t ldo) {
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t < steps; ++t)
      for (int64_t c = 0; c < C; ++c)
        out[(b * steps + t) * ldo + c] = index[t] < 0 ? 0.0f : x[(b * src_len + index[t]) * ldx + c];
}

void scatter_tokens_f32_ref(int64_t B, int64_t steps, int64_t dst_len, int64_t C, const float* y,
                            int64_t ldy, const int32_t* index, const float* gate, bool accumulate,
                            float* out, int64_t ldo) {
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t < steps; ++t) {
      if (index[t] < 0) continue;
      float* o = out + (b * dst_len + index[t]) * ldo;
      for (int64_t c = 0; c < C; ++c) {
        const float v = y[(b * steps + t) * ldy + c] * (gate ? gate[b * C + c] : 1.0f);
        o[c] = accumulate ? o[c] + v : v;
      }
    }
}

void patch_merge_f32_ref(int64_t B, int64_t H, int64_t W, int64_t C, const float* x, float* out) {
  const int64_t Ho = (H + 1) / 2, Wo = (W + 1) / 2;
  for (int64_t b = 0; b < B; ++b)
    for (int64_t i = 0; i < Ho; ++i)
      for (int64_t j = 0; j < Wo; ++j)
        for (int q = 0; q < 4; ++q) {
          const int64_t y = 2 * i + (q & 1), xx = 2 * j + (q >> 1);
          for (int64_t c = 0; c < C; ++c)
            out[((b * Ho + i) * Wo + j) * 4 * C + q * C + c] =
                (y < H && xx < W) ? x[((b * H + y) * W + xx) * C + c] : 0.0f;
        }
}

}  // namespace ptq4vm
