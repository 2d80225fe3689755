// Mamba selective scan with fp32 state, token-major layout.
#pragma once
#include <cstdint>

#include "ptq4vm/math_mode.h"

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

// For every batch b and channel e, over time t (t = 0..L-1, or L-1..0 when reverse):
//   dt  = delta[b,t,e] + delta_bias[e];  if delta_softplus: dt = softplus(dt)   (softplus(x) = x for x > 20)
//   h[n] = exp(dt · A[e,n]) · h[n] + dt · Bm[b,t,n] · u[b,t,e]          (h starts at 0)
//   o   = Σ_n h[n] · Cm[b,t,n] + D[e] · u[b,t,e]
//   if z: o *= silu(z[b,t,e])
//   y[b,t,e] = (accumulate ? y[b,t,e] : 0) + out_scale · o
// A is the continuous-time matrix (already −exp(A_log)). D, z, delta_bias may be null.
// Every [B, L, ·] operand has its own token stride (ld*), so slices of a wider GEMM output
// (z inside in_proj's output, B and C inside x_proj's) are passed without copies.
// With dt_proj or dt_proj_f32 (at most one), delta[b,t,·] is dt_proj's output computed in the
// scan from its input row b·L + t, and delta is ignored (may be null).
struct ScanArgs {
  int64_t B = 0, L = 0, E = 0, N = 0;
  const float* u = nullptr;      int64_t ldu = 0;
  const float* delta = nullptr;  int64_t lddelta = 0;
  const ScanDtProjInt8* dt_proj = nullptr;
  const ScanDtProjF32* dt_proj_f32 = nullptr;
  const float* A = nullptr;      // [E, N]
  const float* Bm = nullptr;     int64_t ldB = 0;
  const float* Cm = nullptr;     int64_t ldC = 0;
  const float* D = nullptr;      // [E]
  const float* z = nullptr;      int64_t ldz = 0;
  const float* delta_bias = nullptr;  // [E]
  bool delta_softplus = true;
  bool reverse = false;
  bool accumulate = false;
  float out_scale = 1.0f;
  float* y = nullptr;            int64_t ldy = 0;
  MathMode math = MathMode::exact;  // softplus, SiLU(z) and the decays (math_mode.h); the reference is always exact
};

void selective_scan_f32(const ScanArgs& a);
// Scalar reference (double state), for tests.
void selective_scan_f32_ref(const ScanArgs& a);

}  // namespace ptq4vm
