// Per-token activation quantization / dequantization (quantize.h formula), elementwise.
#include "common.cuh"
#include "ptq4vm/cuda/quantize.h"

namespace ptq4vm::cuda {
namespace {

template <class X>
__global__ void quantize_kernel(long long rows, int cols, const X* x, long long ldx, QuantParams q, uint8_t* out,
                                long long ldq) {
  const long long n = rows * cols;
  for (long long i = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<long long>(gridDim.x) * blockDim.x) {
    const long long r = i / cols;
    const int j = static_cast<int>(i - r * cols);
    const int p = static_cast<int>(r % q.period);
    out[r * ldq + j] = quantize_value(to_f32(x[r * ldx + j]), q.inv_smooth ? q.inv_smooth[j] : 1.0f,
                                      q.inv_scale[p], q.zero[p], q.qmax);
  }
}

template <class Y>
__global__ void dequantize_kernel(long long rows, int cols, const uint8_t* q, long long ldq, DequantParams d, Y* y,
                                  long long ldy) {
  const long long n = rows * cols;
  for (long long i = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<long long>(gridDim.x) * blockDim.x) {
    const long long r = i / cols;
    const int j = static_cast<int>(i - r * cols);
    const int p = static_cast<int>(r % d.period);
    store_f32(y + r * ldy + j, dequantize_value(q[r * ldq + j], d.zero[p], d.scale[p], d.smooth ? d.smooth[j] : 1.0f));
  }
}

unsigned grid_for(long long n) { return static_cast<unsigned>(std::min<long long>(ceil_div(n, 256), 65535)); }

}  // namespace

void quantize_u8(int64_t rows, int64_t cols, DType x_type, const void* x, int64_t ldx, const QuantParams& quant,
                 uint8_t* q, int64_t ldq, cudaStream_t stream) {
  const char* fn = "quantize_u8";
  require(rows >= 0 && cols >= 0 && cols <= (1 << 30), fn, "bad size");
  if (rows == 0 || cols == 0) return;
  require(x && q, fn, "x or q is null");
  require(x_type != DType::U8, fn, "x must be F32 or F16");
  require(ldx >= cols && ldq >= cols, fn, "ldx or ldq < cols");
  require(quant.period >= 1 && quant.inv_scale && quant.zero, fn, "quant needs period >= 1, inv_scale and zero");
  require(quant.qmax >= 1 && quant.qmax <= 255, fn, "quant.qmax outside [1, 255]");
  const long long n = rows * cols;
  if (x_type == DType::F32)
    quantize_kernel<float><<<grid_for(n), 256, 0, stream>>>(rows, static_cast<int>(cols), static_cast<const float*>(x),
                                                              ldx, quant, q, ldq);
  else
    quantize_kernel<__half><<<grid_for(n), 256, 0, stream>>>(rows, static_cast<int>(cols),
                                                               static_cast<const __half*>(x), ldx, quant, q, ldq);
  PTQ4VM_CUDA_CHECK_LAUNCH("quantize_kernel");
}

void dequantize_u8(int64_t rows, int64_t cols, const uint8_t* q, int64_t ldq, const DequantParams& dq, DType y_type,
                   void* y, int64_t ldy, cudaStream_t stream) {
  const char* fn = "dequantize_u8";
  require(rows >= 0 && cols >= 0 && cols <= (1 << 30), fn, "bad size");
  if (rows == 0 || cols == 0) return;
  require(q && y, fn, "q or y is null");
  require(y_type != DType::U8, fn, "y must be F32 or F16");
  require(ldq >= cols && ldy >= cols, fn, "ldq or ldy < cols");
  require(dq.period >= 1 && dq.scale && dq.zero, fn, "dequant needs period >= 1, scale and zero");
  const long long n = rows * cols;
  if (y_type == DType::F32)
    dequantize_kernel<float><<<grid_for(n), 256, 0, stream>>>(rows, static_cast<int>(cols), q, ldq, dq,
                                                                static_cast<float*>(y), ldy);
  else
    dequantize_kernel<__half><<<grid_for(n), 256, 0, stream>>>(rows, static_cast<int>(cols), q, ldq, dq,
                                                                 static_cast<__half*>(y), ldy);
  PTQ4VM_CUDA_CHECK_LAUNCH("dequantize_kernel");
}

}  // namespace ptq4vm::cuda
