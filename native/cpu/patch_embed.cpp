// patch_embed_f32: im2col of the whole batch (one row per patch, columns in the weight's
// (c, ky, kx) order) followed by one gemm_f32 against the weight as [D, C·P·P].
#include "ptq4vm/patch_embed.h"

#include "ptq4vm/gemm.h"
#include "ptq4vm/runtime.h"
#include "scratch.h"

namespace ptq4vm {

void patch_embed_f32(int64_t B, int64_t C, int64_t H, int64_t W, int64_t P, int64_t S,
                     const float* img, const float* weight, const float* bias, int64_t D, float* out) {
  if (B <= 0 || D <= 0 || H < P || W < P) return;
  const int64_t gh = (H - P) / S + 1, gw = (W - P) / S + 1, G = gh * gw;
  const int64_t cols = C * P * P;
  float* columns = cpu::thread_scratch_as<float>(cpu::ScratchSlot::PatchColumns, size_t(B * G * cols));
  parallel_for(B * gh, 4, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      const int64_t b = i / gh, gy = i % gh;
      for (int64_t gx = 0; gx < gw; ++gx) {
        float* dst = columns + ((b * G) + gy * gw + gx) * cols;
        for (int64_t c = 0; c < C; ++c)
          for (int64_t ky = 0; ky < P; ++ky) {
            const float* src = img + ((b * C + c) * H + gy * S + ky) * W + gx * S;
            for (int64_t kx = 0; kx < P; ++kx) *dst++ = src[kx];
          }
      }
    }
  });
  gemm_f32(false, true, B * G, D, cols, columns, cols, weight, cols, bias, false, out, D);
}

void patch_embed_f32_ref(int64_t B, int64_t C, int64_t H, int64_t W, int64_t P, int64_t S,
                         const float* img, const float* weight, const float* bias, int64_t D,
                         float* out) {
  if (H < P || W < P) return;
  const int64_t gh = (H - P) / S + 1, gw = (W - P) / S + 1;
  for (int64_t b = 0; b < B; ++b)
    for (int64_t gy = 0; gy < gh; ++gy)
      for (int64_t gx = 0; gx < gw; ++gx)
        for (int64_t d = 0; d < D; ++d) {
          double acc = bias ? bias[d] : 0.0;
          for (int64_t c = 0; c < C; ++c)
            for (int64_t ky = 0; ky < P; ++ky)
              for (int64_t kx = 0; kx < P; ++kx)
                acc += double(weight[((d * C + c) * P + ky) * P + kx]) *
                       img[((b * C + c) * H + gy * S + ky) * W + gx * S + kx];
          out[((b * gh + gy) * gw + gx) * D + d] = float(acc);
        }
}

}  // namespace ptq4vm
