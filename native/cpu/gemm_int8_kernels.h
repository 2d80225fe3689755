// Per-ISA pieces of the INT8 GEMM (native/cpu/gemm_int8.cpp drives them).
//
// Packed weight layout, shared by every ISA so a packing never depends on the active ISA:
// columns in panels of 16; a panel is K4 = ceil(K/4) groups of 64 bytes, each holding for its 16
// columns the 4 consecutive k values of that group ([k4][column][4] int8), zero-padded past N
// and K. This is the operand order of vpdpbusd (4 u8·s8 products summed per 32-bit lane).
#pragma once
#include <cstdint>

#include "ptq4vm/gemm_int8.h"

namespace ptq4vm::cpu {

constexpr int kInt8PanelCols = 16;
constexpr int kInt8GroupBytes = 4 * kInt8PanelCols;  // one k-group of one panel

struct Int8PackedView {
  int64_t N = 0, K = 0, K4 = 0, panels = 0;
  const int8_t* data = nullptr;   // panels · K4 · 64 bytes
  const int32_t* wsum = nullptr;  // panels · 16 (zero past N)
};

// Output of a block: raw int32 accumulators (ep == nullptr, c_s32) or the fp32 epilogue.
// Rows [m0, m1) × panels [p0, p1) of C = A · Wᵀ; rows past M are never read or written.
#define PTQ4VM_GEMM_INT8_ISA_DECLS                                                            \
  void gemm_u8s8_block(int64_t m0, int64_t m1, int64_t p0, int64_t p1, const uint8_t* A,     \
                       int64_t lda, const Int8PackedView& W, const Int8Epilogue* ep,         \
                       float* c_f32, int32_t* c_s32, int64_t ldc);

namespace scalar {
PTQ4VM_GEMM_INT8_ISA_DECLS
}
namespace avx2 {
PTQ4VM_GEMM_INT8_ISA_DECLS
}
namespace vnni {
PTQ4VM_GEMM_INT8_ISA_DECLS
}

// The epilogue of one element, shared by every path and the reference (see gemm_int8.h):
// fma((float)(acc − zero·wsum) · a_scale, w_scale, bias or 0), then + C when accumulating.
inline float int8_epilogue_value(int32_t acc, int32_t zero, int32_t wsum, float a_scale, float w_scale,
                                 float bias) {
  const float v = float(acc - zero * wsum) * a_scale;
  return __builtin_fmaf(v, w_scale, bias);
}

}  // namespace ptq4vm::cpu
