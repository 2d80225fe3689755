// Causal depthwise conv1d (+ SiLU) along tokens: the single-direction contract of conv1d.h and
// the fused two-direction version of a Vim block with per-token quantization for x_proj.
#include <type_traits>

#include "common.cuh"
#include "ptq4vm/cuda/conv1d.h"

namespace ptq4vm::cuda {
namespace {

constexpr int kMaxK = 8;    // largest kernel width
constexpr int kTokens = 8;  // tokens per thread: the window of x is loaded once for all of them

struct ConvDir {
  bool enabled;
  bool reverse;    // window x[t .. t+K-1] instead of x[t-K+1 .. t]
  bool flip_rows;  // output row b·L + (L−1−t) instead of b·L + t
  const float* w;
  const float* bias;
  uint8_t* u8;
  long long ld_u8;
  int q_period;
  const float* q_inv_smooth;
  const float* q_inv_scale;
  const int32_t* q_zero;
  int qmax;
  void* out;
  bool out_f16;
  long long ld_out;
};
struct ConvParams {
  int B, L, E, K;
  const void* x;
  long long ldx;
  bool silu;
  ConvDir dir[2];
};

// Thread = (channel e, tokens t0..t0+7, image b). win[i] holds x[t0 − (kMaxK−1) + i].
template <class X>
__global__ void __launch_bounds__(128) conv1d_kernel(const ConvParams p) {
  constexpr int WIN = kTokens + 2 * (kMaxK - 1);
  const int e = blockIdx.x * blockDim.x + threadIdx.x;
  if (e >= p.E) return;
  const int t0 = blockIdx.y * kTokens;
  const long long b = blockIdx.z;
  const int K = p.K, L = p.L;
  const X* x = static_cast<const X*>(p.x);
  float win[WIN];
#pragma unroll
  for (int i = 0; i < WIN; ++i) {
    const int t = t0 - (kMaxK - 1) + i;
    const bool needed = i >= kMaxK - K && i < kMaxK - 1 + kTokens + K - 1;
    win[i] = (needed && t >= 0 && t < L) ? to_f32(x[(b * L + t) * p.ldx + e]) : 0.0f;
  }
#pragma unroll
  for (int di = 0; di < 2; ++di) {
    const ConvDir& d = p.dir[di];
    if (!d.enabled) continue;
    // wr[k] = weight[e, K−1−k]: tap k of the window, indexed by compile-time k (registers).
    float wr[kMaxK];
#pragma unroll
    for (int k = 0; k < kMaxK; ++k) wr[k] = k < K ? d.w[static_cast<long long>(e) * K + (K - 1 - k)] : 0.0f;
    const float bias = d.bias ? d.bias[e] : 0.0f;
    const float inv_smooth = (d.u8 && d.q_inv_smooth) ? d.q_inv_smooth[e] : 1.0f;
#pragma unroll
    for (int j = 0; j < kTokens; ++j) {
      const int t = t0 + j;
      if (t >= L) break;
      float acc = bias;
#pragma unroll
      for (int k = 0; k < kMaxK; ++k) {
        // out[t] = bias + Σ_k w[K−1−k] · x[t ∓ k]
        if (k < K) acc += wr[k] * (d.reverse ? win[(kMaxK - 1) + j + k] : win[(kMaxK - 1) + j - k]);
      }
      if (p.silu) acc = silu(acc);
      const long long row = b * L + (d.flip_rows ? L - 1 - t : t);
      if (d.u8) {
        const int q = static_cast<int>(row % d.q_period);
        d.u8[row * d.ld_u8 + e] = quantize_value(acc, inv_smooth, d.q_inv_scale[q], d.q_zero[q], d.qmax);
      }
      if (d.out) {
        if (d.out_f16)
          static_cast<__half*>(d.out)[row * d.ld_out + e] = __float2half_rn(acc);
        else
          static_cast<float*>(d.out)[row * d.ld_out + e] = acc;
      }
    }
  }
}

void launch(const ConvParams& p, DType x_type, cudaStream_t stream) {
  const dim3 grid(static_cast<unsigned>(ceil_div(p.E, 128)), static_cast<unsigned>(ceil_div(p.L, kTokens)),
                  static_cast<unsigned>(p.B));
  if (x_type == DType::F32)
    conv1d_kernel<float><<<grid, 128, 0, stream>>>(p);
  else
    conv1d_kernel<__half><<<grid, 128, 0, stream>>>(p);
  PTQ4VM_CUDA_CHECK_LAUNCH("conv1d_kernel");
}

void check_common(const char* fn, int64_t B, int64_t L, int64_t E, int64_t K, DType x_type, const void* x,
                  int64_t ldx) {
  require(B >= 0 && L >= 0 && E >= 0, fn, "negative size");
  require(K >= 1 && K <= kMaxK, fn, "kernel width K outside [1, 8]");
  require(B <= 65535 && ceil_div(L, kTokens) <= 65535 && E <= (1 << 24), fn, "size too large");
  require(x_type != DType::U8, fn, "x must be F32 or F16");
  require(B == 0 || L == 0 || E == 0 || x, fn, "x is null");
  require(ldx >= E, fn, "ldx < E");
}

ConvDir make_dir(const char* fn, const BiConvDirection& d, int64_t E, bool reverse, bool flip) {
  ConvDir c{};
  if (d.weight == nullptr && !d.u8 && !d.out) return c;  // a skipped direction (enabled = false)
  require(d.weight != nullptr, fn, "weight is null");
  require(d.u8 || d.out, fn, "a direction writes nothing (u8 and out are null)");
  c.enabled = true;
  c.reverse = reverse;
  c.flip_rows = flip;
  c.w = d.weight;
  c.bias = d.bias;
  if (d.u8) {
    require(d.ld_u8 >= E, fn, "ld_u8 < E");
    require(d.quant.period >= 1 && d.quant.inv_scale && d.quant.zero, fn,
            "u8 output needs quant.period >= 1, inv_scale and zero");
    require(d.quant.qmax >= 1 && d.quant.qmax <= 255, fn, "quant.qmax outside [1, 255]");
    c.u8 = d.u8;
    c.ld_u8 = d.ld_u8;
    c.q_period = static_cast<int>(d.quant.period);
    c.q_inv_smooth = d.quant.inv_smooth;
    c.q_inv_scale = d.quant.inv_scale;
    c.q_zero = d.quant.zero;
    c.qmax = d.quant.qmax;
  } else {
    c.q_period = 1;
  }
  if (d.out) {
    require(d.out_type != DType::U8, fn, "out_type must be F32 or F16 (u8 goes to the u8 output)");
    require(d.ld_out >= E, fn, "ld_out < E");
    c.out = d.out;
    c.out_f16 = d.out_type == DType::F16;
    c.ld_out = d.ld_out;
  }
  return c;
}

}  // namespace

void causal_conv1d(int64_t B, int64_t L, int64_t E, int64_t K, DType x_type, const void* x, int64_t ldx,
                   const float* weight, const float* bias, bool reverse, bool apply_silu, DType out_type,
                   void* out, int64_t ldo, cudaStream_t stream) {
  const char* fn = "causal_conv1d";
  check_common(fn, B, L, E, K, x_type, x, ldx);
  if (B == 0 || L == 0 || E == 0) return;
  BiConvDirection d;
  d.weight = weight;
  d.bias = bias;
  d.out = out;
  d.out_type = out_type;
  d.ld_out = ldo;
  require(out != nullptr, fn, "out is null");
  ConvParams p{};
  p.B = static_cast<int>(B);
  p.L = static_cast<int>(L);
  p.E = static_cast<int>(E);
  p.K = static_cast<int>(K);
  p.x = x;
  p.ldx = ldx;
  p.silu = apply_silu;
  p.dir[0] = make_dir(fn, d, E, reverse, false);
  p.dir[1].enabled = false;
  launch(p, x_type, stream);
}

void bidirectional_conv1d_silu(const BiConvArgs& a, cudaStream_t stream) {
  const char* fn = "bidirectional_conv1d_silu";
  check_common(fn, a.B, a.L, a.E, a.K, a.x_type, a.x, a.ldx);
  if (a.B == 0 || a.L == 0 || a.E == 0) return;
  ConvParams p{};
  p.B = static_cast<int>(a.B);
  p.L = static_cast<int>(a.L);
  p.E = static_cast<int>(a.E);
  p.K = static_cast<int>(a.K);
  p.x = a.x;
  p.ldx = a.ldx;
  p.silu = true;
  p.dir[0] = make_dir(fn, a.fwd, a.E, false, false);
  p.dir[1] = make_dir(fn, a.bwd, a.E, true, true);
  require(p.dir[0].enabled || p.dir[1].enabled, fn, "both directions are skipped");
  launch(p, a.x_type, stream);
}

}  // namespace ptq4vm::cuda
