// Type conversion, Vim token assembly and class-token gather.
#include "common.cuh"
#include "ptq4vm/cuda/elementwise.h"

namespace ptq4vm::cuda {
namespace {

unsigned grid_for(long long n) { return static_cast<unsigned>(std::min<long long>(ceil_div(n, 256), 65535)); }

#define PTQ4VM_GRID_STRIDE(i, n)                                                                   \
  for (long long i = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x; i < (n); \
       i += static_cast<long long>(gridDim.x) * blockDim.x)

template <class X, class Y>
__global__ void convert_kernel(long long rows, int cols, const X* x, long long ldx, Y* y, long long ldy) {
  PTQ4VM_GRID_STRIDE(i, rows * cols) {
    const long long r = i / cols;
    const int j = static_cast<int>(i - r * cols);
    store_f32(y + r * ldy + j, to_f32(x[r * ldx + j]));
  }
}

template <class P, class O>
__global__ void assemble_kernel(long long B, int G, int D, const P* patches, const float* cls, int cls_pos,
                                const float* pos, O* out) {
  const int L = cls ? G + 1 : G;
  PTQ4VM_GRID_STRIDE(i, B * L * D) {
    const long long row = i / D;
    const int j = static_cast<int>(i - row * D);
    const long long b = row / L;
    const int t = static_cast<int>(row - b * L);
    float v;
    if (cls && t == cls_pos)
      v = cls[j];
    else
      v = to_f32(patches[(b * G + (cls && t > cls_pos ? t - 1 : t)) * D + j]);
    store_f32(out + i, v + pos[static_cast<long long>(t) * D + j]);
  }
}

template <class T>
__global__ void gather_kernel(long long B, long long L, int D, long long t, const T* src, T* dst) {
  PTQ4VM_GRID_STRIDE(i, B * D) {
    const long long b = i / D;
    const int j = static_cast<int>(i - b * D);
    dst[i] = src[(b * L + t) * D + j];
  }
}

template <class X>
void convert_from(long long rows, int cols, const X* x, long long ldx, DType yt, void* y, long long ldy,
                  cudaStream_t s) {
  const unsigned g = grid_for(rows * cols);
  if (yt == DType::F32)
    convert_kernel<X, float><<<g, 256, 0, s>>>(rows, cols, x, ldx, static_cast<float*>(y), ldy);
  else
    convert_kernel<X, __half><<<g, 256, 0, s>>>(rows, cols, x, ldx, static_cast<__half*>(y), ldy);
  PTQ4VM_CUDA_CHECK_LAUNCH("convert_kernel");
}

template <class P>
void assemble_from(long long B, int G, int D, const P* patches, const float* cls, int cls_pos, const float* pos,
                   DType ot, void* out, cudaStream_t s) {
  const long long L = cls ? G + 1 : G;
  const unsigned g = grid_for(B * L * D);
  if (ot == DType::F32)
    assemble_kernel<P, float><<<g, 256, 0, s>>>(B, G, D, patches, cls, cls_pos, pos, static_cast<float*>(out));
  else
    assemble_kernel<P, __half><<<g, 256, 0, s>>>(B, G, D, patches, cls, cls_pos, pos, static_cast<__half*>(out));
  PTQ4VM_CUDA_CHECK_LAUNCH("assemble_kernel");
}

}  // namespace

void convert(int64_t rows, int64_t cols, DType x_type, const void* x, int64_t ldx, DType y_type, void* y,
             int64_t ldy, cudaStream_t stream) {
  const char* fn = "convert";
  require(rows >= 0 && cols >= 0 && cols <= (1 << 30), fn, "bad size");
  if (rows == 0 || cols == 0) return;
  require(x && y, fn, "x or y is null");
  require(x_type != DType::U8 && y_type != DType::U8, fn, "types must be F32 or F16");
  require(ldx >= cols && ldy >= cols, fn, "ldx or ldy < cols");
  if (x_type == DType::F32)
    convert_from(rows, static_cast<int>(cols), static_cast<const float*>(x), ldx, y_type, y, ldy, stream);
  else
    convert_from(rows, static_cast<int>(cols), static_cast<const __half*>(x), ldx, y_type, y, ldy, stream);
}

void assemble_tokens(int64_t B, int64_t G, int64_t D, DType patch_type, const void* patches, const float* cls,
                     int64_t cls_pos, const float* pos, DType out_type, void* out, cudaStream_t stream) {
  const char* fn = "assemble_tokens";
  require(B >= 0 && G >= 1 && D >= 1 && G <= (1 << 24) && D <= (1 << 24), fn, "bad size");
  require(!cls || (cls_pos >= 0 && cls_pos <= G), fn, "cls_pos outside [0, G]");
  if (B == 0) return;
  require(patches && pos && out, fn, "patches, pos and out are required");
  require(patch_type != DType::U8 && out_type != DType::U8, fn, "types must be F32 or F16");
  if (patch_type == DType::F32)
    assemble_from(B, static_cast<int>(G), static_cast<int>(D), static_cast<const float*>(patches), cls,
                  static_cast<int>(cls_pos), pos, out_type, out, stream);
  else
    assemble_from(B, static_cast<int>(G), static_cast<int>(D), static_cast<const __half*>(patches), cls,
                  static_cast<int>(cls_pos), pos, out_type, out, stream);
}

void gather_token(int64_t B, int64_t L, int64_t D, int64_t t, DType type, const void* src, void* dst,
                  cudaStream_t stream) {
  const char* fn = "gather_token";
  require(B >= 0 && L >= 1 && D >= 1 && D <= (1 << 24), fn, "bad size");
  require(t >= 0 && t < L, fn, "token index outside [0, L)");
  if (B == 0) return;
  require(src && dst, fn, "src or dst is null");
  const unsigned g = grid_for(B * D);
  switch (type) {
    case DType::F32:
      gather_kernel<float><<<g, 256, 0, stream>>>(B, L, static_cast<int>(D), t, static_cast<const float*>(src),
                                                  static_cast<float*>(dst));
      break;
    case DType::F16:
      gather_kernel<__half><<<g, 256, 0, stream>>>(B, L, static_cast<int>(D), t, static_cast<const __half*>(src),
                                                   static_cast<__half*>(dst));
      break;
    case DType::U8:
      gather_kernel<uint8_t><<<g, 256, 0, stream>>>(B, L, static_cast<int>(D), t, static_cast<const uint8_t*>(src),
                                                    static_cast<uint8_t*>(dst));
      break;
  }
  PTQ4VM_CUDA_CHECK_LAUNCH("gather_kernel");
}

}  // namespace ptq4vm::cuda
