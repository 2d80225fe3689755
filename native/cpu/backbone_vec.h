// Per-ISA inner loops of the backbone kernels (layer_norm.h, pointwise.h, conv2d.h depthwise,
// token_permute.h scatter). The loops are written once against VecF in backbone_rows.h and
// compiled three times by backbone_vec_{portable,avx2,avx512}.cpp; the drivers pick one set
// with active_isa() (cpu::pick_isa) and split the rows across threads.
//
// layer_norm_rows: rows [r0, r1) of layer_norm_f32 (same arguments).
// layer_norm_sum_rows: acc[j] += Σ over rows t in [t0, t1) with (select == null || select[t]
//   >= 0) of layer_norm(x[t])[j] (x points at image b's first row); returns the rows counted.
// gelu_rows / sigmoid_rows / mul_silu_rows / add_rows: rows [r0, r1) of the pointwise.h ops.
// scale_add_row: out[j] = (accumulate ? out[j] : 0) + y[j] · (gate ? gate[j] : 1), j < C.
// depthwise_conv_rows: output image rows [y0, y1) of batch item b of depthwise_conv2d_f32;
//   weight_t is the weight transposed to [K·K, C] (one contiguous row per tap).
#pragma once
#include <cstdint>

namespace ptq4vm::cpu {

#define PTQ4VM_BACKBONE_VEC_DECLS                                                               \
  void layer_norm_rows(int64_t r0, int64_t r1, int64_t D, const float* x, int64_t ldx,           \
                       const float* weight, const float* bias, float eps, float* out,            \
                       int64_t ldo);                                                              \
  int64_t layer_norm_sum_rows(int64_t t0, int64_t t1, int64_t D, const float* x, int64_t ldx,    \
                              const int32_t* select, const float* weight, const float* bias,     \
                              float eps, float* acc);                                             \
  void gelu_rows(int64_t r0, int64_t r1, int64_t cols, const float* x, int64_t ldx, float* out,   \
                 int64_t ldo);                                                                    \
  void sigmoid_rows(int64_t r0, int64_t r1, int64_t cols, const float* x, int64_t ldx,            \
                    float* out, int64_t ldo);                                                     \
  void mul_silu_rows(int64_t r0, int64_t r1, int64_t cols, const float* x, int64_t ldx,           \
                     const float* z, int64_t ldz, float* out, int64_t ldo);                       \
  void add_rows(int64_t r0, int64_t r1, int64_t cols, const float* a, int64_t lda,                \
                const float* b, int64_t ldb, float* out, int64_t ldo);                            \
  void scale_add_row(int64_t C, const float* y, const float* gate, bool accumulate, float* out); \
  void depthwise_conv_rows(int64_t b, int64_t y0, int64_t y1, int64_t H, int64_t W, int64_t C,   \
                           const float* x, int64_t ldx, int64_t K, const float* weight_t,        \
                           const float* bias, bool apply_silu, float* out, int64_t ldo);

namespace scalar {
PTQ4VM_BACKBONE_VEC_DECLS
}
namespace avx2 {
PTQ4VM_BACKBONE_VEC_DECLS
}
namespace avx512 {
PTQ4VM_BACKBONE_VEC_DECLS
}

}  // namespace ptq4vm::cpu
