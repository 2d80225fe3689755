// Both scan directions of a Vim block (bimamba v2, "div2" combine) in one kernel, with the
// SiLU(z) gate computed once and the result optionally quantized for out_proj.
#pragma once
#include <cstdint>

#include "ptq4vm/math_mode.h"
#include "ptq4vm/token_quant.h"

namespace ptq4vm {

// dt_proj as an INT8 linear computed inside the scan (the INT8 runtime: Δ is never written to
// memory): Δ[row, e] = fma((float)Σ_r (q[row, r] − zero[p])·qw[e, r] · a_scale[p], w_scale[e], 0)
// with p = row % period, rows b·L + t: exactly what gemm_u8s8_f32 computes (no bias; dt_proj's
// bias is the scan's delta_bias). R·255·127 < 2^24 keeps the sums exact in float.
struct ScanDtProjInt8 {
  const uint8_t* q = nullptr;       int64_t ldq = 0;  // [B·L, R] activation codes
  int64_t period = 1;
  const float* a_scale = nullptr;   // [period]
  const int32_t* a_zero = nullptr;  // [period]
  const int8_t* qw = nullptr;       // [E, R]
  const float* w_scale = nullptr;   // [E]
  int64_t R = 0;                    // dt_rank, 1..512
};

// dt_proj as an FP32 linear computed inside the scan (the FP32 runtime, as ScanDtProjInt8 for
// INT8: Δ is never written to memory): Δ[row, e] = Σ_r x[row, r]·w[e, r], no bias (dt_proj's bias
// is the scan's delta_bias). The sum's order differs from gemm_f32's, so Δ agrees with the GEMM's
// to float rounding, not bit for bit.
struct ScanDtProjF32 {
  const float* x = nullptr;  int64_t ldx = 0;  // [B·L, R]: dt_proj's input (x_proj's first R columns)
  const float* w = nullptr;                     // [E, R]
  int64_t R = 0;                                // dt_rank, 1..512
};

// One direction's operands, all in original token order (the backward branch's conv output,
// Δ, B and C are those of the flipped sequence flipped back), token-major with own strides.
// delta is ignored (may be null) when dt_proj or dt_proj_f32 is given (at most one of them).
struct ScanDirectionArgs {
  const float* u = nullptr;      int64_t ldu = 0;
  const float* delta = nullptr;  int64_t lddelta = 0;
  const ScanDtProjInt8* dt_proj = nullptr;
  const ScanDtProjF32* dt_proj_f32 = nullptr;
  const float* A = nullptr;      // [E, N], already −exp(A_log)
  const float* Bm = nullptr;     int64_t ldB = 0;
  const float* Cm = nullptr;     int64_t ldC = 0;
  const float* D = nullptr;      // [E] or null
  const float* delta_bias = nullptr;  // [E] or null
};

// With o_dir the ungated scan of scan.h (dir[0] forward, dir[1] reverse):
//   yc[b,t,e] = (o_fwd[b,t,e] + o_bwd[b,t,e]) · 0.5 · silu(z[b,t,e])      (z is required)
// written to y (fp32, row stride ldy) if y is not null, and quantized to q with `quant`
// (row stride ldq, rows b·L + t) if q is not null; q is then exactly quantize_u8 of yc.
struct BiScanArgs {
  int64_t B = 0, L = 0, E = 0, N = 0;
  ScanDirectionArgs dir[2];
  const float* z = nullptr;  int64_t ldz = 0;
  bool delta_softplus = true;
  float* y = nullptr;        int64_t ldy = 0;
  uint8_t* q = nullptr;      int64_t ldq = 0;
  TokenQuantizer quant;
  MathMode math = MathMode::exact;  // softplus, SiLU(z) and the decays (math_mode.h)
};

void selective_scan_bidir_f32(const BiScanArgs& a);
// Reference: two selective_scan_f32_ref runs, the combine and quantize_u8_ref.
void selective_scan_bidir_f32_ref(const BiScanArgs& a);

}  // namespace ptq4vm
