// Token reordering for the directional scans of LocalVim / VMamba / LocalVMamba (gather into a
// direction's scan order with zero pads, scatter back) and Swin-style 2×2 patch merging. Token-
// major layout: image b's rows are consecutive, each row is one token's channels.
#pragma once
#include <cstdint>

namespace ptq4vm {

// For every image b and step t < steps:
//   out[b·steps + t] = index[t] >= 0 ? x[b·src_len + index[t]] : 0        (C channels per row)
// index[t] is in [-1, src_len); the same source row may be read by several steps.
void gather_tokens_f32(int64_t B, int64_t src_len, int64_t steps, int64_t C, const float* x,
                       int64_t ldx, const int32_t* index, float* out, int64_t ldo);
void gather_tokens_f32_ref(int64_t B, int64_t src_len, int64_t steps, int64_t C, const float* x,
                           int64_t ldx, const int32_t* index, float* out, int64_t ldo);

// For every image b and step t < steps with index[t] >= 0, with d = b·dst_len + index[t]:
//   out[d] = (accumulate ? out[d] : 0) + y[b·steps + t] · (gate ? gate[b·C + c] : 1)   per channel c
// Steps with index[t] = -1 are dropped; rows of out that no step names are left untouched.
// The non-negative entries of index are distinct and < dst_len (rows are written in parallel).
void scatter_tokens_f32(int64_t B, int64_t steps, int64_t dst_len, int64_t C, const float* y,
                        int64_t ldy, const int32_t* index, const float* gate, bool accumulate,
                        float* out, int64_t ldo);
void scatter_tokens_f32_ref(int64_t B, int64_t steps, int64_t dst_len, int64_t C, const float* y,
                            int64_t ldy, const int32_t* index, const float* gate, bool accumulate,
                            float* out, int64_t ldo);

// Swin patch merging of x [B, H, W, C] (contiguous) into out [B, Ho, Wo, 4C], Ho = ⌈H/2⌉,
// Wo = ⌈W/2⌉: out[b, i, j] = concat(x[2i, 2j], x[2i+1, 2j], x[2i, 2j+1], x[2i+1, 2j+1]), a
// position outside H×W reading zeros (the bottom/right zero pad of odd sizes).
void patch_merge_f32(int64_t B, int64_t H, int64_t W, int64_t C, const float* x, float* out);
void patch_merge_f32_ref(int64_t B, int64_t H, int64_t W, int64_t C, const float* x, float* out);

}  // namespace ptq4vm
