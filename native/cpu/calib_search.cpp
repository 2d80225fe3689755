#include "ptq4vm/calib_search.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "ptq4vm/runtime.h"

namespace ptq4vm {
namespace calib_avx512 {
double weight_error(const float* row, int64_t n, float s, float lim, float p);
double activation_error(const float* x, int64_t n, float s, float z, float qmax, float p);
}  // namespace calib_avx512
namespace {

constexpr float kEps = 1e-8f;

// The search scores 100 candidates against every value, so |e|^p must be cheap: exp2(p·log2|e|)
// with short polynomials (relative error ~1e-5, plenty to rank candidates), written without
// branches or libm calls so the compiler vectorises the loops.
inline float bits_to_float(uint32_t b) {
  float f;
  std::memcpy(&f, &b, sizeof f);
  return f;
}
inline uint32_t float_to_bits(float f) {
  uint32_t b;
  std::memcpy(&b, &f, sizeof b);
  return b;
}

inline float fast_log2(float x) {  // x ≥ 0; 0 and denormals map to about −127
  const uint32_t bits = float_to_bits(x);
  const float exponent = static_cast<float>(static_cast<int32_t>((bits >> 23) & 0xFF) - 127);
  const float m = bits_to_float((bits & 0x007FFFFFu) | 0x3F800000u);  // [1, 2)
  const float y = (m - 1.f) / (m + 1.f);
  const float y2 = y * y;
  const float ln_m = 2.f * y * (1.f + y2 * (1.f / 3 + y2 * (1.f / 5 + y2 * (1.f / 7 + y2 * (1.f / 9)))));
  return exponent + ln_m * 1.44269504f;
}

inline float fast_exp2(float z) {
  z = std::min(std::max(z, -126.f), 126.f);
  const float t = static_cast<float>(static_cast<int32_t>(z));
  const float k = t - (z < t ? 1.f : 0.f);  // floor
  const float f = (z - k) * 0.693147181f;
  const float poly = 1.f + f * (1.f + f * (0.5f + f * (1.f / 6 + f * (1.f / 24 + f * (1.f / 120 + f * (1.f / 720))))));
  return poly * bits_to_float(static_cast<uint32_t>(static_cast<int32_t>(k) + 127) << 23);
}

inline float err_pow(float e, float p) { return fast_exp2(p * fast_log2(std::fabs(e))); }

// Round half to even without libm (which would stop vectorisation): adding and subtracting 1.5·2^23
// rounds in the default mode; values beyond ±2^22 come out wrong but are clamped to ≤ 255 anyway.
inline float round_even(float x) {
  constexpr float kMagic = 12582912.f;
  return (x + kMagic) - kMagic;
}

// Portable scoring loops; the AVX-512 ones (calib_search_avx512.cpp) replace them at run time.
double weight_error_portable(const float* row, int64_t n, float s, float lim, float p) {
  const float inv = 1.f / s;
  double acc = 0;
  for (int64_t j = 0; j < n; ++j) {
    const float q = std::min(std::max(round_even(row[j] * inv), -lim), lim);
    acc += err_pow(row[j] - q * s, p);
  }
  return acc;
}

double activation_error_portable(const float* x, int64_t n, float s, float z, float qmax, float p) {
  const float inv = 1.f / s;
  double acc = 0;
  for (int64_t j = 0; j < n; ++j) {
    const float q = std::min(std::max(round_even(x[j] * inv) + z, 0.f), qmax);
    acc += err_pow(x[j] - (q - z) * s, p);
  }
  return acc;
}

using WeightErrorFn = double (*)(const float*, int64_t, float, float, float);
using ActivationErrorFn = double (*)(const float*, int64_t, float, float, float, float);

WeightErrorFn weight_error_fn() {
  return active_isa() >= Isa::Avx512 ? &calib_avx512::weight_error : &weight_error_portable;
}
ActivationErrorFn activation_error_fn() {
  return active_isa() >= Isa::Avx512 ? &calib_avx512::activation_error : &activation_error_portable;
}

}  // namespace

void search_weight_scales(int64_t rows, int64_t n, const float* w, int qmax, int steps, float p,
                          float* scale) {
  const WeightErrorFn weight_error = weight_error_fn();
  parallel_for(rows, 1, [&](int64_t r0, int64_t r1) {
    for (int64_t o = r0; o < r1; ++o) {
      const float* row = w + o * n;
      float r = 0.f;
      for (int64_t j = 0; j < n; ++j) r = std::max(r, std::fabs(row[j]));
      double best = INFINITY;
      float best_s = std::max(r / qmax, kEps);
      for (int i = 1; i <= steps; ++i) {
        const float s = std::max(r * static_cast<float>(i) / static_cast<float>(steps) / static_cast<float>(qmax), kEps);
        const double err = weight_error(row, n, s, static_cast<float>(qmax), p);
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
  const ActivationErrorFn activation_error = activation_error_fn();
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
        const double err = activation_error(x, n, s, z, fq, p);
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
