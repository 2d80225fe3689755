// Element-wise and per-token ops of the backbones, on row-major matrices with row strides
// (so column slices of a wider output are passed without copies). Unless a function says
// otherwise, out may be exactly one of its inputs (same pointer and stride) but must not
// overlap them in any other way.
#pragma once
#include <cstdint>

namespace ptq4vm {

// out = gelu(x) = x · Φ(x), the exact erf form: 0.5·x·(1 + erf(x/√2)).
void gelu_f32(int64_t rows, int64_t cols, const float* x, int64_t ldx, float* out, int64_t ldo);
void gelu_f32_ref(int64_t rows, int64_t cols, const float* x, int64_t ldx, float* out, int64_t ldo);

// out = sigmoid(x) = 1 / (1 + e^−x).
void sigmoid_f32(int64_t rows, int64_t cols, const float* x, int64_t ldx, float* out, int64_t ldo);
void sigmoid_f32_ref(int64_t rows, int64_t cols, const float* x, int64_t ldx, float* out, int64_t ldo);

// out = x · silu(z) (the SSM output gate).
void mul_silu_f32(int64_t rows, int64_t cols, const float* x, int64_t ldx, const float* z,
                  int64_t ldz, float* out, int64_t ldo);
void mul_silu_f32_ref(int64_t rows, int64_t cols, const float* x, int64_t ldx, const float* z,
                      int64_t ldz, float* out, int64_t ldo);

// out = a + b.
void add_f32(int64_t rows, int64_t cols, const float* a, int64_t lda, const float* b, int64_t ldb,
             float* out, int64_t ldo);
void add_f32_ref(int64_t rows, int64_t cols, const float* a, int64_t lda, const float* b,
                 int64_t ldb, float* out, int64_t ldo);

// Per-position tables of [L, C] over x [B, L, C] (rows of image b at b·L):
// add_positions: out[b, t] = x[b, t] + table[t] (absolute position embedding);
// rope: rotation of channel pairs (2i, 2i+1) by the stored tables (C even):
//   out[2i]   = x[2i]·cos[t, 2i]     − x[2i+1]·sin[t, 2i]
//   out[2i+1] = x[2i+1]·cos[t, 2i+1] + x[2i]·sin[t, 2i+1]
void add_positions_f32(int64_t B, int64_t L, int64_t C, const float* x, int64_t ldx,
                       const float* table, float* out, int64_t ldo);
void add_positions_f32_ref(int64_t B, int64_t L, int64_t C, const float* x, int64_t ldx,
                           const float* table, float* out, int64_t ldo);
void rope_f32(int64_t B, int64_t L, int64_t C, const float* x, int64_t ldx, const float* cos_table,
              const float* sin_table, float* out, int64_t ldo);
void rope_f32_ref(int64_t B, int64_t L, int64_t C, const float* x, int64_t ldx,
                  const float* cos_table, const float* sin_table, float* out, int64_t ldo);

// out[b] = mean over t < L of x[b·L + t] (global average pooling of tokens); out is [B, C],
// contiguous, and never overlaps x.
void token_mean_f32(int64_t B, int64_t L, int64_t C, const float* x, int64_t ldx, float* out);
void token_mean_f32_ref(int64_t B, int64_t L, int64_t C, const float* x, int64_t ldx, float* out);

}  // namespace ptq4vm
