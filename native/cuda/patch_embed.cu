// Patch embedding: fp32 direct convolution, and im2col + FP16 tensor-core GEMM.
#include "common.cuh"
#include "ptq4vm/cuda/patch_embed.h"

namespace ptq4vm::cuda {
namespace {

struct PatchGeom {
  int C, H, W, P, S, Gh, Gw;
};

// One thread per output (b, g, d): Σ over c, i, j of img · weight (+ bias).
__global__ void patch_embed_f32_kernel(long long B, PatchGeom g, const float* img, const float* w, const float* bias,
                                       int D, float* out) {
  const int G = g.Gh * g.Gw, KK = g.C * g.P * g.P;
  const long long n = B * G * D;
  for (long long i = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<long long>(gridDim.x) * blockDim.x) {
    const int d = static_cast<int>(i % D);
    const long long bg = i / D;
    const int gi = static_cast<int>(bg % G);
    const long long b = bg / G;
    const int gy = gi / g.Gw, gx = gi % g.Gw;
    float acc = bias ? bias[d] : 0.0f;
    const float* wr = w + static_cast<long long>(d) * KK;
    for (int c = 0; c < g.C; ++c)
      for (int y = 0; y < g.P; ++y) {
        const float* src = img + ((b * g.C + c) * g.H + (gy * g.S + y)) * g.W + gx * g.S;
        const float* wp = wr + (c * g.P + y) * g.P;
        for (int x = 0; x < g.P; ++x) acc += src[x] * wp[x];
      }
    out[i] = acc;
  }
}

template <class T>
__global__ void im2col_kernel(long long B, PatchGeom g, const float* img, T* cols, long long ldc) {
  const int G = g.Gh * g.Gw, KK = g.C * g.P * g.P;
  const long long n = B * G * KK;
  for (long long i = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<long long>(gridDim.x) * blockDim.x) {
    const int k = static_cast<int>(i % KK);
    const long long bg = i / KK;
    const int gi = static_cast<int>(bg % G);
    const long long b = bg / G;
    const int c = k / (g.P * g.P), yx = k % (g.P * g.P), y = yx / g.P, x = yx % g.P;
    const int gy = gi / g.Gw, gx = gi % g.Gw;
    store_f32(cols + bg * ldc + k, img[((b * g.C + c) * g.H + (gy * g.S + y)) * g.W + gx * g.S + x]);
  }
}

PatchGeom geometry(const char* fn, int64_t B, int64_t C, int64_t H, int64_t W, int64_t P, int64_t S) {
  require(B >= 0 && C >= 1 && P >= 1 && S >= 1 && H >= P && W >= P, fn, "bad image or patch geometry");
  require(C * P * P <= (1 << 24) && H <= (1 << 16) && W <= (1 << 16), fn, "size too large");
  PatchGeom g{static_cast<int>(C), static_cast<int>(H), static_cast<int>(W), static_cast<int>(P),
              static_cast<int>(S), static_cast<int>((H - P) / S + 1), static_cast<int>((W - P) / S + 1)};
  return g;
}

unsigned grid_for(long long n) { return static_cast<unsigned>(std::min<long long>(ceil_div(n, 256), 65535)); }

}  // namespace

void patch_embed_f32(int64_t B, int64_t C, int64_t H, int64_t W, int64_t P, int64_t S, const float* img,
                     const float* weight, const float* bias, int64_t D, float* out, cudaStream_t stream) {
  const char* fn = "patch_embed_f32";
  const PatchGeom g = geometry(fn, B, C, H, W, P, S);
  require(D >= 1 && D <= (1 << 24), fn, "bad D");
  if (B == 0) return;
  require(img && weight && out, fn, "img, weight and out are required");
  patch_embed_f32_kernel<<<grid_for(B * g.Gh * g.Gw * D), 256, 0, stream>>>(B, g, img, weight, bias,
                                                                           static_cast<int>(D), out);
  PTQ4VM_CUDA_CHECK_LAUNCH("patch_embed_f32_kernel");
}

void im2col_patches(int64_t B, int64_t C, int64_t H, int64_t W, int64_t P, int64_t S, const float* img,
                    DType cols_type, void* cols, int64_t ldc, cudaStream_t stream) {
  const char* fn = "im2col_patches";
  const PatchGeom g = geometry(fn, B, C, H, W, P, S);
  require(ldc >= C * P * P, fn, "ldc < C·P·P");
  require(cols_type != DType::U8, fn, "cols must be F32 or F16");
  if (B == 0) return;
  require(img && cols, fn, "img and cols are required");
  const long long n = B * g.Gh * g.Gw * C * P * P;
  if (cols_type == DType::F16)
    im2col_kernel<__half><<<grid_for(n), 256, 0, stream>>>(B, g, img, static_cast<__half*>(cols), ldc);
  else
    im2col_kernel<float><<<grid_for(n), 256, 0, stream>>>(B, g, img, static_cast<float*>(cols), ldc);
  PTQ4VM_CUDA_CHECK_LAUNCH("im2col_kernel");
}

size_t patch_embed_f16_workspace_bytes(int64_t B, int64_t C, int64_t H, int64_t W, int64_t P, int64_t S) {
  const PatchGeom g = geometry("patch_embed_f16_workspace_bytes", B, C, H, W, P, S);
  // Row stride rounded up to 8 halves (16 bytes) so the tensor-core GEMM can read it.
  return static_cast<size_t>(B) * g.Gh * g.Gw * static_cast<size_t>(round_up(C * P * P, 8)) * sizeof(__half);
}

void patch_embed_f16(int64_t B, int64_t C, int64_t H, int64_t W, int64_t P, int64_t S, const float* img,
                     const F16Weights& weight, const float* bias, void* workspace, const F16GemmOut& out,
                     cudaStream_t stream) {
  const char* fn = "patch_embed_f16";
  const PatchGeom g = geometry(fn, B, C, H, W, P, S);
  require(weight.K == C * P * P, fn, "weights are not [D, C·P·P]");
  if (B == 0) return;
  require(workspace && aligned(workspace, 16), fn, "workspace missing or not 16-byte aligned");
  const int64_t ld = round_up(C * P * P, 8);
  im2col_patches(B, C, H, W, P, S, img, DType::F16, workspace, ld, stream);
  gemm_f16(B * g.Gh * g.Gw, static_cast<const __half*>(workspace), ld, weight, bias, out, stream);
}

}  // namespace ptq4vm::cuda
