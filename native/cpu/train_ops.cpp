// Dense helpers of the JLSS tape (train.h): column copies and the cosine loss, threaded over
// rows. Per-row results do not depend on the thread count; the loss is summed in row order.
#include <algorithm>
#include <cmath>

#include "ptq4vm/runtime.h"
#include "ptq4vm/train.h"

namespace ptq4vm {

namespace {
// Rows per parallel chunk: enough work to amortise a task, small enough to balance.
int64_t row_grain(int64_t cols) { return std::max<int64_t>(16, 32768 / std::max<int64_t>(cols, 1)); }
}  // namespace

template <typename T>
void copy_cols(int64_t rows, int64_t cols, const T* src, int64_t ldsrc, T* dst, int64_t lddst, bool accumulate) {
  if (rows <= 0 || cols <= 0) return;
  parallel_for(rows, row_grain(cols), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const T* s = src + r * ldsrc;
      T* d = dst + r * lddst;
      if (accumulate) {
#pragma omp simd
        for (int64_t j = 0; j < cols; ++j) d[j] += s[j];
      } else {
        std::copy(s, s + cols, d);
      }
    }
  });
}

template <typename T>
double cosine_loss(int64_t rows, int64_t cols, const T* out, const T* target, double eps, double* stats) {
  if (rows <= 0) return 0.0;
  parallel_for(rows, row_grain(cols), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const T* o = out + r * cols;
      const T* t = target + r * cols;
      double dot = 0, oo = 0, tt = 0;
#pragma omp simd reduction(+ : dot, oo, tt)
      for (int64_t j = 0; j < cols; ++j) {
        const double a = double(o[j]), b = double(t[j]);
        dot += a * b;
        oo += a * a;
        tt += b * b;
      }
      const double no = std::sqrt(oo), nt = std::max(std::sqrt(tt), eps);
      stats[3 * r] = no;
      stats[3 * r + 1] = nt;
      stats[3 * r + 2] = dot / (std::max(no, eps) * nt);
    }
  });
  double sum = 0;
  for (int64_t r = 0; r < rows; ++r) sum += 1.0 - stats[3 * r + 2];
  return sum / double(rows);
}

template <typename T>
void cosine_loss_backward(int64_t rows, int64_t cols, const T* out, const T* target, double eps, const double* stats,
                          double g, T* dout, bool accumulate) {
  if (rows <= 0) return;
  const double g0 = g / double(rows);
  parallel_for(rows, row_grain(cols), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const double no = stats[3 * r], nt = stats[3 * r + 1], cos = stats[3 * r + 2];
      // ∂(1 − cos)/∂o = −(t / (‖o‖‖t‖) − cos · o / ‖o‖²); a clamped ‖o‖ is a constant.
      const double a = g0 / (std::max(no, eps) * nt);
      const double b = no < eps ? 0.0 : g0 * cos / (no * no);
      const T* o = out + r * cols;
      const T* t = target + r * cols;
      T* d = dout + r * cols;
#pragma omp simd
      for (int64_t j = 0; j < cols; ++j) {
        const T v = T(double(o[j]) * b - double(t[j]) * a);
        d[j] = accumulate ? d[j] + v : v;
      }
    }
  });
}

#define PTQ4VM_TRAIN_OPS_INSTANTIATE(T)                                                                  \
  template void copy_cols<T>(int64_t, int64_t, const T*, int64_t, T*, int64_t, bool);                    \
  template double cosine_loss<T>(int64_t, int64_t, const T*, const T*, double, double*);                  \
  template void cosine_loss_backward<T>(int64_t, int64_t, const T*, const T*, double, const double*, double, T*, \
                                        bool);
PTQ4VM_TRAIN_OPS_INSTANTIATE(float)
PTQ4VM_TRAIN_OPS_INSTANTIATE(double)

}  // namespace ptq4vm
