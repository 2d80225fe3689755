// Differentiable pieces of a Vim block for JLSS calibration (lib/autograd drives them): the
// backward passes of the selective scan, the causal conv1d + SiLU and the fake quantizers, plus
// double-precision forwards of the FP32 kernels so every gradient can be checked against
// central finite differences in float64. Templates are instantiated for float and double; the
// float instantiation is the fast one (SIMD per ISA, threaded), double is for checks.
//
// Conventions: token-major [rows, cols] matrices with row strides (ld*) as in the forward
// headers. Every backward ADDS into its gradient outputs (callers zero them first) unless its
// `accumulate` flag says to overwrite them; a null gradient pointer means "not needed" and is
// skipped. Reductions (gradients of parameters shared
// across rows) are summed over fixed-size row chunks in a fixed order, so results do not depend
// on the number of threads.
#pragma once
#include <cstdint>

namespace ptq4vm {

// ---- Selective scan (semantics of scan.h; A, D and delta_bias are frozen) ----

template <typename T>
struct ScanOperands {
  int64_t B = 0, L = 0, E = 0, N = 0;
  const T* u = nullptr;      int64_t ldu = 0;
  const T* delta = nullptr;  int64_t lddelta = 0;
  const T* A = nullptr;      // [E, N]
  const T* Bm = nullptr;     int64_t ldB = 0;
  const T* Cm = nullptr;     int64_t ldC = 0;
  const T* D = nullptr;      // [E] or null
  const T* z = nullptr;      int64_t ldz = 0;  // or null
  const T* delta_bias = nullptr;  // [E] or null
  bool delta_softplus = true;
  bool reverse = false;
  T out_scale = 1;
};

template <typename T>
struct ScanGrads {
  const T* dy = nullptr;     int64_t lddy = 0;   // upstream gradient of y [B, L, E]
  T* du = nullptr;           int64_t lddu = 0;   // [B, L, E]
  T* ddelta = nullptr;       int64_t ldddelta = 0;  // [B, L, E], through softplus and delta_bias
  T* dB = nullptr;           int64_t lddB = 0;   // [B, L, N], summed over channels
  T* dC = nullptr;           int64_t lddC = 0;   // [B, L, N], summed over channels
  T* dz = nullptr;           int64_t lddz = 0;   // [B, L, E]; only when the operands have z
};

// y (+)= out_scale · scan(...) in double; the scalar reference for float64 gradient checks.
void selective_scan_f64(const ScanOperands<double>& s, bool accumulate, double* y, int64_t ldy);

// Recomputes the forward states per (batch, block of channels) into thread-local buffers, then
// runs the adjoint recurrence backwards in time. Threads split the batch (dB and dC are sums
// over channels, so one batch item belongs to one thread).
template <typename T>
void selective_scan_backward(const ScanOperands<T>& s, const ScanGrads<T>& g);
// The same for y = out_scale · (Σ_d scan_d) · [silu(z)] over ndirs = 1 or 2 directions that share
// z, out_scale (dirs[0]'s; the others' z and out_scale are ignored), dy and dz (grads[0]'s);
// grads[d] receives direction d's du, ddelta, dB and dC. The gate's terms are computed and dz
// written once. accumulate = false overwrites every requested output instead of adding into it.
template <typename T>
void selective_scan_backward(const ScanOperands<T>* dirs, const ScanGrads<T>* grads, int ndirs, bool accumulate);
extern template void selective_scan_backward<float>(const ScanOperands<float>&, const ScanGrads<float>&);
extern template void selective_scan_backward<double>(const ScanOperands<double>&, const ScanGrads<double>&);
extern template void selective_scan_backward<float>(const ScanOperands<float>*, const ScanGrads<float>*, int, bool);
extern template void selective_scan_backward<double>(const ScanOperands<double>*, const ScanGrads<double>*, int, bool);

// ---- Causal depthwise conv1d (+ SiLU), semantics of conv1d.h; weight and bias frozen ----

void causal_conv1d_f64(int64_t B, int64_t L, int64_t E, int64_t K, const double* x, int64_t ldx,
                       const double* weight, const double* bias, bool reverse, bool apply_silu,
                       double* out, int64_t ldo);

// dx += ∂out/∂x ᵀ · dout (recomputes the pre-activation when apply_silu); accumulate = false
// overwrites dx instead.
template <typename T>
void causal_conv1d_backward(int64_t B, int64_t L, int64_t E, int64_t K, const T* x, int64_t ldx,
                            const T* weight, const T* bias, bool reverse, bool apply_silu,
                            const T* dout, int64_t lddout, T* dx, int64_t lddx, bool accumulate = true);
extern template void causal_conv1d_backward<float>(int64_t, int64_t, int64_t, int64_t, const float*, int64_t,
                                                   const float*, const float*, bool, bool, const float*,
                                                   int64_t, float*, int64_t, bool);
extern template void causal_conv1d_backward<double>(int64_t, int64_t, int64_t, int64_t, const double*, int64_t,
                                                    const double*, const double*, bool, bool, const double*,
                                                    int64_t, double*, int64_t, bool);

// ---- Fake quantizers with straight-through (LSQ-style) gradients ----
//
// Activations, asymmetric, parameters per token position p = r % period (reverse_period:
// p = period − 1 − r % period, for the Vim backward branch whose token order is reversed):
//   a = x · (1/σ[j]);  v = a · (1/s[p]);  q = round_half_even(v) + z[p]   (the quantize.h formula)
//   out = (clamp(q, 0, qmax) − z[p]) · s[p]
// Gradients: inside (0 ≤ q ≤ qmax, bounds included, as torch.clamp): ∂out/∂a = 1 and
// ∂out/∂s = round(v) − v; below: ∂out/∂a = 0, ∂out/∂s = −z[p]; above: 0 and qmax − z[p].
// Then ∂a/∂x = 1/σ[j] and ∂a/∂σ[j] = −a/σ[j]. σ null means no smoothing (σ = 1, no dσ).
template <typename T>
struct ActQuant {
  int64_t rows = 0, cols = 0, period = 1;
  bool reverse_period = false;
  const T* x = nullptr;  int64_t ldx = 0;
  const T* smooth = nullptr;   // σ [cols] (> 0) or null
  const T* scale = nullptr;    // s [period] (> 0)
  const int32_t* zero = nullptr;  // z [period], in [0, qmax]
  int qmax = 255;
};
// levels (row stride ldl) optionally receives clamp(q, 0, qmax) as bytes (qmax ≤ 255): the u8
// operand of gemm_int8.h, whose product then equals that of the fake-quantized values.
template <typename T>
void fake_quant_act_forward(const ActQuant<T>& q, T* out, int64_t ldo, uint8_t* levels = nullptr, int64_t ldl = 0);
// dsmooth and dscale are always added into; dx too unless accumulate_dx is false (overwrite).
template <typename T>
void fake_quant_act_backward(const ActQuant<T>& q, const T* dout, int64_t lddout, T* dx, int64_t lddx,
                             T* dsmooth, T* dscale, bool accumulate_dx = true);

// Weights [rows = out, cols = in], symmetric per output row:
//   w' = W · σ[k];  v = w' · (1/s[o]);  r = clamp(round_half_even(v), −qmax, qmax);  out = r · s[o]
// Both quantizers multiply by reciprocals (1/σ, 1/s computed in T), as quantize.h does; the
// reference divides, which can round differently only where v lies within an ulp of a tie.
// Gradients: inside (|round(v)| ≤ qmax): ∂out/∂w' = 1, ∂out/∂s = round(v) − v; clipped: 0 and ±qmax.
// Then ∂w'/∂W = σ[k], ∂w'/∂σ[k] = W[o,k].
template <typename T>
struct WeightQuant {
  int64_t rows = 0, cols = 0;
  const T* w = nullptr;  int64_t ldw = 0;
  const T* smooth = nullptr;  // σ [cols] or null
  const T* scale = nullptr;   // s [rows] (> 0)
  int qmax = 127;
};
template <typename T>
void fake_quant_weight_forward(const WeightQuant<T>& q, T* out, int64_t ldo);
template <typename T>
void fake_quant_weight_backward(const WeightQuant<T>& q, const T* dout, int64_t lddout, T* dw, int64_t lddw,
                                T* dsmooth, T* dscale);
// The integer levels r above (what the quantized model file stores), computed by the same
// arithmetic as the forward, so training and export agree exactly.
void quantize_weight_levels_f32(const WeightQuant<float>& q, int8_t* levels, int64_t ldl);

#define PTQ4VM_TRAIN_QUANT_EXTERN(T)                                                              \
  extern template void fake_quant_act_forward<T>(const ActQuant<T>&, T*, int64_t, uint8_t*, int64_t); \
  extern template void fake_quant_act_backward<T>(const ActQuant<T>&, const T*, int64_t, T*, int64_t, T*, T*, bool); \
  extern template void fake_quant_weight_forward<T>(const WeightQuant<T>&, T*, int64_t);          \
  extern template void fake_quant_weight_backward<T>(const WeightQuant<T>&, const T*, int64_t, T*, int64_t, T*, T*);
PTQ4VM_TRAIN_QUANT_EXTERN(float)
PTQ4VM_TRAIN_QUANT_EXTERN(double)
#undef PTQ4VM_TRAIN_QUANT_EXTERN

// ---- Dense helpers of the tape (threaded over rows) ----

// dst[r, 0:cols] (+)= src[r, 0:cols] for r < rows: column slices and concatenations.
template <typename T>
void copy_cols(int64_t rows, int64_t cols, const T* src, int64_t ldsrc, T* dst, int64_t lddst, bool accumulate);

// mean over rows of 1 − cos(out_r, target_r), each norm clamped below at eps (as
// torch.nn.functional.cosine_similarity); row sums in double, the mean summed in row order.
// stats [3·rows] receives ‖out_r‖, max(‖target_r‖, eps) and cos_r for the backward.
template <typename T>
double cosine_loss(int64_t rows, int64_t cols, const T* out, const T* target, double eps, double* stats);
// dout (+)= g · ∂loss/∂out, from cosine_loss's stats; a norm below eps is a constant.
template <typename T>
void cosine_loss_backward(int64_t rows, int64_t cols, const T* out, const T* target, double eps, const double* stats,
                          double g, T* dout, bool accumulate);

#define PTQ4VM_TRAIN_OPS_EXTERN(T)                                                                    \
  extern template void copy_cols<T>(int64_t, int64_t, const T*, int64_t, T*, int64_t, bool);          \
  extern template double cosine_loss<T>(int64_t, int64_t, const T*, const T*, double, double*);        \
  extern template void cosine_loss_backward<T>(int64_t, int64_t, const T*, const T*, double, const double*, \
                                               double, T*, bool);
PTQ4VM_TRAIN_OPS_EXTERN(float)
PTQ4VM_TRAIN_OPS_EXTERN(double)
#undef PTQ4VM_TRAIN_OPS_EXTERN

// ---- Double GEMM with the gemm_f32 contract (gemm.h), naive: float64 gradient checks only ----
void gemm_f64(bool transA, bool transB, int64_t M, int64_t N, int64_t K, const double* A, int64_t lda,
              const double* B, int64_t ldb, const double* bias, bool accumulate, double* C, int64_t ldc);

}  // namespace ptq4vm
