// INT8 GEMM: u8 activations (asymmetric, per-token) × s8 weights (symmetric, per output
// channel) → s32, with the dequantizing epilogue fused.
#pragma once
#include <cstdint>
#include <memory>

namespace ptq4vm {

// Weights [N, K] int8 (levels ±(2^(b−1)−1), smoothing already folded in), packed once at load
// into the layout of the active ISA; also holds wsum[n] = Σ_k qw[n,k] for the zero-point term.
struct PackedInt8Weights;
struct PackedInt8WeightsDeleter { void operator()(PackedInt8Weights*) const; };
using PackedInt8WeightsPtr = std::unique_ptr<PackedInt8Weights, PackedInt8WeightsDeleter>;
// The CPU layout is the same for every ISA, so a packing stays valid when the active ISA changes.
// K ≤ 32768 keeps every accumulator and zero-point term inside int32.
PackedInt8WeightsPtr pack_int8_weights(int64_t N, int64_t K, const int8_t* qw);
const int32_t* packed_int8_wsum(const PackedInt8Weights& w);
int64_t packed_int8_n(const PackedInt8Weights& w);  // N and K the weights were packed with
int64_t packed_int8_k(const PackedInt8Weights& w);

// Epilogue, p = m % period (see quantize.h), in fp32 with exactly two roundings after the
// int → float conversion, so every path (and the reference) produces the same bits:
//   v       = (float)(acc[m,n] − a_zero[p] · wsum[n]) · a_scale[p]
//   C[m,n]  = fma(v, w_scale[n], bias ? bias[n] : 0)          (one fused multiply-add)
// accumulate adds that value to C (C + y) instead of writing it. a_zero[p] in [0, 255].
struct Int8Epilogue {
  int64_t period = 1;
  const float* a_scale = nullptr;   // [period]
  const int32_t* a_zero = nullptr;  // [period]
  const float* w_scale = nullptr;   // [N]
  const float* bias = nullptr;      // [N] or null
  bool accumulate = false;
};

// A: [M, K] u8, row stride lda. C: [M, N] fp32, row stride ldc.
void gemm_u8s8_f32(int64_t M, int64_t N, int64_t K, const uint8_t* A, int64_t lda,
                   const PackedInt8Weights& W, const Int8Epilogue& ep, float* C, int64_t ldc);
// Raw accumulators acc[m,n] = Σ_k A[m,k]·qw[n,k] (tests check them for exact equality).
void gemm_u8s8_s32(int64_t M, int64_t N, int64_t K, const uint8_t* A, int64_t lda,
                   const PackedInt8Weights& W, int32_t* C, int64_t ldc);
// Scalar references on the unpacked weights.
void gemm_u8s8_s32_ref(int64_t M, int64_t N, int64_t K, const uint8_t* A, int64_t lda,
                       const int8_t* qw, int32_t* C, int64_t ldc);
void gemm_u8s8_f32_ref(int64_t M, int64_t N, int64_t K, const uint8_t* A, int64_t lda,
                       const int8_t* qw, const Int8Epilogue& ep, float* C, int64_t ldc);

}  // namespace ptq4vm
