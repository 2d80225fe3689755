// conv2d_f32: im2col of a block of output pixels (columns in the weight's (c, ky, kx) order)
// followed by gemm_f32 against the weight as [Cout, Cin·K·K]; blocks bound the scratch memory.
// depthwise_conv2d_f32: weight transposed once to [K·K, C], output rows split across threads,
// per-ISA row loop (backbone_rows.h). Scalar references with double accumulation.
#include "ptq4vm/conv2d.h"

#include <algorithm>
#include <cmath>

#include "backbone_vec.h"
#include "ptq4vm/gemm.h"
#include "ptq4vm/runtime.h"
#include "scratch.h"
#include "vector_kernels.h"

namespace ptq4vm {
namespace {

// Scratch budget of one im2col block, in floats (16 MiB).
constexpr int64_t kColumnBlockFloats = int64_t(1) << 22;

inline float read_input(const float* x, bool channels_first, int64_t Cin, int64_t H, int64_t W,
                        int64_t b, int64_t c, int64_t y, int64_t xx) {
  if (y < 0 || y >= H || xx < 0 || xx >= W) return 0.0f;
  return channels_first ? x[((b * Cin + c) * H + y) * W + xx] : x[((b * H + y) * W + xx) * Cin + c];
}

}  // namespace

void conv2d_f32(int64_t B, int64_t Cin, int64_t H, int64_t W, bool channels_first, const float* x,
                int64_t Cout, int64_t K, int64_t S, int64_t P, const float* weight, const float* bias,
                float* out) {
  if (B <= 0 || Cout <= 0 || H + 2 * P < K || W + 2 * P < K) return;
  const int64_t Ho = (H + 2 * P - K) / S + 1, Wo = (W + 2 * P - K) / S + 1;
  const int64_t pixels = B * Ho * Wo, cols = Cin * K * K;
  const int64_t block = std::max<int64_t>(1, std::min(pixels, kColumnBlockFloats / std::max<int64_t>(cols, 1)));
  float* columns = cpu::thread_scratch_as<float>(cpu::ScratchSlot::PatchColumns, size_t(block * cols));
  for (int64_t p0 = 0; p0 < pixels; p0 += block) {
    const int64_t n = std::min(block, pixels - p0);
    parallel_for(n, 16, [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i) {
        const int64_t p = p0 + i, b = p / (Ho * Wo), oy = (p / Wo) % Ho, ox = p % Wo;
        float* dst = columns + i * cols;
        const int64_t y0 = oy * S - P, x0 = ox * S - P;
        for (int64_t c = 0; c < Cin; ++c)
          for (int64_t ky = 0; ky < K; ++ky)
            for (int64_t kx = 0; kx < K; ++kx)
              *dst++ = read_input(x, channels_first, Cin, H, W, b, c, y0 + ky, x0 + kx);
      }
    });
    gemm_f32(false, true, n, Cout, cols, columns, cols, weight, cols, bias, false, out + p0 * Cout, Cout);
  }
}

void conv2d_f32_ref(int64_t B, int64_t Cin, int64_t H, int64_t W, bool channels_first,
                    const float* x, int64_t Cout, int64_t K, int64_t S, int64_t P,
                    const float* weight, const float* bias, float* out) {
  if (H + 2 * P < K || W + 2 * P < K) return;
  const int64_t Ho = (H + 2 * P - K) / S + 1, Wo = (W + 2 * P - K) / S + 1;
  for (int64_t b = 0; b < B; ++b)
    for (int64_t oy = 0; oy < Ho; ++oy)
      for (int64_t ox = 0; ox < Wo; ++ox)
        for (int64_t o = 0; o < Cout; ++o) {
          double acc = bias ? bias[o] : 0.0;
          for (int64_t c = 0; c < Cin; ++c)
            for (int64_t ky = 0; ky < K; ++ky)
              for (int64_t kx = 0; kx < K; ++kx)
                acc += double(weight[((o * Cin + c) * K + ky) * K + kx]) *
                       read_input(x, channels_first, Cin, H, W, b, c, oy * S - P + ky, ox * S - P + kx);
          out[((b * Ho + oy) * Wo + ox) * Cout + o] = float(acc);
        }
}

void depthwise_conv2d_f32(int64_t B, int64_t H, int64_t W, int64_t C, const float* x, int64_t ldx,
                          int64_t K, const float* weight, const float* bias, bool apply_silu,
                          float* out, int64_t ldo) {
  if (B <= 0 || H <= 0 || W <= 0 || C <= 0) return;
  float* wt = cpu::thread_scratch_as<float>(cpu::ScratchSlot::KernelLocal, size_t(K * K * C));
  for (int64_t c = 0; c < C; ++c)
    for (int64_t k = 0; k < K * K; ++k) wt[k * C + c] = weight[c * K * K + k];
  const auto fn = cpu::pick_isa(int(active_isa()), cpu::scalar::depthwise_conv_rows,
                                cpu::avx2::depthwise_conv_rows, cpu::avx512::depthwise_conv_rows);
  const int64_t grain = std::max<int64_t>(1, 4096 / std::max<int64_t>(W * C / 16, 1));
  parallel_for(B * H, grain, [&](int64_t i0, int64_t i1) {
    // A chunk may span images: split it at image boundaries.
    for (int64_t i = i0; i < i1;) {
      const int64_t b = i / H, y0 = i % H, y1 = std::min(H, y0 + (i1 - i));
      fn(b, y0, y1, H, W, C, x, ldx, K, wt, bias, apply_silu, out, ldo);
      i += y1 - y0;
    }
  });
}

void depthwise_conv2d_f32_ref(int64_t B, int64_t H, int64_t W, int64_t C, const float* x,
                              int64_t ldx, int64_t K, const float* weight, const float* bias,
                              bool apply_silu, float* out, int64_t ldo) {
  const int64_t pad = K / 2;
  for (int64_t b = 0; b < B; ++b)
    for (int64_t oy = 0; oy < H; ++oy)
      for (int64_t ox = 0; ox < W; ++ox)
        for (int64_t c = 0; c < C; ++c) {
          double acc = bias ? bias[c] : 0.0;
          for (int64_t ky = 0; ky < K; ++ky)
            for (int64_t kx = 0; kx < K; ++kx) {
              const int64_t y = oy + ky - pad, xx = ox + kx - pad;
              if (y < 0 || y >= H || xx < 0 || xx >= W) continue;
              acc += double(weight[(c * K + ky) * K + kx]) * x[((b * H + y) * W + xx) * ldx + c];
            }
          if (apply_silu) acc = acc / (1.0 + std::exp(-acc));
          out[((b * H + oy) * W + ox) * ldo + c] = float(acc);
        }
}

}  // namespace ptq4vm
