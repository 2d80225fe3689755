// Small device kernels an FP16 / INT8 forward needs between the big ones.
#pragma once
#include <cstdint>

#include "ptq4vm/cuda/runtime.h"

namespace ptq4vm::cuda {

// y = x converted (F32 <-> F16, or a copy), [rows, cols] with row strides.
void convert(int64_t rows, int64_t cols, DType x_type, const void* x, int64_t ldx, DType y_type, void* y,
             int64_t ldy, cudaStream_t stream);

// Vim token assembly: out[b, t] = (t == cls_pos ? cls : patches[b, t − (t > cls_pos)]) + pos[t],
// t = 0..G (L = G + 1 rows per image). patches [B·G, D] (F32/F16), cls [D] and pos [L, D] fp32;
// out [B·L, D] as out_type. cls null: no class token (L = G, out[b,t] = patches[b,t] + pos[t]).
void assemble_tokens(int64_t B, int64_t G, int64_t D, DType patch_type, const void* patches,
                     const float* cls, int64_t cls_pos, const float* pos, DType out_type, void* out,
                     cudaStream_t stream);

// dst[b] = src[b·L + t] for b < B: one row per image (the class token), [B, D], same type.
void gather_token(int64_t B, int64_t L, int64_t D, int64_t t, DType type, const void* src, void* dst,
                  cudaStream_t stream);

}  // namespace ptq4vm::cuda
