// Mamba selective scan with fp32 state, token-major layout.
#pragma once
#include <cstdint>

#include "ptq4vm/math_mode.h"

namespace ptq4vm {

// For every batch b and channel e, over time t (t = 0..L-1, or L-1..0 when reverse):
//   dt  = delta[b,t,e] + delta_bias[e];  if delta_softplus: dt = softplus(dt)   (softplus(x) = x for x > 20)
//   h[n] = exp(dt · A[e,n]) · h[n] + dt · Bm[b,t,n] · u[b,t,e]          (h starts at 0)
//   o   = Σ_n h[n] · Cm[b,t,n] + D[e] · u[b,t,e]
//   if z: o *= silu(z[b,t,e])
//   y[b,t,e] = (accumulate ? y[b,t,e] : 0) + out_scale · o
// A is the continuous-time matrix (already −exp(A_log)). D, z, delta_bias may be null.
// Every [B, L, ·] operand has its own token stride (ld*), so slices of a wider GEMM output
// (z inside in_proj's output, B and C inside x_proj's) are passed without copies.
struct ScanArgs {
  int64_t B = 0, L = 0, E = 0, N = 0;
  const float* u = nullptr;      int64_t ldu = 0;
  const float* delta = nullptr;  int64_t lddelta = 0;
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
