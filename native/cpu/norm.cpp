// add_rmsnorm_f32 and add_rmsnorm_quantize_f32 drivers: rows split across threads, per-ISA
// row loop (norm_rows.h); scalar references.
#include "ptq4vm/norm.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "ptq4vm/norm_quant.h"
#include "ptq4vm/quantize.h"
#include "ptq4vm/runtime.h"
#include "vector_kernels.h"

namespace ptq4vm {
namespace {

void run_rows(int64_t rows, int64_t D, const float* x, const float* residual_in, float* residual_out,
              const float* weight, float eps, float* out, const TokenQuantizer* quant, uint8_t* q, int64_t ldq) {
  if (rows <= 0 || D <= 0) return;
  const auto rows_fn = cpu::pick_isa(int(active_isa()), cpu::scalar::add_rmsnorm_rows,
                                     cpu::avx2::add_rmsnorm_rows, cpu::avx512::add_rmsnorm_rows);
  parallel_for(rows, std::max<int64_t>(1, 16384 / D), [&](int64_t r0, int64_t r1) {
    rows_fn(r0, r1, D, x, residual_in, residual_out, weight, eps, out, quant, q, ldq);
  });
}

}  // namespace

void add_rmsnorm_f32(int64_t rows, int64_t D, const float* x, const float* residual_in,
                     float* residual_out, const float* weight, float eps, float* out) {
  run_rows(rows, D, x, residual_in, residual_out, weight, eps, out, nullptr, nullptr, 0);
}

void add_rmsnorm_quantize_f32(int64_t rows, int64_t D, const float* x, const float* residual_in,
                              float* residual_out, const float* weight, float eps, float* out,
                              const TokenQuantizer& quant, uint8_t* q, int64_t ldq) {
  run_rows(rows, D, x, residual_in, residual_out, weight, eps, out, &quant, q, ldq);
}

void add_rmsnorm_f32_ref(int64_t rows, int64_t D, const float* x, const float* residual_in,
                         float* residual_out, const float* weight, float eps, float* out) {
  for (int64_t r = 0; r < rows; ++r) {
    double ss = 0;
    for (int64_t j = 0; j < D; ++j) {
      const float v = x[r * D + j] + (residual_in ? residual_in[r * D + j] : 0.0f);
      residual_out[r * D + j] = v;
      ss += double(v) * v;
    }
    const double inv = 1.0 / std::sqrt(ss / double(D) + double(eps));
    for (int64_t j = 0; j < D; ++j)
      out[r * D + j] = float(double(residual_out[r * D + j]) * inv * double(weight[j]));
  }
}

void add_rmsnorm_quantize_f32_ref(int64_t rows, int64_t D, const float* x, const float* residual_in,
                                  float* residual_out, const float* weight, float eps, float* out,
                                  const TokenQuantizer& quant, uint8_t* q, int64_t ldq) {
  std::vector<float> normed(size_t(std::max<int64_t>(rows * D, 1)));
  add_rmsnorm_f32_ref(rows, D, x, residual_in, residual_out, weight, eps, normed.data());
  if (out) std::copy(normed.begin(), normed.begin() + rows * D, out);
  quantize_u8_ref(rows, D, quant.period, normed.data(), D, quant.inv_smooth, quant.inv_scale, quant.zero,
                  quant.qmax, q, ldq);
}

}  // namespace ptq4vm
