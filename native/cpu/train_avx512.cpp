// The float loops of the JLSS backward passes (train_kernels.h) compiled for AVX512; the drivers in
// train_scan.cpp, train_conv.cpp and train_quant.cpp call them when active_isa() allows.
// GCC 12 flags its own intrinsics (_mm512_undefined_ps) as maybe-uninitialized once inlined.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include "train_kernels.h"

namespace ptq4vm::cpu::avx512 {

int train_lane_width() { return VecF::kWidth; }

void train_scan_backward_item(const ScanOperands<float>* dirs, const ScanGrads<float>* grads, int nd, int64_t b,
                              float* ws, bool accumulate) {
  scan_backward_item_any<VecF>(dirs, grads, nd, b, ws, accumulate);
}

void train_conv_backward_item(int64_t b, int64_t L, int64_t E, int64_t K, const float* x, int64_t ldx,
                              const float* weight_t, const float* bias, bool reverse, bool apply_silu,
                              const float* dout, int64_t lddout, float* dx, int64_t lddx, float* dpre,
                              bool accumulate) {
  conv_backward_item<VecF>(b, L, E, K, x, ldx, weight_t, bias, reverse, apply_silu, dout, lddout, dx, lddx, dpre,
                           accumulate);
}

void train_act_quant_forward_rows(const ActQuant<float>& q, const float* inv_smooth, const float* inv_scale,
                                  int64_t r0, int64_t r1, float* out, int64_t ldo, uint8_t* levels, int64_t ldl) {
  act_quant_forward_rows<VecF>(q, inv_smooth, inv_scale, r0, r1, out, ldo, levels, ldl);
}

void train_act_quant_backward_rows(const ActQuant<float>& q, const float* inv_smooth, const float* inv_scale,
                                   const float* dout, int64_t lddout, int64_t r0, int64_t r1, float* dx,
                                   int64_t lddx, float* dsmooth_part, double* dscale_rows, bool accumulate_dx) {
  act_quant_backward_rows<VecF>(q, inv_smooth, inv_scale, dout, lddout, r0, r1, dx, lddx, dsmooth_part,
                                dscale_rows, accumulate_dx);
}

}  // namespace ptq4vm::cpu::avx512
