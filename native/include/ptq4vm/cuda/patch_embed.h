// Patch embedding on the GPU (device pointers), the contract of ptq4vm/patch_embed.h.
#pragma once
#include <cstdint>

#include "ptq4vm/cuda/gemm.h"
#include "ptq4vm/cuda/runtime.h"

namespace ptq4vm::cuda {

// fp32 direct convolution: img [B, C, H, W], weight [D, C, P, P], bias [D] or null
// -> out [B, Gh·Gw, D] fp32, tokens in row-major grid order.
void patch_embed_f32(int64_t B, int64_t C, int64_t H, int64_t W, int64_t P, int64_t S, const float* img,
                     const float* weight, const float* bias, int64_t D, float* out, cudaStream_t stream);

// im2col: cols[b·G + g, (c·P + i)·P + j] = img[b, c, gy·S + i, gx·S + j] (the weight's own order),
// written as F16 or F32 with row stride ldc (>= C·P·P).
void im2col_patches(int64_t B, int64_t C, int64_t H, int64_t W, int64_t P, int64_t S, const float* img,
                    DType cols_type, void* cols, int64_t ldc, cudaStream_t stream);

// FP16 path: im2col into `workspace` (at least patch_embed_f16_workspace_bytes) then the FP16
// tensor-core GEMM with the patch weights uploaded as F16Weights [D, C·P·P] and fp32 bias.
size_t patch_embed_f16_workspace_bytes(int64_t B, int64_t C, int64_t H, int64_t W, int64_t P, int64_t S);
void patch_embed_f16(int64_t B, int64_t C, int64_t H, int64_t W, int64_t P, int64_t S, const float* img,
                     const F16Weights& weight, const float* bias, void* workspace, const F16GemmOut& out,
                     cudaStream_t stream);

}  // namespace ptq4vm::cuda
