// Patch embedding: Conv2d(C → D, kernel P, stride S, no padding) as im2col + GEMM.
#pragma once
#include <cstdint>

namespace ptq4vm {

// img: [B, C, H, W]; weight: [D, C, P, P]; bias: [D] or null.
// Gh = (H − P)/S + 1, Gw = (W − P)/S + 1; out: [B, Gh·Gw, D], tokens in row-major grid order.
void patch_embed_f32(int64_t B, int64_t C, int64_t H, int64_t W, int64_t P, int64_t S,
                     const float* img, const float* weight, const float* bias, int64_t D, float* out);
void patch_embed_f32_ref(int64_t B, int64_t C, int64_t H, int64_t W, int64_t P, int64_t S,
                         const float* img, const float* weight, const float* bias, int64_t D,
                         float* out);

}  // namespace ptq4vm
