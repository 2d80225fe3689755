// 2-D convolutions of the hierarchical backbones. Outputs are token-major [B, Ho·Wo, Cout]
// (row-major pixels, channels contiguous); weights are in PyTorch layout.
#pragma once
#include <cstdint>

namespace ptq4vm {

// Dense conv2d, square kernel K, stride S, zero padding P on every side:
//   Ho = (H + 2P − K)/S + 1, Wo likewise (floor);
//   out[b, oy·Wo + ox, o] = bias[o] + Σ_{c,ky,kx} weight[o, c, ky, kx] · x(b, c, oy·S − P + ky, ox·S − P + kx)
// x(b, c, y, x) reads img [B, Cin, H, W] when channels_first, else tokens [B, H·W, Cin]
// (contiguous); outside the image it is 0. bias may be null. Requires H + 2P >= K, W + 2P >= K.
void conv2d_f32(int64_t B, int64_t Cin, int64_t H, int64_t W, bool channels_first, const float* x,
                int64_t Cout, int64_t K, int64_t S, int64_t P, const float* weight, const float* bias,
                float* out);
void conv2d_f32_ref(int64_t B, int64_t Cin, int64_t H, int64_t W, bool channels_first,
                    const float* x, int64_t Cout, int64_t K, int64_t S, int64_t P,
                    const float* weight, const float* bias, float* out);

// Depthwise conv2d, odd kernel K, stride 1, zero padding K/2 ("same"), on tokens x [B, H·W, C]
// with row stride ldx; weight [C, 1, K, K]; bias may be null; apply_silu: out = silu(conv).
// out [B, H·W, C] with row stride ldo, never overlapping x.
void depthwise_conv2d_f32(int64_t B, int64_t H, int64_t W, int64_t C, const float* x, int64_t ldx,
                          int64_t K, const float* weight, const float* bias, bool apply_silu,
                          float* out, int64_t ldo);
void depthwise_conv2d_f32_ref(int64_t B, int64_t H, int64_t W, int64_t C, const float* x,
                              int64_t ldx, int64_t K, const float* weight, const float* bias,
                              bool apply_silu, float* out, int64_t ldo);

}  // namespace ptq4vm
