// Selective scan for JLSS: the double forward (reference for gradient checks) and the backward
// driver (threads over the batch, per-thread workspace, ISA dispatch of the float loops).
#include <algorithm>
#include <cmath>
#include <type_traits>
#include <vector>

#include "ptq4vm/runtime.h"
#include "ptq4vm/train.h"
#include "scratch.h"
#include "train_kernels.h"

namespace ptq4vm {

void selective_scan_f64(const ScanOperands<double>& s, bool accumulate, double* y, int64_t ldy) {
  std::vector<double> h(size_t(std::max<int64_t>(s.N, 1)));
  for (int64_t b = 0; b < s.B; ++b) {
    for (int64_t e = 0; e < s.E; ++e) {
      std::fill(h.begin(), h.end(), 0.0);
      for (int64_t k = 0; k < s.L; ++k) {
        const int64_t row = b * s.L + (s.reverse ? s.L - 1 - k : k);
        const double u = s.u[row * s.ldu + e];
        double dt = s.delta[row * s.lddelta + e] + (s.delta_bias ? s.delta_bias[e] : 0.0);
        if (s.delta_softplus && dt <= 20.0) dt = std::log1p(std::exp(dt));
        double o = s.D ? s.D[e] * u : 0.0;
        for (int64_t n = 0; n < s.N; ++n) {
          h[n] = std::exp(dt * s.A[e * s.N + n]) * h[n] + dt * s.Bm[row * s.ldB + n] * u;
          o += h[n] * s.Cm[row * s.ldC + n];
        }
        if (s.z) {
          const double z = s.z[row * s.ldz + e];
          o *= z / (1.0 + std::exp(-z));
        }
        double& out = y[row * ldy + e];
        out = (accumulate ? out : 0.0) + s.out_scale * o;
      }
    }
  }
}

namespace cpu::scalar {
int train_lane_width() { return VecF::kWidth; }
void train_scan_backward_item(const ScanOperands<float>* dirs, const ScanGrads<float>* grads, int nd, int64_t b,
                              float* ws, bool accumulate) {
  scan_backward_item_any<VecF>(dirs, grads, nd, b, ws, accumulate);
}
}  // namespace cpu::scalar

namespace {

using ScanItemF32 = decltype(&cpu::scalar::train_scan_backward_item);

struct ScanImpl {
  ScanItemF32 item;
  int width;
};

ScanImpl scan_impl(Isa isa) {
  switch (isa) {
    case Isa::Avx512Vnni:
    case Isa::Avx512:
      return {cpu::avx512::train_scan_backward_item, cpu::avx512::train_lane_width()};
    case Isa::Avx2:
      return {cpu::avx2::train_scan_backward_item, cpu::avx2::train_lane_width()};
    case Isa::Scalar:
      break;
  }
  return {cpu::scalar::train_scan_backward_item, cpu::scalar::train_lane_width()};
}

template <typename T, typename Item>
void run_scan_backward(const ScanOperands<T>* dirs, const ScanGrads<T>* grads, int nd, bool accumulate, Item item,
                       int width) {
  const ScanOperands<T>& s = dirs[0];
  if (s.B <= 0 || s.L <= 0 || s.E <= 0) return;
  const size_t elems = size_t(cpu::scan_workspace_elems(s.L, s.N, width, nd));
  parallel_for(s.B, 1, [&](int64_t b0, int64_t b1) {
    T* ws = cpu::thread_scratch_as<T>(cpu::ScratchSlot::KernelLocal, elems);
    for (int64_t b = b0; b < b1; ++b) item(dirs, grads, nd, b, ws, accumulate);
  });
}

}  // namespace

template <typename T>
void selective_scan_backward(const ScanOperands<T>* dirs, const ScanGrads<T>* grads, int ndirs, bool accumulate) {
  if constexpr (std::is_same_v<T, float>) {
    const ScanImpl impl = scan_impl(active_isa());
    run_scan_backward(dirs, grads, ndirs, accumulate, impl.item, impl.width);
  } else {
    run_scan_backward(dirs, grads, ndirs, accumulate, cpu::scan_backward_item_any<cpu::VecD>, cpu::VecD::kWidth);
  }
}
template void selective_scan_backward<float>(const ScanOperands<float>*, const ScanGrads<float>*, int, bool);
template void selective_scan_backward<double>(const ScanOperands<double>*, const ScanGrads<double>*, int, bool);

template <typename T>
void selective_scan_backward(const ScanOperands<T>& s, const ScanGrads<T>& g) {
  selective_scan_backward(&s, &g, 1, true);
}
template void selective_scan_backward<float>(const ScanOperands<float>&, const ScanGrads<float>&);
template void selective_scan_backward<double>(const ScanOperands<double>&, const ScanGrads<double>&);

}  // namespace ptq4vm
