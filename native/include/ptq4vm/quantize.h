// Activation quantization: the one formula every path (fake-quant, CPU INT8, CUDA INT8) uses,
// so simulated and real inference produce the same integers.
#pragma once
#include <cstdint>

namespace ptq4vm {

// Asymmetric per-token quantization with parameters indexed by p = r % period
// (period = L, the sequence length, for per-token static (PTS); period = 1 for per-tensor;
//  period = rows for per-token dynamic, whose parameters come from quantize_params_dynamic):
//   v       = (x[r,j] · inv_smooth[j]) · inv_scale[p]          (fp32, in this order; inv_smooth null = 1)
//   q[r,j]  = clamp(round_half_even(v) + zero[p], 0, qmax)     (qmax = 2^bits − 1 ≤ 255)
// Dequantized value: (q − zero[p]) · scale[p]  (· smooth[j] to undo the smoothing).
void quantize_u8(int64_t rows, int64_t cols, int64_t period, const float* x, int64_t ldx,
                 const float* inv_smooth, const float* inv_scale, const int32_t* zero, int qmax,
                 uint8_t* q, int64_t ldq);
void quantize_u8_ref(int64_t rows, int64_t cols, int64_t period, const float* x, int64_t ldx,
                     const float* inv_smooth, const float* inv_scale, const int32_t* zero, int qmax,
                     uint8_t* q, int64_t ldq);

// Per-token dynamic parameters of the rows of
// x·inv_smooth: lo = min(0, min_j v), hi = max(0, max_j v), scale = max(hi − lo, 1e-8) / qmax,
// zero = clamp(round_half_even(−lo / scale), 0, qmax); writes scale, inv_scale = 1/scale, zero.
// A NaN input quantizes to 0 (NaNs are skipped by the min/max of the dynamic parameters).
void quantize_params_dynamic(int64_t rows, int64_t cols, const float* x, int64_t ldx,
                             const float* inv_smooth, int qmax, float* scale, float* inv_scale,
                             int32_t* zero);
void quantize_params_dynamic_ref(int64_t rows, int64_t cols, const float* x, int64_t ldx,
                                 const float* inv_smooth, int qmax, float* scale, float* inv_scale,
                                 int32_t* zero);

}  // namespace ptq4vm
