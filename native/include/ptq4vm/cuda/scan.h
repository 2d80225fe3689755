// Selective scan on the GPU (device pointers), fp32 state: the single-direction contract of
// ptq4vm/scan.h, and the fused two-direction scan of a Vim block (FP16, FP32 or quantized).
#pragma once
#include <cstdint>

#include "ptq4vm/cuda/runtime.h"
#include "ptq4vm/scan.h"

namespace ptq4vm::cuda {

// scan.h's selective_scan_f32 with device pointers (every field of ScanArgs, same semantics).
void selective_scan_f32(const ScanArgs& a, cudaStream_t stream);

// One direction of the fused scan. Its operands are in that direction's own token order
// (forward: t; backward: s = L−1−t, as the Vim backward branch produces them), rows b·L + s.
struct BiScanDirection {
  const void* u = nullptr;  // [B·L, E], row stride ldu, type BiScanArgs::u_type
  int64_t ldu = 0;
  DequantParams u_dequant;  // u_type U8: u = ((q − zero[p]) · scale[p]) · smooth[e], p = row % period
  const void* delta = nullptr;  // [B·L, E], type p_type (dt_proj's output, without its bias)
  int64_t lddelta = 0;
  const float* delta_bias = nullptr;  // [E] or null
  const float* A = nullptr;           // [E, N], already −exp(A_log)
  const void* Bm = nullptr;           // [B·L, N], type p_type (a slice of x_proj's output)
  int64_t ldB = 0;
  const void* Cm = nullptr;
  int64_t ldC = 0;
  const float* D = nullptr;  // [E] or null
};

// y[b,t,e] = (o_fwd[b,t,e] + o_bwd[b,t,e]) / 2   (the "div2" combine of bimamba v2)
// where each direction is scan.h's o (dt = softplus(delta + delta_bias) when delta_softplus,
// h = exp(dt·A)·h + dt·B·u, o = Σ h·C + D·u, o *= silu(z)) run forward over its own order, and
// o_bwd is mapped back to token order. z [B·L, E] is in token order (the gate of both directions).
// y is written as y_type; U8: quantize.h with y_quant (p = (b·L + t) % period, inv_smooth[e]),
// the per-token-quantized input of out_proj.
// Types: u_type F32/F16/U8; p_type (delta, B, C, z) F32/F16; y_type F32/F16/U8.
// N <= 16 in the fast kernel; the simple kernel takes N <= 64. L is limited by shared memory
// (about 190 KB / (32 · 4) tokens; L = 785 needs 100 KB).
struct BiScanArgs {
  int64_t B = 0, L = 0, E = 0, N = 0;
  DType u_type = DType::F32, p_type = DType::F32, y_type = DType::F32;
  BiScanDirection fwd, bwd;
  const void* z = nullptr;  // or null (no gate)
  int64_t ldz = 0;
  bool delta_softplus = true;
  void* y = nullptr;
  int64_t ldy = 0;
  QuantParams y_quant;  // y_type U8 only
};
void bidirectional_scan(const BiScanArgs& a, cudaStream_t stream);

}  // namespace ptq4vm::cuda
