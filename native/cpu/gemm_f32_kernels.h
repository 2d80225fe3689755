// Per-ISA pieces of the FP32 GEMM (native/cpu/gemm_f32.cpp drives them): panel packing and the
// macro-kernel over one packed A block × one packed B block. Each ISA's translation unit
// defines them in its own namespace with its own micro-tile MR × NR.
#pragma once
#include <cstdint>

namespace ptq4vm::cpu {

// op(A) block [mc, kc] → row panels of MR rows, each stored k-major (MR consecutive floats per k),
// the last panel zero-padded. a points at op(A)[0,0] of the block; trans_a: stored K×M.
// op(B) block [kc, nc] → column panels of NR columns, each stored k-major, zero-padded.
// macro: C[mc, nc] (+)= Ap · Bp; load_c adds the existing C; bias (or null) is added per column.
#define PTQ4VM_GEMM_F32_ISA_DECLS                                                              \
  void gemm_f32_pack_a(bool trans_a, int64_t mc, int64_t kc, const float* a, int64_t lda,     \
                       float* ap);                                                             \
  void gemm_f32_pack_b(bool trans_b, int64_t kc, int64_t nc, const float* b, int64_t ldb,     \
                       float* bp);                                                             \
  void gemm_f32_macro(int64_t mc, int64_t nc, int64_t kc, const float* ap, const float* bp,   \
                      float* c, int64_t ldc, const float* bias, bool load_c);

namespace scalar {
constexpr int kGemmMR = 4, kGemmNR = 8;
PTQ4VM_GEMM_F32_ISA_DECLS
}  // namespace scalar
namespace avx2 {
constexpr int kGemmMR = 6, kGemmNR = 16;
PTQ4VM_GEMM_F32_ISA_DECLS
}  // namespace avx2
// AVX-512 also reads a row-major op(A) and/or op(B) in place (direct_a: a at op(A)[0, 0] of
// the block, row stride lda; direct_b: b at op(B)[0, 0] of the block, row stride ldb; else a
// and b are packed blocks): no packing where its cost rivals the multiply-adds (narrow N for
// A, few rows for B).
#define PTQ4VM_GEMM_F32_DIRECT_DECL                                                             \
  void gemm_f32_macro_direct(int64_t mc, int64_t nc, int64_t kc, const float* a, int64_t lda,  \
                             bool direct_a, const float* b, int64_t ldb, bool direct_b, float* c, \
                             int64_t ldc, const float* bias, bool load_c);
namespace avx512 {
constexpr int kGemmMR = 12, kGemmNR = 32;
PTQ4VM_GEMM_F32_ISA_DECLS
PTQ4VM_GEMM_F32_DIRECT_DECL
// A second tile shape for N that 48-column panels pad less (x_proj: N = dt_rank + 2·d_state).
namespace wide {
constexpr int kGemmMR = 8, kGemmNR = 48;
PTQ4VM_GEMM_F32_ISA_DECLS
PTQ4VM_GEMM_F32_DIRECT_DECL
}  // namespace wide
// 16-column tiles for outputs narrower than that (dt_proj's backward dX: N = dt_rank).
namespace narrow {
constexpr int kGemmMR = 12, kGemmNR = 16;
PTQ4VM_GEMM_F32_ISA_DECLS
PTQ4VM_GEMM_F32_DIRECT_DECL
}  // namespace narrow
}  // namespace avx512

}  // namespace ptq4vm::cpu
