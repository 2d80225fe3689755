// Residual add + RMSNorm, fp32 residual, output fp32 / fp16 / per-token quantized u8.
#include <type_traits>

#include "common.cuh"
#include "ptq4vm/cuda/norm.h"

namespace ptq4vm::cuda {
namespace {

struct NormParams {
  long long rows;
  int D;
  const void* x;
  const float* residual_in;
  float* residual_out;
  const float* weight;
  float eps;
  void* out;
  int q_period;
  const float* q_inv_smooth;
  const float* q_inv_scale;
  const int32_t* q_zero;
  int qmax;
};

template <class O>
__device__ __forceinline__ void store_out(const NormParams& p, long long row, int j, float y, float inv_scale,
                                          int zero) {
  if constexpr (std::is_same_v<O, uint8_t>) {
    static_cast<uint8_t*>(p.out)[row * p.D + j] =
        quantize_value(y, p.q_inv_smooth ? p.q_inv_smooth[j] : 1.0f, inv_scale, zero, p.qmax);
  } else {
    store_f32(static_cast<O*>(p.out) + row * p.D + j, y);
  }
}

// One warp per row. CACHED: D <= 32·32 values stay in registers between the two passes;
// otherwise the second pass recomputes x + residual_in (safe when residual_out aliases it:
// each element is read and written by the same lane).
template <class X, class O, bool CACHED>
__global__ void __launch_bounds__(256) add_rmsnorm_kernel(const NormParams p) {
  constexpr int MAXV = 32;
  const long long row = static_cast<long long>(blockIdx.x) * (blockDim.x >> 5) + (threadIdx.x >> 5);
  const int lane = threadIdx.x & 31;
  if (row >= p.rows) return;
  const X* x = static_cast<const X*>(p.x) + row * p.D;
  const float* rin = p.residual_in ? p.residual_in + row * p.D : nullptr;
  float* rout = p.residual_out ? p.residual_out + row * p.D : nullptr;
  float v[CACHED ? MAXV : 1];
  float ss = 0.0f;
  if constexpr (CACHED) {
#pragma unroll
    for (int i = 0; i < MAXV; ++i) {
      const int j = lane + 32 * i;
      v[i] = 0.0f;
      if (j < p.D) {
        float r = to_f32(x[j]);
        if (rin) r += rin[j];
        v[i] = r;
        if (rout) rout[j] = r;
        ss += r * r;
      }
    }
  } else {
    for (int j = lane; j < p.D; j += 32) {
      float r = to_f32(x[j]);
      if (rin) r += rin[j];
      ss += r * r;
    }
  }
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) ss += __shfl_xor_sync(0xffffffffu, ss, o);
  const float inv = 1.0f / sqrtf(ss / static_cast<float>(p.D) + p.eps);
  float inv_scale = 0.0f;
  int zero = 0;
  if constexpr (std::is_same_v<O, uint8_t>) {
    const int q = static_cast<int>(row % p.q_period);
    inv_scale = p.q_inv_scale[q];
    zero = p.q_zero[q];
  }
  if constexpr (CACHED) {
#pragma unroll
    for (int i = 0; i < MAXV; ++i) {
      const int j = lane + 32 * i;
      if (j < p.D) store_out<O>(p, row, j, v[i] * inv * p.weight[j], inv_scale, zero);
    }
  } else {
    for (int j = lane; j < p.D; j += 32) {
      float r = to_f32(x[j]);
      if (rin) r += rin[j];
      if (rout) rout[j] = r;
      store_out<O>(p, row, j, r * inv * p.weight[j], inv_scale, zero);
    }
  }
}

template <class X, class O>
void launch_norm(const NormParams& p, cudaStream_t stream) {
  const unsigned blocks = static_cast<unsigned>(ceil_div(p.rows, 8));
  if (p.D <= 32 * 32)
    add_rmsnorm_kernel<X, O, true><<<blocks, 256, 0, stream>>>(p);
  else
    add_rmsnorm_kernel<X, O, false><<<blocks, 256, 0, stream>>>(p);
  PTQ4VM_CUDA_CHECK_LAUNCH("add_rmsnorm_kernel");
}

template <class X>
void dispatch_out(const NormParams& p, DType out, cudaStream_t stream) {
  switch (out) {
    case DType::F32: return launch_norm<X, float>(p, stream);
    case DType::F16: return launch_norm<X, __half>(p, stream);
    case DType::U8: return launch_norm<X, uint8_t>(p, stream);
  }
}

}  // namespace

void add_rmsnorm(const AddRmsNormArgs& a, cudaStream_t stream) {
  const char* fn = "add_rmsnorm";
  require(a.rows >= 0 && a.D >= 1 && a.D <= (1 << 24), fn, "bad size");
  if (a.rows == 0) return;
  require(a.x && a.weight && a.out, fn, "x, weight and out are required");
  require(a.x_type != DType::U8, fn, "x must be F32 or F16");
  require(ceil_div(a.rows, 8) <= 0x7fffffff, fn, "too many rows");
  NormParams p{};
  p.rows = a.rows;
  p.D = static_cast<int>(a.D);
  p.x = a.x;
  p.residual_in = a.residual_in;
  p.residual_out = a.residual_out;
  p.weight = a.weight;
  p.eps = a.eps;
  p.out = a.out;
  p.q_period = 1;
  if (a.out_type == DType::U8) {
    require(a.quant.period >= 1 && a.quant.inv_scale && a.quant.zero, fn,
            "u8 output needs quant.period >= 1, inv_scale and zero");
    require(a.quant.qmax >= 1 && a.quant.qmax <= 255, fn, "quant.qmax outside [1, 255]");
    p.q_period = static_cast<int>(a.quant.period);
    p.q_inv_smooth = a.quant.inv_smooth;
    p.q_inv_scale = a.quant.inv_scale;
    p.q_zero = a.quant.zero;
    p.qmax = a.quant.qmax;
  }
  if (a.x_type == DType::F32)
    dispatch_out<float>(p, a.out_type, stream);
  else
    dispatch_out<__half>(p, a.out_type, stream);
}

}  // namespace ptq4vm::cuda
