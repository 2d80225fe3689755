// Causal conv1d (+ SiLU) for JLSS: the double forward (reference for gradient checks) and the
// backward driver (threads over the batch, ISA dispatch of the float loops).
#include <cmath>
#include <type_traits>
#include <vector>

#include "ptq4vm/runtime.h"
#include "ptq4vm/train.h"
#include "scratch.h"
#include "train_kernels.h"

namespace ptq4vm {

void causal_conv1d_f64(int64_t B, int64_t L, int64_t E, int64_t K, const double* x, int64_t ldx,
                       const double* weight, const double* bias, bool reverse, bool apply_silu,
                       double* out, int64_t ldo) {
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t t = 0; t < L; ++t) {
      for (int64_t e = 0; e < E; ++e) {
        double acc = bias ? bias[e] : 0.0;
        for (int64_t j = 0; j < K; ++j) {
          const int64_t src = reverse ? t + j : t - j;
          if (src < 0 || src >= L) continue;
          acc += weight[e * K + (K - 1 - j)] * x[(b * L + src) * ldx + e];
        }
        if (apply_silu) acc = acc / (1.0 + std::exp(-acc));
        out[(b * L + t) * ldo + e] = acc;
      }
    }
  }
}

namespace cpu::scalar {
void train_conv_backward_item(int64_t b, int64_t L, int64_t E, int64_t K, const float* x, int64_t ldx,
                              const float* weight_t, const float* bias, bool reverse, bool apply_silu,
                              const float* dout, int64_t lddout, float* dx, int64_t lddx, float* dpre,
                              bool accumulate) {
  conv_backward_item<VecF>(b, L, E, K, x, ldx, weight_t, bias, reverse, apply_silu, dout, lddout, dx, lddx, dpre,
                           accumulate);
}
}  // namespace cpu::scalar

namespace {
using ConvItemF32 = decltype(&cpu::scalar::train_conv_backward_item);

ConvItemF32 conv_item(Isa isa) {
  switch (isa) {
    case Isa::Avx512Vnni:
    case Isa::Avx512:
      return cpu::avx512::train_conv_backward_item;
    case Isa::Avx2:
      return cpu::avx2::train_conv_backward_item;
    case Isa::Scalar:
      break;
  }
  return cpu::scalar::train_conv_backward_item;
}
}  // namespace

template <typename T>
void causal_conv1d_backward(int64_t B, int64_t L, int64_t E, int64_t K, const T* x, int64_t ldx,
                            const T* weight, const T* bias, bool reverse, bool apply_silu,
                            const T* dout, int64_t lddout, T* dx, int64_t lddx, bool accumulate) {
  if (B <= 0 || L <= 0 || E <= 0 || K <= 0 || !dx) return;
  // Taps-major weights so the channel lanes of one tap are contiguous.
  std::vector<T> weight_t(size_t(K * E));
  for (int64_t e = 0; e < E; ++e)
    for (int64_t i = 0; i < K; ++i) weight_t[size_t(i * E + e)] = weight[e * K + i];
  const size_t dpre_elems = size_t(L * E);
  parallel_for(B, 1, [&](int64_t b0, int64_t b1) {
    T* dpre = cpu::thread_scratch_as<T>(cpu::ScratchSlot::KernelLocal, dpre_elems);
    for (int64_t b = b0; b < b1; ++b) {
      if constexpr (std::is_same_v<T, float>) {
        conv_item(active_isa())(b, L, E, K, x, ldx, weight_t.data(), bias, reverse, apply_silu, dout,
                                lddout, dx, lddx, dpre, accumulate);
      } else {
        cpu::conv_backward_item<cpu::VecD>(b, L, E, K, x, ldx, weight_t.data(), bias, reverse, apply_silu,
                                           dout, lddout, dx, lddx, dpre, accumulate);
      }
    }
  });
}
template void causal_conv1d_backward<float>(int64_t, int64_t, int64_t, int64_t, const float*, int64_t,
                                            const float*, const float*, bool, bool, const float*, int64_t,
                                            float*, int64_t, bool);
template void causal_conv1d_backward<double>(int64_t, int64_t, int64_t, int64_t, const double*, int64_t,
                                             const double*, const double*, bool, bool, const double*,
                                             int64_t, double*, int64_t, bool);

}  // namespace ptq4vm
