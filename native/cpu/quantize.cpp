// quantize_u8 / quantize_params_dynamic drivers (rows split across threads, per-ISA row loops
// in quantize_rows.h) and their scalar references.
#include "ptq4vm/quantize.h"

#include <algorithm>
#include <cmath>

#include "ptq4vm/runtime.h"
#include "vector_kernels.h"

namespace ptq4vm {

void quantize_u8(int64_t rows, int64_t cols, int64_t period, const float* x, int64_t ldx,
                 const float* inv_smooth, const float* inv_scale, const int32_t* zero, int qmax,
                 uint8_t* q, int64_t ldq) {
  if (rows <= 0 || cols <= 0) return;
  const auto fn = cpu::pick_isa(int(active_isa()), cpu::scalar::quantize_u8_rows,
                                cpu::avx2::quantize_u8_rows, cpu::avx512::quantize_u8_rows);
  parallel_for(rows, std::max<int64_t>(1, 32768 / cols), [&](int64_t r0, int64_t r1) {
    fn(r0, r1, cols, period, x, ldx, inv_smooth, inv_scale, zero, qmax, q, ldq);
  });
}

void quantize_u8_ref(int64_t rows, int64_t cols, int64_t period, const float* x, int64_t ldx,
                     const float* inv_smooth, const float* inv_scale, const int32_t* zero, int qmax,
                     uint8_t* q, int64_t ldq) {
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t p = r % period;
    for (int64_t j = 0; j < cols; ++j) {
      const float v = (x[r * ldx + j] * (inv_smooth ? inv_smooth[j] : 1.0f)) * inv_scale[p];
      float f = std::nearbyint(v) + float(zero[p]);
      if (!(f >= 0.0f)) f = 0.0f;  // also NaN
      if (f > float(qmax)) f = float(qmax);
      q[r * ldq + j] = uint8_t(f);
    }
  }
}

void quantize_params_dynamic(int64_t rows, int64_t cols, const float* x, int64_t ldx,
                             const float* inv_smooth, int qmax, float* scale, float* inv_scale,
                             int32_t* zero) {
  if (rows <= 0) return;
  const auto fn = cpu::pick_isa(int(active_isa()), cpu::scalar::quantize_params_rows,
                                cpu::avx2::quantize_params_rows, cpu::avx512::quantize_params_rows);
  parallel_for(rows, std::max<int64_t>(1, 32768 / std::max<int64_t>(cols, 1)), [&](int64_t r0, int64_t r1) {
    fn(r0, r1, cols, x, ldx, inv_smooth, qmax, scale, inv_scale, zero);
  });
}

void quantize_params_dynamic_ref(int64_t rows, int64_t cols, const float* x, int64_t ldx,
                                 const float* inv_smooth, int qmax, float* scale, float* inv_scale,
                                 int32_t* zero) {
  for (int64_t r = 0; r < rows; ++r) {
    float lo = 0.0f, hi = 0.0f;
    for (int64_t j = 0; j < cols; ++j) {
      const float v = x[r * ldx + j] * (inv_smooth ? inv_smooth[j] : 1.0f);
      lo = std::min(lo, v);
      hi = std::max(hi, v);
    }
    float range = hi - lo;
    if (!(range >= 1e-8f)) range = 1e-8f;
    const float s = range / float(qmax);
    const float z = std::clamp(std::nearbyint(-lo / s), 0.0f, float(qmax));
    scale[r] = s;
    inv_scale[r] = 1.0f / s;
    zero[r] = int32_t(z);
  }
}

}  // namespace ptq4vm
