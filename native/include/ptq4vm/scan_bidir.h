// Both scan directions of a Vim block (bimamba v2, "div2" combine) in one kernel, with the
// SiLU(z) gate computed once and the result optionally quantized for out_proj.
#pragma once
#include <cstdint>

#include "ptq4vm/math_mode.h"
#include "ptq4vm/scan.h"
#include "ptq4vm/token_quant.h"

namespace ptq4vm {

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
