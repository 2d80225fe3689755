// Fake quantizers for JLSS (forward + straight-through backward, train.h): activation drivers
// (threads over rows, ISA dispatch of the float loops, deterministic reductions) and the weight
// quantizer, whose matrices are small enough for plain loops.
#include <algorithm>
#include <cmath>
#include <type_traits>
#include <vector>

#include "ptq4vm/runtime.h"
#include "ptq4vm/train.h"
#include "train_kernels.h"

namespace ptq4vm {

namespace cpu::scalar {
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
}  // namespace cpu::scalar

namespace {

// Rows per reduction chunk: the σ gradient is summed per chunk, then over chunks in order, so the
// result does not depend on how many threads ran.
constexpr int64_t kRowChunk = 128;

struct ActQuantImplF32 {
  decltype(&cpu::scalar::train_act_quant_forward_rows) forward;
  decltype(&cpu::scalar::train_act_quant_backward_rows) backward;
};

ActQuantImplF32 act_impl(Isa isa) {
  switch (isa) {
    case Isa::Avx512Vnni:
    case Isa::Avx512:
      return {cpu::avx512::train_act_quant_forward_rows, cpu::avx512::train_act_quant_backward_rows};
    case Isa::Avx2:
      return {cpu::avx2::train_act_quant_forward_rows, cpu::avx2::train_act_quant_backward_rows};
    case Isa::Scalar:
      break;
  }
  return {cpu::scalar::train_act_quant_forward_rows, cpu::scalar::train_act_quant_backward_rows};
}

// Reciprocals in T, as quantize.h's callers pass inv_smooth / inv_scale: the same integers.
template <typename T>
std::vector<T> reciprocals(const T* v, int64_t n) {
  std::vector<T> r(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) r[size_t(i)] = T(1) / v[i];
  return r;
}

}  // namespace

template <typename T>
void fake_quant_act_forward(const ActQuant<T>& q, T* out, int64_t ldo, uint8_t* levels, int64_t ldl) {
  if (q.rows <= 0 || q.cols <= 0) return;
  const std::vector<T> inv_smooth = q.smooth ? reciprocals(q.smooth, q.cols) : std::vector<T>();
  const std::vector<T> inv_scale = reciprocals(q.scale, q.period);
  const T* ism = q.smooth ? inv_smooth.data() : nullptr;
  parallel_for(q.rows, kRowChunk, [&](int64_t r0, int64_t r1) {
    if constexpr (std::is_same_v<T, float>) {
      act_impl(active_isa()).forward(q, ism, inv_scale.data(), r0, r1, out, ldo, levels, ldl);
    } else {
      cpu::act_quant_forward_rows<cpu::VecD>(q, ism, inv_scale.data(), r0, r1, out, ldo, levels, ldl);
    }
  });
}

template <typename T>
void fake_quant_act_backward(const ActQuant<T>& q, const T* dout, int64_t lddout, T* dx, int64_t lddx,
                             T* dsmooth, T* dscale, bool accumulate_dx) {
  if (q.rows <= 0 || q.cols <= 0) return;
  if (!q.smooth) dsmooth = nullptr;
  const std::vector<T> inv_smooth = q.smooth ? reciprocals(q.smooth, q.cols) : std::vector<T>();
  const std::vector<T> inv_scale = reciprocals(q.scale, q.period);
  const T* ism = q.smooth ? inv_smooth.data() : nullptr;
  const int64_t chunks = (q.rows + kRowChunk - 1) / kRowChunk;
  std::vector<T> smooth_part(dsmooth ? size_t(chunks * q.cols) : 0, T(0));
  // ∂loss/∂s per row (a row's parameters are one p), summed into dscale in row order below.
  std::vector<double> row_dscale(dscale ? size_t(q.rows) : 0, 0.0);
  parallel_for(chunks, 1, [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c) {
      const int64_t r0 = c * kRowChunk, r1 = std::min(q.rows, r0 + kRowChunk);
      T* sp = dsmooth ? smooth_part.data() + c * q.cols : nullptr;
      double* dsr = dscale ? row_dscale.data() + r0 : nullptr;
      if constexpr (std::is_same_v<T, float>) {
        act_impl(active_isa()).backward(q, ism, inv_scale.data(), dout, lddout, r0, r1, dx, lddx, sp, dsr,
                                        accumulate_dx);
      } else {
        cpu::act_quant_backward_rows<cpu::VecD>(q, ism, inv_scale.data(), dout, lddout, r0, r1, dx, lddx, sp,
                                                dsr, accumulate_dx);
      }
    }
  });
  if (dsmooth) {
    for (int64_t j = 0; j < q.cols; ++j) {
      double acc = 0;
      for (int64_t c = 0; c < chunks; ++c) acc += double(smooth_part[size_t(c * q.cols + j)]);
      dsmooth[j] += T(acc);
    }
  }
  if (dscale) {
    std::vector<double> acc(size_t(q.period), 0.0);
    for (int64_t r = 0; r < q.rows; ++r) acc[size_t(cpu::act_param_index(q, r))] += row_dscale[size_t(r)];
    for (int64_t p = 0; p < q.period; ++p) dscale[p] += T(acc[size_t(p)]);
  }
}

template <typename T>
void fake_quant_weight_forward(const WeightQuant<T>& q, T* out, int64_t ldo) {
  const T qmax = T(q.qmax);
  for (int64_t o = 0; o < q.rows; ++o) {
    const T inv_s = T(1) / q.scale[o];
    for (int64_t k = 0; k < q.cols; ++k) {
      const T wk = q.smooth ? q.w[o * q.ldw + k] * q.smooth[k] : q.w[o * q.ldw + k];
      const T level = std::min(std::max(std::nearbyint(wk * inv_s), -qmax), qmax);
      out[o * ldo + k] = level * q.scale[o];
    }
  }
}

template <typename T>
void fake_quant_weight_backward(const WeightQuant<T>& q, const T* dout, int64_t lddout, T* dw, int64_t lddw,
                                T* dsmooth, T* dscale) {
  if (!q.smooth) dsmooth = nullptr;
  const T qmax = T(q.qmax);
  std::vector<double> smooth_acc(dsmooth ? size_t(q.cols) : 0, 0.0);
  for (int64_t o = 0; o < q.rows; ++o) {
    const T inv_s = T(1) / q.scale[o];
    double ds = 0;
    for (int64_t k = 0; k < q.cols; ++k) {
      const T w = q.w[o * q.ldw + k];
      const T wk = q.smooth ? w * q.smooth[k] : w;
      const T v = wk * inv_s;
      const T rv = std::nearbyint(v);
      const T g = dout[o * lddout + k];
      const bool inside = rv >= -qmax && rv <= qmax;
      ds += double(g) * double(inside ? rv - v : (rv > qmax ? qmax : -qmax));
      if (!inside) continue;
      if (dw) dw[o * lddw + k] += q.smooth ? g * q.smooth[k] : g;
      if (dsmooth) smooth_acc[size_t(k)] += double(g) * double(w);
    }
    if (dscale) dscale[o] += T(ds);
  }
  for (size_t k = 0; k < smooth_acc.size(); ++k) dsmooth[k] += T(smooth_acc[k]);
}

void quantize_weight_levels_f32(const WeightQuant<float>& q, int8_t* levels, int64_t ldl) {
  const float qmax = float(q.qmax);
  for (int64_t o = 0; o < q.rows; ++o) {
    const float inv_s = 1.0f / q.scale[o];
    for (int64_t k = 0; k < q.cols; ++k) {
      const float wk = q.smooth ? q.w[o * q.ldw + k] * q.smooth[k] : q.w[o * q.ldw + k];
      levels[o * ldl + k] = int8_t(std::min(std::max(std::nearbyint(wk * inv_s), -qmax), qmax));
    }
  }
}

#define PTQ4VM_TRAIN_QUANT_INSTANTIATE(T)                                                                \
  template void fake_quant_act_forward<T>(const ActQuant<T>&, T*, int64_t, uint8_t*, int64_t);          \
  template void fake_quant_act_backward<T>(const ActQuant<T>&, const T*, int64_t, T*, int64_t, T*, T*, bool); \
  template void fake_quant_weight_forward<T>(const WeightQuant<T>&, T*, int64_t);                        \
  template void fake_quant_weight_backward<T>(const WeightQuant<T>&, const T*, int64_t, T*, int64_t, T*, T*);
PTQ4VM_TRAIN_QUANT_INSTANTIATE(float)
PTQ4VM_TRAIN_QUANT_INSTANTIATE(double)

}  // namespace ptq4vm
