// Causal depthwise conv1d + SiLU on the GPU (device pointers): the contract of ptq4vm/conv1d.h,
// and the fused two-direction version of a Vim block that also quantizes for x_proj/x_proj_b.
#pragma once
#include <cstdint>

#include "ptq4vm/cuda/runtime.h"

namespace ptq4vm::cuda {

// conv1d.h on device pointers; x and out are F32 or F16 (math and weights in fp32).
void causal_conv1d(int64_t B, int64_t L, int64_t E, int64_t K, DType x_type, const void* x, int64_t ldx,
                   const float* weight, const float* bias, bool reverse, bool apply_silu, DType out_type,
                   void* out, int64_t ldo, cudaStream_t stream);

// One direction of the fused conv: its weights and what it writes (each output optional, at
// least one per direction).
//   u8 : quantized SiLU(conv) for this direction's x_proj, quantize.h with quant (p = row % period)
//   out: SiLU(conv) as out_type (F32 / F16), e.g. for the FP-scan variant or the FP16 path
struct BiConvDirection {
  const float* weight = nullptr;  // [E, K]
  const float* bias = nullptr;    // [E] or null
  uint8_t* u8 = nullptr;
  int64_t ld_u8 = 0;
  QuantParams quant;
  void* out = nullptr;
  DType out_type = DType::F32;
  int64_t ld_out = 0;
};
// Both directions of a Vim (bimamba v2) block in one launch, SiLU always applied (a direction
// whose weight, u8 and out are all null is skipped; at least one must run):
//   fwd row b·L + t        = conv(x)[b, t]              (token order)
//   bwd row b·L + (L−1−t)  = reverse conv(x)[b, t]      (the backward branch's own order, so
//                                                        its per-token parameters index as calibrated)
struct BiConvArgs {
  int64_t B = 0, L = 0, E = 0, K = 0;  // K <= 8
  DType x_type = DType::F32;
  const void* x = nullptr;  // [B·L, E] with row stride ldx (the x half of in_proj's output)
  int64_t ldx = 0;
  BiConvDirection fwd, bwd;
};
void bidirectional_conv1d_silu(const BiConvArgs& a, cudaStream_t stream);

}  // namespace ptq4vm::cuda
