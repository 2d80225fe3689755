#include "ptq4vm/calib_search.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "ptq4vm/runtime.h"

namespace ptq4vm {
namespace {

constexpr float kEps = 1e-8f;

// |e|^p for the error score; std::pow is exact enough and the candidates dominate anyway.
inline double err_pow(float e, float p) { return e == 0.f ? 0.0 : std::pow(static_cast<double>(std::fabs(e)), p); }

}  // namespace

void search_weight_scales(int64_t rows, int64_t n, const float* w, int qmax, int steps, float p,
                          float* scale) {
  parallel_for(rows, 1, [&](int64_t r0, int64_t r1) {
    for (int64_t o = r0; o < r1; ++o) {
      const float* row = w + o * n;
      float r = 0.f;
      for (int64_t j = 0; j < n; ++j) r = std::max(r, std::fabs(row[j]));
      double best = INFINITY;
      float best_s = std::max(r / qmax, kEps);
      for (int i = 1; i <= steps; ++i) {
        const float s = std::max(r * static_cast<float>(i) / static_cast<float>(steps) / static_cast<float>(qmax), kEps);
        const float inv = 1.f / s;
        double err = 0;
        for (int64_t j = 0; j < n; ++j) {
          const float q = std::clamp(std::nearbyint(row[j] * inv), static_cast<float>(-qmax), static_cast<float>(qmax));
          err += err_pow(row[j] - q * s, p);
        }
        if (err < best) {
          best = err;
          best_s = s;
        }
      }
      scale[o] = best_s;
    }
  });
}

void search_activation_params(int64_t groups, int64_t n, const float* values, const float* group_min,
                              const float* group_max, int qmax, int steps, float p, float* scale,
                              int32_t* zero) {
  const float fq = static_cast<float>(qmax);
  parallel_for(groups, 1, [&](int64_t g0, int64_t g1) {
    for (int64_t g = g0; g < g1; ++g) {
      const float* x = values + g * n;
      float lo, hi;
      if (group_min && group_max) {
        lo = group_min[g];
        hi = group_max[g];
      } else {
        lo = INFINITY;
        hi = -INFINITY;
        for (int64_t j = 0; j < n; ++j) {
          lo = std::min(lo, x[j]);
          hi = std::max(hi, x[j]);
        }
        if (n == 0) lo = hi = 0.f;
      }
      const float span = hi - lo;
      double best = INFINITY;
      float best_s = kEps;
      int32_t best_z = 0;
      const int candidates = span > 0.f ? steps : 1;
      for (int i = 0; i < candidates; ++i) {
        const float shrink = span * static_cast<float>(i) / static_cast<float>(steps) / 2.f;
        const float l = std::min(lo + shrink, 0.f);
        const float h = std::max(hi - shrink, 0.f);
        const float s = std::max((h - l) / fq, kEps);
        const float z = std::clamp(-std::nearbyint(l / s), 0.f, fq);
        const float inv = 1.f / s;
        double err = 0;
        for (int64_t j = 0; j < n; ++j) {
          const float q = std::clamp(std::nearbyint(x[j] * inv) + z, 0.f, fq);
          err += err_pow(x[j] - (q - z) * s, p);
        }
        if (err < best) {
          best = err;
          best_s = s;
          best_z = static_cast<int32_t>(z);
        }
      }
      scale[g] = best_s;
      zero[g] = best_z;
    }
  });
}

}  // namespace ptq4vm
