// Differentiable ops of the LocalVim / VMamba / LocalVMamba JLSS units (lib/autograd/tape.ts drives
// them): forwards and input-gradient backwards of LayerNorm (affine frozen), the per-image token
// mean of LayerNorm (LocalMamba's BiAttn gate), exact-erf GELU, sigmoid, depthwise conv2d (+ SiLU)
// and the token gather/scatter of directional scans (with the per-image channel gate). Templates
// are instantiated for float (what JLSS trains with) and double (gradient checks against finite
// differences).
//
// Conventions, as train.h: dense token-major [rows, cols] operands (images are consecutive blocks
// of rows). Forwards overwrite `out`. Backwards overwrite their input gradient (dx, dy) unless
// `accumulate` is set, in which case they add into it; a gate gradient is always added into.
// Frozen parameters (norm affine, conv weights) get no gradient. Statistics and reductions are
// accumulated in double in a fixed order, so results do not depend on the number of threads.
#pragma once
#include <cstdint>

namespace ptq4vm {

// ---- LayerNorm over the cols of each row: (x − mean)/sqrt(var + eps)·w + b (biased variance) ----

// weight / bias may be null (1 / 0).
template <typename T>
void train_layer_norm(int64_t rows, int64_t cols, const T* x, const T* weight, const T* bias, double eps, T* out);
// dx = r·(g − mean(g) − x̂·mean(g·x̂)) with g = dout·w, x̂ the normalized row, r = 1/sqrt(var + eps).
template <typename T>
void train_layer_norm_backward(int64_t rows, int64_t cols, const T* x, const T* weight, double eps, const T* dout,
                               T* dx, bool accumulate);

// ---- Token mean of LayerNorm: out[b] = mean over the selected rows t of image b of LN(x[b, t]) ----
// x [B·L, C]; select null (every row) or [L] (row t is selected when select[t] ≥ 0, e.g. a scan
// order's scatter index: pads are left out). At least one row must be selected. out [B, C].
template <typename T>
void train_layer_norm_token_mean(int64_t B, int64_t L, int64_t C, const T* x, const int32_t* select,
                                 const T* weight, const T* bias, double eps, T* out);
// dx [B·L, C] from dout [B, C]: the LayerNorm backward of dout/count on every selected row, zero on the others.
template <typename T>
void train_layer_norm_token_mean_backward(int64_t B, int64_t L, int64_t C, const T* x, const int32_t* select,
                                          const T* weight, double eps, const T* dout, T* dx, bool accumulate);

// ---- Elementwise ----

// gelu(x) = x·Φ(x) = x/2·(1 + erf(x/√2)); gelu'(x) = Φ(x) + x·φ(x).
template <typename T>
void train_gelu(int64_t n, const T* x, T* out);
template <typename T>
void train_gelu_backward(int64_t n, const T* x, const T* dout, T* dx, bool accumulate);
// sigmoid; the backward takes the forward's output y: dx = dout·y·(1 − y).
template <typename T>
void train_sigmoid(int64_t n, const T* x, T* out);
template <typename T>
void train_sigmoid_backward(int64_t n, const T* y, const T* dout, T* dx, bool accumulate);

// ---- Depthwise conv2d: odd K, stride 1, zero "same" padding K/2, optional SiLU ----
// x, out [B·H·W, C] (row-major pixels); weight [C, 1, K, K]; bias [C] or null.
template <typename T>
void train_depthwise_conv2d(int64_t B, int64_t H, int64_t W, int64_t C, int64_t K, const T* x, const T* weight,
                            const T* bias, bool apply_silu, T* out);
// dx = the flipped-kernel depthwise conv of dout·silu'(pre) (pre recomputed when apply_silu).
template <typename T>
void train_depthwise_conv2d_backward(int64_t B, int64_t H, int64_t W, int64_t C, int64_t K, const T* x,
                                     const T* weight, const T* bias, bool apply_silu, const T* dout, T* dx,
                                     bool accumulate);

// ---- Token reordering of directional scans (token_permute.h semantics) ----

// out[b·steps + t] = gather[t] ≥ 0 ? x[b·rows + gather[t]] : 0; x [B·rows, C], out [B·steps, C].
template <typename T>
void train_gather_tokens(int64_t B, int64_t rows, int64_t steps, int64_t C, const T* x, const int32_t* gather,
                         T* out);
// dx[b·rows + gather[t]] += dout[b·steps + t] (repeated indices add up in step order); dx is zeroed
// first unless accumulate.
template <typename T>
void train_gather_tokens_backward(int64_t B, int64_t rows, int64_t steps, int64_t C, const int32_t* gather,
                                  const T* dout, T* dx, bool accumulate);
// For scatter[t] ≥ 0 (distinct): out[b·rows + scatter[t]] = (accumulate ? that : 0) + y[b·steps + t]·gate[b]
// (per channel; gate [B, C] or null → 1). Rows no step names keep what `out` holds.
template <typename T>
void train_scatter_tokens(int64_t B, int64_t steps, int64_t rows, int64_t C, const T* y, const int32_t* scatter,
                          const T* gate, bool accumulate, T* out);
// dy[b·steps + t] = dout[b·rows + scatter[t]]·gate[b] (0 for dropped steps), overwritten unless
// accumulate_dy; dgate[b] += Σ_t dout[b·rows + scatter[t]]·y[b·steps + t] (when dgate and gate are given).
// (The gradient of what `out` held before is dout on the rows no step names, and on every row when
// the scatter accumulates: the caller forms it.)
template <typename T>
void train_scatter_tokens_backward(int64_t B, int64_t steps, int64_t rows, int64_t C, const T* y,
                                   const int32_t* scatter, const T* gate, const T* dout, T* dy, bool accumulate_dy,
                                   T* dgate);

#define PTQ4VM_TRAIN_BACKBONE_EXTERN(T)                                                                             \
  extern template void train_layer_norm<T>(int64_t, int64_t, const T*, const T*, const T*, double, T*);              \
  extern template void train_layer_norm_backward<T>(int64_t, int64_t, const T*, const T*, double, const T*, T*, bool); \
  extern template void train_layer_norm_token_mean<T>(int64_t, int64_t, int64_t, const T*, const int32_t*, const T*, \
                                                      const T*, double, T*);                                         \
  extern template void train_layer_norm_token_mean_backward<T>(int64_t, int64_t, int64_t, const T*, const int32_t*,  \
                                                               const T*, double, const T*, T*, bool);                \
  extern template void train_gelu<T>(int64_t, const T*, T*);                                                         \
  extern template void train_gelu_backward<T>(int64_t, const T*, const T*, T*, bool);                                \
  extern template void train_sigmoid<T>(int64_t, const T*, T*);                                                      \
  extern template void train_sigmoid_backward<T>(int64_t, const T*, const T*, T*, bool);                             \
  extern template void train_depthwise_conv2d<T>(int64_t, int64_t, int64_t, int64_t, int64_t, const T*, const T*,    \
                                                 const T*, bool, T*);                                                \
  extern template void train_depthwise_conv2d_backward<T>(int64_t, int64_t, int64_t, int64_t, int64_t, const T*,     \
                                                          const T*, const T*, bool, const T*, T*, bool);             \
  extern template void train_gather_tokens<T>(int64_t, int64_t, int64_t, int64_t, const T*, const int32_t*, T*);     \
  extern template void train_gather_tokens_backward<T>(int64_t, int64_t, int64_t, int64_t, const int32_t*, const T*, \
                                                       T*, bool);                                                    \
  extern template void train_scatter_tokens<T>(int64_t, int64_t, int64_t, int64_t, const T*, const int32_t*,         \
                                               const T*, bool, T*);                                                  \
  extern template void train_scatter_tokens_backward<T>(int64_t, int64_t, int64_t, int64_t, const T*,                \
                                                        const int32_t*, const T*, const T*, T*, bool, T*);
PTQ4VM_TRAIN_BACKBONE_EXTERN(float)
PTQ4VM_TRAIN_BACKBONE_EXTERN(double)
#undef PTQ4VM_TRAIN_BACKBONE_EXTERN

}  // namespace ptq4vm
