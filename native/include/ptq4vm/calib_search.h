// Truncation search of quantization ranges (PTQ4VM's step-size initialisation), native because
// it scores 100 candidate ranges against every value of every token and weight row.
#pragma once
#include <cstdint>

namespace ptq4vm {

// Per weight row o (n values): r = max|w|; candidates s_i = max(r·i/steps / qmax, 1e-8),
// i = 1..steps; error_i = Σ |w − clamp(rne(w/s_i), ±qmax)·s_i|^p; scale[o] = the s_i with the
// smallest error (the first one on ties).
void search_weight_scales(int64_t rows, int64_t n, const float* w, int qmax, int steps, float p,
                          float* scale);

// Per group g (n values, e.g. one token position across images and channels):
// [lo, hi] = [group_min[g], group_max[g]] when given (the values may be a subsample), else the
// values' own range. Candidate i = 0..steps−1 keeps the centred fraction 1 − i/steps of [lo, hi];
// it is widened to include 0; scale = max((hi' − lo')/qmax, 1e-8), zero = clamp(−rne(lo'/scale), 0, qmax);
// error = Σ |x − (clamp(rne(x/scale) + zero, 0, qmax) − zero)·scale|^p. The best candidate's
// scale and zero are written.
void search_activation_params(int64_t groups, int64_t n, const float* values, const float* group_min,
                              const float* group_max, int qmax, int steps, float p, float* scale,
                              int32_t* zero);

}  // namespace ptq4vm
