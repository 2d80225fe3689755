// Differentiable ops of the LocalVim / VMamba / LocalVMamba JLSS units (train_backbone.h): float
// and double instantiations of one template each, threaded over rows (or images, or channel
// blocks where a reduction crosses rows). Statistics and sums run in double in a fixed order, so
// a result does not depend on the thread count. These run on calibration-sized tensors once per
// JLSS step, next to GEMMs and scans that cost far more, so they are plain loops the compiler
// vectorizes rather than per-ISA kernels.
#include <algorithm>
#include <cmath>
#include <vector>

#include "ptq4vm/runtime.h"
#include "ptq4vm/train_backbone.h"

namespace ptq4vm {

namespace {

// Rows per parallel chunk: enough work to amortise a task, small enough to balance.
int64_t row_grain(int64_t cols) { return std::max<int64_t>(1, 16384 / std::max<int64_t>(cols, 1)); }
// Elements per parallel chunk of the elementwise ops.
constexpr int64_t kElemGrain = 16384;
// Channels per task of the reductions over rows.
constexpr int64_t kChannelBlock = 64;

constexpr double kInvSqrt2 = 0.70710678118654752440;
constexpr double kInvSqrt2Pi = 0.39894228040143267794;

template <typename T>
inline T store(double v, const T* base, bool accumulate) {
  return accumulate ? T(double(*base) + v) : T(v);
}

// mean and 1/sqrt(var + eps) of one row (two passes, biased variance).
template <typename T>
void row_stats(const T* x, int64_t cols, double eps, double& mean, double& rstd) {
  double s = 0;
  for (int64_t j = 0; j < cols; ++j) s += double(x[j]);
  mean = s / double(cols);
  double v = 0;
  for (int64_t j = 0; j < cols; ++j) {
    const double d = double(x[j]) - mean;
    v += d * d;
  }
  rstd = 1.0 / std::sqrt(v / double(cols) + eps);
}

// dx (+)= the LayerNorm input gradient of one row for upstream gradient dout·factor.
template <typename T>
void layer_norm_row_backward(const T* x, const T* weight, int64_t cols, double eps, const T* dout, double factor, T* dx,
                             bool accumulate) {
  double mean, rstd;
  row_stats(x, cols, eps, mean, rstd);
  double mg = 0, mgx = 0;
  for (int64_t j = 0; j < cols; ++j) {
    const double g = double(dout[j]) * factor * (weight ? double(weight[j]) : 1.0);
    mg += g;
    mgx += g * (double(x[j]) - mean) * rstd;
  }
  mg /= double(cols);
  mgx /= double(cols);
  for (int64_t j = 0; j < cols; ++j) {
    const double g = double(dout[j]) * factor * (weight ? double(weight[j]) : 1.0);
    const double xhat = (double(x[j]) - mean) * rstd;
    dx[j] = store(rstd * (g - mg - xhat * mgx), dx + j, accumulate);
  }
}

inline bool selected(const int32_t* select, int64_t t) { return !select || select[t] >= 0; }

double sigmoid_of(double v) { return 1.0 / (1.0 + std::exp(-v)); }

// Pre-activation of the depthwise conv at pixel (r, c) of image b, all channels, into acc [C].
template <typename T>
void depthwise_pixel(int64_t b, int64_t r, int64_t c, int64_t H, int64_t W, int64_t C, int64_t K, const T* x,
                     const T* weight, const T* bias, double* acc) {
  const int64_t p = K / 2;
  for (int64_t ch = 0; ch < C; ++ch) acc[ch] = bias ? double(bias[ch]) : 0.0;
  for (int64_t i = 0; i < K; ++i) {
    const int64_t rr = r + i - p;
    if (rr < 0 || rr >= H) continue;
    for (int64_t j = 0; j < K; ++j) {
      const int64_t cc = c + j - p;
      if (cc < 0 || cc >= W) continue;
      const T* src = x + ((b * H + rr) * W + cc) * C;
      const int64_t tap = i * K + j;
      for (int64_t ch = 0; ch < C; ++ch) acc[ch] += double(weight[ch * K * K + tap]) * double(src[ch]);
    }
  }
}

}  // namespace

// ---- LayerNorm ----

template <typename T>
void train_layer_norm(int64_t rows, int64_t cols, const T* x, const T* weight, const T* bias, double eps, T* out) {
  if (rows <= 0 || cols <= 0) return;
  parallel_for(rows, row_grain(cols), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const T* xr = x + r * cols;
      T* o = out + r * cols;
      double mean, rstd;
      row_stats(xr, cols, eps, mean, rstd);
      for (int64_t j = 0; j < cols; ++j) {
        const double v = (double(xr[j]) - mean) * rstd;
        o[j] = T(v * (weight ? double(weight[j]) : 1.0) + (bias ? double(bias[j]) : 0.0));
      }
    }
  });
}

template <typename T>
void train_layer_norm_backward(int64_t rows, int64_t cols, const T* x, const T* weight, double eps, const T* dout,
                               T* dx, bool accumulate) {
  if (rows <= 0 || cols <= 0) return;
  parallel_for(rows, row_grain(cols), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r)
      layer_norm_row_backward(x + r * cols, weight, cols, eps, dout + r * cols, 1.0, dx + r * cols, accumulate);
  });
}

// ---- Token mean of LayerNorm ----

template <typename T>
void train_layer_norm_token_mean(int64_t B, int64_t L, int64_t C, const T* x, const int32_t* select, const T* weight,
                                 const T* bias, double eps, T* out) {
  if (B <= 0 || L <= 0 || C <= 0) return;
  int64_t count = 0;
  for (int64_t t = 0; t < L; ++t) count += selected(select, t) ? 1 : 0;
  // Row statistics first (parallel over rows), then each channel's sum over the rows of an
  // image in row order (parallel over images × channel blocks).
  std::vector<double> stats(size_t(2 * B * L));
  parallel_for(B * L, row_grain(C), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      if (selected(select, r % L)) row_stats(x + r * C, C, eps, stats[size_t(2 * r)], stats[size_t(2 * r + 1)]);
    }
  });
  const int64_t blocks = (C + kChannelBlock - 1) / kChannelBlock;
  parallel_for(B * blocks, 1, [&](int64_t i0, int64_t i1) {
    std::vector<double> acc(static_cast<size_t>(kChannelBlock));
    for (int64_t i = i0; i < i1; ++i) {
      const int64_t b = i / blocks, c0 = (i % blocks) * kChannelBlock, c1 = std::min(C, c0 + kChannelBlock);
      std::fill(acc.begin(), acc.end(), 0.0);
      for (int64_t t = 0; t < L; ++t) {
        if (!selected(select, t)) continue;
        const int64_t r = b * L + t;
        const double mean = stats[size_t(2 * r)], rstd = stats[size_t(2 * r + 1)];
        const T* xr = x + r * C;
        for (int64_t c = c0; c < c1; ++c) acc[size_t(c - c0)] += (double(xr[c]) - mean) * rstd;
      }
      for (int64_t c = c0; c < c1; ++c) {
        const double m = count > 0 ? acc[size_t(c - c0)] / double(count) : 0.0;
        out[b * C + c] = T(m * (weight ? double(weight[c]) : 1.0) + (bias ? double(bias[c]) : 0.0));
      }
    }
  });
}

template <typename T>
void train_layer_norm_token_mean_backward(int64_t B, int64_t L, int64_t C, const T* x, const int32_t* select,
                                          const T* weight, double eps, const T* dout, T* dx, bool accumulate) {
  if (B <= 0 || L <= 0 || C <= 0) return;
  int64_t count = 0;
  for (int64_t t = 0; t < L; ++t) count += selected(select, t) ? 1 : 0;
  const double factor = count > 0 ? 1.0 / double(count) : 0.0;
  parallel_for(B * L, row_grain(C), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      T* d = dx + r * C;
      if (selected(select, r % L)) {
        layer_norm_row_backward(x + r * C, weight, C, eps, dout + (r / L) * C, factor, d, accumulate);
      } else if (!accumulate) {
        std::fill(d, d + C, T(0));
      }
    }
  });
}

// ---- Elementwise ----

template <typename T>
void train_gelu(int64_t n, const T* x, T* out) {
  if (n <= 0) return;
  parallel_for(n, kElemGrain, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      const double v = double(x[i]);
      out[i] = T(0.5 * v * (1.0 + std::erf(v * kInvSqrt2)));
    }
  });
}

template <typename T>
void train_gelu_backward(int64_t n, const T* x, const T* dout, T* dx, bool accumulate) {
  if (n <= 0) return;
  parallel_for(n, kElemGrain, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      const double v = double(x[i]);
      const double d = 0.5 * (1.0 + std::erf(v * kInvSqrt2)) + v * kInvSqrt2Pi * std::exp(-0.5 * v * v);
      dx[i] = store(double(dout[i]) * d, dx + i, accumulate);
    }
  });
}

template <typename T>
void train_sigmoid(int64_t n, const T* x, T* out) {
  if (n <= 0) return;
  parallel_for(n, kElemGrain, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) out[i] = T(sigmoid_of(double(x[i])));
  });
}

template <typename T>
void train_sigmoid_backward(int64_t n, const T* y, const T* dout, T* dx, bool accumulate) {
  if (n <= 0) return;
  parallel_for(n, kElemGrain, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      const double s = double(y[i]);
      dx[i] = store(double(dout[i]) * s * (1.0 - s), dx + i, accumulate);
    }
  });
}

// ---- Depthwise conv2d ----

template <typename T>
void train_depthwise_conv2d(int64_t B, int64_t H, int64_t W, int64_t C, int64_t K, const T* x, const T* weight,
                            const T* bias, bool apply_silu, T* out) {
  if (B <= 0 || H <= 0 || W <= 0 || C <= 0) return;
  parallel_for(B * H, 1, [&](int64_t i0, int64_t i1) {
    std::vector<double> acc(static_cast<size_t>(C));
    for (int64_t i = i0; i < i1; ++i) {
      const int64_t b = i / H, r = i % H;
      for (int64_t c = 0; c < W; ++c) {
        depthwise_pixel(b, r, c, H, W, C, K, x, weight, bias, acc.data());
        T* o = out + ((b * H + r) * W + c) * C;
        for (int64_t ch = 0; ch < C; ++ch) {
          const double v = acc[size_t(ch)];
          o[ch] = T(apply_silu ? v * sigmoid_of(v) : v);
        }
      }
    }
  });
}

template <typename T>
void train_depthwise_conv2d_backward(int64_t B, int64_t H, int64_t W, int64_t C, int64_t K, const T* x,
                                     const T* weight, const T* bias, bool apply_silu, const T* dout, T* dx,
                                     bool accumulate) {
  if (B <= 0 || H <= 0 || W <= 0 || C <= 0) return;
  // Gradient of the pre-activation, then the transposed (flipped-kernel) depthwise conv of it.
  std::vector<double> dpre(size_t(B * H * W * C));
  parallel_for(B * H, 1, [&](int64_t i0, int64_t i1) {
    std::vector<double> acc(static_cast<size_t>(C));
    for (int64_t i = i0; i < i1; ++i) {
      const int64_t b = i / H, r = i % H;
      for (int64_t c = 0; c < W; ++c) {
        const int64_t o = ((b * H + r) * W + c) * C;
        if (apply_silu) depthwise_pixel(b, r, c, H, W, C, K, x, weight, bias, acc.data());
        for (int64_t ch = 0; ch < C; ++ch) {
          double g = double(dout[o + ch]);
          if (apply_silu) {
            const double v = acc[size_t(ch)], s = sigmoid_of(v);
            g *= s * (1.0 + v * (1.0 - s));
          }
          dpre[size_t(o + ch)] = g;
        }
      }
    }
  });
  const int64_t p = K / 2;
  parallel_for(B * H, 1, [&](int64_t i0, int64_t i1) {
    std::vector<double> acc(static_cast<size_t>(C));
    for (int64_t i = i0; i < i1; ++i) {
      const int64_t b = i / H, r = i % H;
      for (int64_t c = 0; c < W; ++c) {
        std::fill(acc.begin(), acc.end(), 0.0);
        // Output (r − i + p, c − j + p) read this pixel through tap (i, j).
        for (int64_t ki = 0; ki < K; ++ki) {
          const int64_t ro = r - ki + p;
          if (ro < 0 || ro >= H) continue;
          for (int64_t kj = 0; kj < K; ++kj) {
            const int64_t co = c - kj + p;
            if (co < 0 || co >= W) continue;
            const double* g = dpre.data() + ((b * H + ro) * W + co) * C;
            const int64_t tap = ki * K + kj;
            for (int64_t ch = 0; ch < C; ++ch) acc[size_t(ch)] += double(weight[ch * K * K + tap]) * g[ch];
          }
        }
        T* d = dx + ((b * H + r) * W + c) * C;
        for (int64_t ch = 0; ch < C; ++ch) d[ch] = store(acc[size_t(ch)], d + ch, accumulate);
      }
    }
  });
}

// ---- Token reordering ----

template <typename T>
void train_gather_tokens(int64_t B, int64_t rows, int64_t steps, int64_t C, const T* x, const int32_t* gather,
                         T* out) {
  if (B <= 0 || steps <= 0 || C <= 0) return;
  parallel_for(B * steps, row_grain(C), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t b = r / steps, src = gather[r % steps];
      T* o = out + r * C;
      if (src < 0) std::fill(o, o + C, T(0));
      else std::copy(x + (b * rows + src) * C, x + (b * rows + src + 1) * C, o);
    }
  });
}

template <typename T>
void train_gather_tokens_backward(int64_t B, int64_t rows, int64_t steps, int64_t C, const int32_t* gather,
                                  const T* dout, T* dx, bool accumulate) {
  if (B <= 0 || C <= 0) return;
  // One image per task: a source row read by several steps gets their gradients in step order.
  parallel_for(B, 1, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      if (!accumulate) std::fill(dx + b * rows * C, dx + (b + 1) * rows * C, T(0));
      for (int64_t t = 0; t < steps; ++t) {
        const int64_t src = gather[t];
        if (src < 0) continue;
        const T* g = dout + (b * steps + t) * C;
        T* d = dx + (b * rows + src) * C;
        for (int64_t c = 0; c < C; ++c) d[c] += g[c];
      }
    }
  });
}

template <typename T>
void train_scatter_tokens(int64_t B, int64_t steps, int64_t rows, int64_t C, const T* y, const int32_t* scatter,
                          const T* gate, bool accumulate, T* out) {
  if (B <= 0 || steps <= 0 || C <= 0) return;
  parallel_for(B * steps, row_grain(C), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t b = r / steps, dst = scatter[r % steps];
      if (dst < 0) continue;
      const T* src = y + r * C;
      const T* g = gate ? gate + b * C : nullptr;
      T* o = out + (b * rows + dst) * C;
      for (int64_t c = 0; c < C; ++c) {
        const T v = g ? T(src[c] * g[c]) : src[c];
        o[c] = accumulate ? T(o[c] + v) : v;
      }
    }
  });
}

template <typename T>
void train_scatter_tokens_backward(int64_t B, int64_t steps, int64_t rows, int64_t C, const T* y,
                                   const int32_t* scatter, const T* gate, const T* dout, T* dy, bool accumulate_dy,
                                   T* dgate) {
  if (B <= 0 || steps <= 0 || C <= 0) return;
  if (dy) {
    parallel_for(B * steps, row_grain(C), [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        const int64_t b = r / steps, dst = scatter[r % steps];
        T* d = dy + r * C;
        if (dst < 0) {
          if (!accumulate_dy) std::fill(d, d + C, T(0));
          continue;
        }
        const T* g = dout + (b * rows + dst) * C;
        const T* gt = gate ? gate + b * C : nullptr;
        for (int64_t c = 0; c < C; ++c) {
          const T v = gt ? T(g[c] * gt[c]) : g[c];
          d[c] = accumulate_dy ? T(d[c] + v) : v;
        }
      }
    });
  }
  if (dgate && gate) {
    const int64_t blocks = (C + kChannelBlock - 1) / kChannelBlock;
    parallel_for(B * blocks, 1, [&](int64_t i0, int64_t i1) {
      std::vector<double> acc(static_cast<size_t>(kChannelBlock));
      for (int64_t i = i0; i < i1; ++i) {
        const int64_t b = i / blocks, c0 = (i % blocks) * kChannelBlock, c1 = std::min(C, c0 + kChannelBlock);
        std::fill(acc.begin(), acc.end(), 0.0);
        for (int64_t t = 0; t < steps; ++t) {
          const int64_t dst = scatter[t];
          if (dst < 0) continue;
          const T* g = dout + (b * rows + dst) * C;
          const T* yr = y + (b * steps + t) * C;
          for (int64_t c = c0; c < c1; ++c) acc[size_t(c - c0)] += double(g[c]) * double(yr[c]);
        }
        for (int64_t c = c0; c < c1; ++c) dgate[b * C + c] = T(double(dgate[b * C + c]) + acc[size_t(c - c0)]);
      }
    });
  }
}

#define PTQ4VM_TRAIN_BACKBONE_INSTANTIATE(T)                                                                         \
  template void train_layer_norm<T>(int64_t, int64_t, const T*, const T*, const T*, double, T*);                      \
  template void train_layer_norm_backward<T>(int64_t, int64_t, const T*, const T*, double, const T*, T*, bool);       \
  template void train_layer_norm_token_mean<T>(int64_t, int64_t, int64_t, const T*, const int32_t*, const T*,         \
                                               const T*, double, T*);                                                \
  template void train_layer_norm_token_mean_backward<T>(int64_t, int64_t, int64_t, const T*, const int32_t*,         \
                                                        const T*, double, const T*, T*, bool);                       \
  template void train_gelu<T>(int64_t, const T*, T*);                                                                 \
  template void train_gelu_backward<T>(int64_t, const T*, const T*, T*, bool);                                        \
  template void train_sigmoid<T>(int64_t, const T*, T*);                                                              \
  template void train_sigmoid_backward<T>(int64_t, const T*, const T*, T*, bool);                                     \
  template void train_depthwise_conv2d<T>(int64_t, int64_t, int64_t, int64_t, int64_t, const T*, const T*, const T*,  \
                                          bool, T*);                                                                 \
  template void train_depthwise_conv2d_backward<T>(int64_t, int64_t, int64_t, int64_t, int64_t, const T*, const T*,   \
                                                   const T*, bool, const T*, T*, bool);                              \
  template void train_gather_tokens<T>(int64_t, int64_t, int64_t, int64_t, const T*, const int32_t*, T*);             \
  template void train_gather_tokens_backward<T>(int64_t, int64_t, int64_t, int64_t, const int32_t*, const T*, T*,     \
                                                bool);                                                               \
  template void train_scatter_tokens<T>(int64_t, int64_t, int64_t, int64_t, const T*, const int32_t*, const T*, bool, \
                                        T*);                                                                         \
  template void train_scatter_tokens_backward<T>(int64_t, int64_t, int64_t, int64_t, const T*, const int32_t*,        \
                                                 const T*, const T*, T*, bool, T*);
PTQ4VM_TRAIN_BACKBONE_INSTANTIATE(float)
PTQ4VM_TRAIN_BACKBONE_INSTANTIATE(double)

}  // namespace ptq4vm
