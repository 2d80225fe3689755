// Per-ISA inner loops of the element-wise, quantize and scan kernels. The loops are written
// once (norm_rows.h, conv1d_rows.h, scan_rows.h, quantize_rows.h) against VecF and compiled
// three times by vector_kernels_{portable,avx2,avx512}.cpp; the drivers (norm.cpp, conv1d.cpp,
// scan.cpp, quantize.cpp) pick one set with active_isa() and split the work across threads.
#pragma once
#include <cstdint>

#include "ptq4vm/math_mode.h"
#include "ptq4vm/scan.h"
#include "ptq4vm/scan_bidir.h"
#include "ptq4vm/token_quant.h"

namespace ptq4vm::cpu {

// add_rmsnorm_rows: rows [r0, r1) of add_rmsnorm_f32 (same arguments); with quant, also
//   quantizes the normalized rows into q (out may then be null).
// causal_conv1d_rows: tokens [t0, t1) of batch item b; weight_t is the weight transposed to
//   [K, E] (one contiguous row per tap); with quant, also quantizes the output into q.
// selective_scan_bidir_block: like selective_scan_block for both directions of BiScanArgs;
//   fwd_buf holds L · vector_lanes() floats of scratch, dt_wf 2 · R · vector_lanes() floats
//   for the directions' dt_proj weights (R: the larger dt_rank; unused without dt_proj), and
//   dt_codes[k] direction k's dt_proj input codes minus their zero points as floats, [B·L, R]
//   (not read by the VNNI build, which takes the codes themselves).
// quantize_u8_rows / quantize_params_rows: rows [r0, r1) of quantize_u8 /
//   quantize_params_dynamic (same arguments).
// vector_lanes: floats per vector in this build (E-blocks of the scan are this wide).
// selective_scan_block: channels [e0, e0 + vector_lanes()) ∩ [0, E) of batch item b; a2t is
//   A·log2(e) transposed to [N, E] with row stride a2t_ld ≥ E rounded up to 16 (zero-padded, so
//   a full vector may be read at any e0); state holds N · vector_lanes() floats of scratch;
//   dt_wf R · vector_lanes() floats for dt_proj's weights and dt_codes its codes table, as for
//   one direction of selective_scan_bidir_block (both unused without dt_proj).
// eval_math: y[i] = f(x[i]) with this build's vector math (simd.h), so tests can measure ulps.
// Exp2InRange: the scans' exp2_in_range_f32 (x in [−125, 125] only); the *Fast functions are
// the reduced-precision ones of MathMode::fast (simd.h).
enum class MathFn : int { Exp = 0, Exp2, Softplus, Silu, Exp2InRange, Exp2FastInRange, ExpFast, SoftplusFast, SiluFast };

#define PTQ4VM_VECTOR_ISA_DECLS                                                                 \
  int vector_lanes();                                                                           \
  void eval_math(MathFn fn, int64_t n, const float* x, float* y);                               \
  void add_rmsnorm_rows(int64_t r0, int64_t r1, int64_t D, const float* x,                     \
                        const float* residual_in, float* residual_out, const float* weight,    \
                        float eps, float* out, const TokenQuantizer* quant, uint8_t* q,        \
                        int64_t ldq);                                                           \
  void causal_conv1d_rows(int64_t b, int64_t t0, int64_t t1, int64_t L, int64_t E, int64_t K,  \
                          const float* x, int64_t ldx, const float* weight_t, const float* bias, \
                          bool reverse, bool apply_silu, MathMode silu_math, float* out,        \
                          int64_t ldo, const TokenQuantizer* quant, uint8_t* q, int64_t ldq);  \
  void selective_scan_block(const ScanArgs& a, const float* a2t, int64_t a2t_ld, int64_t b,    \
                            int64_t e0, float* state, float* dt_wf, const float* dt_codes);     \
  void selective_scan_bidir_block(const BiScanArgs& a, const float* const a2t[2],               \
                                  int64_t a2t_ld, int64_t b, int64_t e0, float* fwd_buf,        \
                                  float* state, float* dt_wf, const float* const dt_codes[2]);  \
  void quantize_u8_rows(int64_t r0, int64_t r1, int64_t cols, int64_t period, const float* x,   \
                        int64_t ldx, const float* inv_smooth, const float* inv_scale,           \
                        const int32_t* zero, int qmax, uint8_t* q, int64_t ldq);                \
  void quantize_params_rows(int64_t r0, int64_t r1, int64_t cols, const float* x, int64_t ldx,  \
                            const float* inv_smooth, int qmax, float* scale, float* inv_scale,  \
                            int32_t* zero);

namespace scalar {
PTQ4VM_VECTOR_ISA_DECLS
}
namespace avx2 {
PTQ4VM_VECTOR_ISA_DECLS
}
namespace avx512 {
PTQ4VM_VECTOR_ISA_DECLS
}

// The scans built for AVX-512 VNNI (scan_vnni.cpp): dt_proj on vpdpbusd; the drivers take
// them at Isa::Avx512Vnni instead of avx512's.
namespace vnni {
void selective_scan_block(const ScanArgs& a, const float* a2t, int64_t a2t_ld, int64_t b, int64_t e0,
                          float* state, float* dt_wf, const float* dt_codes);
void selective_scan_bidir_block(const BiScanArgs& a, const float* const a2t[2], int64_t a2t_ld, int64_t b,
                                int64_t e0, float* fwd_buf, float* state, float* dt_wf,
                                const float* const dt_codes[2]);
}

// The function of `isa`'s set: pick(isa, scalar::f, avx2::f, avx512::f).
template <typename F>
F pick_isa(int isa_level, F scalar_fn, F avx2_fn, F avx512_fn) {
  return isa_level >= 2 ? avx512_fn : isa_level == 1 ? avx2_fn : scalar_fn;
}

}  // namespace ptq4vm::cpu
