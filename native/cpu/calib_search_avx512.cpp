// AVX-512 scoring loops of the truncation search (calib_search.cpp dispatches here when the
// active ISA allows): |e|^p = 2^(p·log2|e|) with vgetexp/vgetmant for log2 and vscalef for 2^k.
#include <immintrin.h>

#include <cstdint>

namespace ptq4vm::calib_avx512 {
namespace {

inline __m512 log2_ps(__m512 x) {  // x > 0; zero gives −inf, which pow() below maps to 0
  const __m512 e = _mm512_getexp_ps(x);                                   // floor(log2 x)
  const __m512 m = _mm512_getmant_ps(x, _MM_MANT_NORM_1_2, _MM_MANT_SIGN_zero);  // [1, 2)
  const __m512 one = _mm512_set1_ps(1.f);
  const __m512 y = _mm512_div_ps(_mm512_sub_ps(m, one), _mm512_add_ps(m, one));
  const __m512 y2 = _mm512_mul_ps(y, y);
  __m512 poly = _mm512_set1_ps(1.f / 9);
  poly = _mm512_fmadd_ps(poly, y2, _mm512_set1_ps(1.f / 7));
  poly = _mm512_fmadd_ps(poly, y2, _mm512_set1_ps(1.f / 5));
  poly = _mm512_fmadd_ps(poly, y2, _mm512_set1_ps(1.f / 3));
  poly = _mm512_fmadd_ps(poly, y2, one);
  const __m512 ln_m = _mm512_mul_ps(_mm512_mul_ps(_mm512_set1_ps(2.f), y), poly);
  return _mm512_fmadd_ps(ln_m, _mm512_set1_ps(1.44269504f), e);
}

inline __m512 exp2_ps(__m512 z) {
  z = _mm512_max_ps(z, _mm512_set1_ps(-150.f));  // −inf (from |e| = 0) → 2^−150 = 0
  const __m512 k = _mm512_roundscale_ps(z, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
  const __m512 f = _mm512_mul_ps(_mm512_sub_ps(z, k), _mm512_set1_ps(0.693147181f));
  __m512 poly = _mm512_set1_ps(1.f / 720);
  poly = _mm512_fmadd_ps(poly, f, _mm512_set1_ps(1.f / 120));
  poly = _mm512_fmadd_ps(poly, f, _mm512_set1_ps(1.f / 24));
  poly = _mm512_fmadd_ps(poly, f, _mm512_set1_ps(1.f / 6));
  poly = _mm512_fmadd_ps(poly, f, _mm512_set1_ps(0.5f));
  poly = _mm512_fmadd_ps(poly, f, _mm512_set1_ps(1.f));
  poly = _mm512_fmadd_ps(poly, f, _mm512_set1_ps(1.f));
  return _mm512_scalef_ps(poly, k);
}

inline __m512 pow_abs(__m512 e, __m512 p) {
  return exp2_ps(_mm512_mul_ps(p, log2_ps(_mm512_abs_ps(e))));
}

inline __m512 round_even(__m512 x) { return _mm512_roundscale_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }

}  // namespace

double weight_error(const float* row, int64_t n, float s, float lim, float p) {
  const __m512 vs = _mm512_set1_ps(s), vinv = _mm512_set1_ps(1.f / s);
  const __m512 hi = _mm512_set1_ps(lim), lo = _mm512_set1_ps(-lim), vp = _mm512_set1_ps(p);
  __m512 acc = _mm512_setzero_ps();
  for (int64_t j = 0; j < n; j += 16) {
    const __mmask16 m = n - j >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << (n - j)) - 1u);
    const __m512 x = _mm512_maskz_loadu_ps(m, row + j);
    const __m512 q = _mm512_min_ps(_mm512_max_ps(round_even(_mm512_mul_ps(x, vinv)), lo), hi);
    const __m512 err = pow_abs(_mm512_fnmadd_ps(q, vs, x), vp);
    acc = _mm512_mask_add_ps(acc, m, acc, err);
  }
  return _mm512_reduce_add_ps(acc);
}

double activation_error(const float* x, int64_t n, float s, float z, float qmax, float p) {
  const __m512 vs = _mm512_set1_ps(s), vinv = _mm512_set1_ps(1.f / s), vz = _mm512_set1_ps(z);
  const __m512 hi = _mm512_set1_ps(qmax), zero = _mm512_setzero_ps(), vp = _mm512_set1_ps(p);
  __m512 acc = _mm512_setzero_ps();
  for (int64_t j = 0; j < n; j += 16) {
    const __mmask16 m = n - j >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << (n - j)) - 1u);
    const __m512 v = _mm512_maskz_loadu_ps(m, x + j);
    const __m512 q = _mm512_min_ps(_mm512_max_ps(_mm512_add_ps(round_even(_mm512_mul_ps(v, vinv)), vz), zero), hi);
    const __m512 err = pow_abs(_mm512_fnmadd_ps(_mm512_sub_ps(q, vz), vs, v), vp);
    acc = _mm512_mask_add_ps(acc, m, acc, err);
  }
  return _mm512_reduce_add_ps(acc);
}

}  // namespace ptq4vm::calib_avx512
