// One float-vector type per translation unit, chosen by the ISA flags the file is compiled with
// (CMake gives *_avx512.cpp / *_avx2.cpp their flags; other files get the portable width-1
// type). Kernel bodies written once against `VecF` therefore compile to AVX-512, AVX2 or scalar
// code. Everything here has internal linkage so the differently-compiled copies never merge.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>

#if defined(__AVX512F__) || defined(__AVX2__)
#include <immintrin.h>
#endif
#if defined(__AVX512F__) && defined(__GNUC__) && !defined(__clang__)
// GCC 12 reports its own _mm512_undefined_ps() placeholders inside the AVX-512 intrinsic
// wrappers as "maybe uninitialized" once they are inlined (a false positive).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif

namespace ptq4vm::cpu {
namespace {

// Constants of the exp/log approximations (see exp_f32 / log1p_f32 below).
constexpr float kLog2e = 1.44269504088896341f;
constexpr float kLn2Hi = 0.693145751953125f;        // high bits of ln 2, exact product with k
constexpr float kLn2Lo = 1.42860682030941723e-6f;   // ln 2 − kLn2Hi
constexpr float kExpMaxArg = 88.7228f;               // exp(x) overflows float above this
constexpr float kExpMinArg = -87.3365f;              // below this exp(x) is under FLT_MIN

#if defined(__AVX512F__)

struct VecF {
  static constexpr int kWidth = 16;
  __m512 v;
  VecF() = default;
  VecF(__m512 x) : v(x) {}
  static VecF zero() { return _mm512_setzero_ps(); }
  static VecF set1(float x) { return _mm512_set1_ps(x); }
  static VecF load(const float* p) { return _mm512_loadu_ps(p); }
  // First n (< kWidth) lanes from p, the rest 0; never touches memory past p[n-1].
  static VecF load_partial(const float* p, int n) { return _mm512_maskz_loadu_ps(mask(n), p); }
  void store(float* p) const { _mm512_storeu_ps(p, v); }
  void store_partial(float* p, int n) const { _mm512_mask_storeu_ps(p, mask(n), v); }
  static __mmask16 mask(int n) { return __mmask16((1u << n) - 1u); }
  float reduce_add() const { return _mm512_reduce_add_ps(v); }
};
inline VecF operator+(VecF a, VecF b) { return _mm512_add_ps(a.v, b.v); }
inline VecF operator-(VecF a, VecF b) { return _mm512_sub_ps(a.v, b.v); }
inline VecF operator*(VecF a, VecF b) { return _mm512_mul_ps(a.v, b.v); }
inline VecF operator/(VecF a, VecF b) { return _mm512_div_ps(a.v, b.v); }
inline VecF fma(VecF a, VecF b, VecF c) { return _mm512_fmadd_ps(a.v, b.v, c.v); }
inline VecF fnma(VecF a, VecF b, VecF c) { return _mm512_fnmadd_ps(a.v, b.v, c.v); }  // c − a·b
inline VecF max(VecF a, VecF b) { return _mm512_max_ps(a.v, b.v); }
inline VecF min(VecF a, VecF b) { return _mm512_min_ps(a.v, b.v); }
inline VecF abs(VecF a) { return _mm512_abs_ps(a.v); }
inline VecF round_even(VecF a) { return _mm512_roundscale_ps(a.v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
// a · 2^k for integral k (vscalefps handles overflow to inf and gradual underflow).
inline VecF scale_pow2(VecF a, VecF k) { return _mm512_scalef_ps(a.v, k.v); }
// (a > b) ? x : y
inline VecF select_gt(VecF a, VecF b, VecF x, VecF y) {
  return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(a.v, b.v, _CMP_GT_OQ), y.v, x.v);
}
inline VecF sqrt(VecF a) { return _mm512_sqrt_ps(a.v); }
// Whether a ≤ b in every lane (false where either is NaN).
inline bool all_le(VecF a, VecF b) { return _mm512_cmp_ps_mask(a.v, b.v, _CMP_LE_OQ) == 0xFFFF; }
// Splits w > 0 into mantissa m in [1, 2) and exponent e (as float): w = m · 2^e.
inline void frexp_1_2(VecF w, VecF* m, VecF* e) {
  *m = _mm512_getmant_ps(w.v, _MM_MANT_NORM_1_2, _MM_MANT_SIGN_zero);
  *e = _mm512_getexp_ps(w.v);
}

#elif defined(__AVX2__)

struct VecF {
  static constexpr int kWidth = 8;
  __m256 v;
  VecF() = default;
  VecF(__m256 x) : v(x) {}
  static VecF zero() { return _mm256_setzero_ps(); }
  static VecF set1(float x) { return _mm256_set1_ps(x); }
  static VecF load(const float* p) { return _mm256_loadu_ps(p); }
  static VecF load_partial(const float* p, int n) { return _mm256_maskload_ps(p, mask(n)); }
  void store(float* p) const { _mm256_storeu_ps(p, v); }
  void store_partial(float* p, int n) const { _mm256_maskstore_ps(p, mask(n), v); }
  static __m256i mask(int n) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  }
  float reduce_add() const {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
  }
};
inline VecF operator+(VecF a, VecF b) { return _mm256_add_ps(a.v, b.v); }
inline VecF operator-(VecF a, VecF b) { return _mm256_sub_ps(a.v, b.v); }
inline VecF operator*(VecF a, VecF b) { return _mm256_mul_ps(a.v, b.v); }
inline VecF operator/(VecF a, VecF b) { return _mm256_div_ps(a.v, b.v); }
inline VecF fma(VecF a, VecF b, VecF c) { return _mm256_fmadd_ps(a.v, b.v, c.v); }
inline VecF fnma(VecF a, VecF b, VecF c) { return _mm256_fnmadd_ps(a.v, b.v, c.v); }
inline VecF max(VecF a, VecF b) { return _mm256_max_ps(a.v, b.v); }
inline VecF min(VecF a, VecF b) { return _mm256_min_ps(a.v, b.v); }
inline VecF abs(VecF a) { return _mm256_andnot_ps(_mm256_set1_ps(-0.0f), a.v); }
inline VecF round_even(VecF a) { return _mm256_round_ps(a.v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
// Valid for a finite and k in [−252, 254]: two exact power-of-two factors keep each in range.
inline VecF scale_pow2(VecF a, VecF k) {
  __m256i ki = _mm256_cvtps_epi32(k.v);
  __m256i k1 = _mm256_srai_epi32(ki, 1);
  __m256i k2 = _mm256_sub_epi32(ki, k1);
  __m256 p1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(k1, _mm256_set1_epi32(127)), 23));
  __m256 p2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(k2, _mm256_set1_epi32(127)), 23));
  return _mm256_mul_ps(_mm256_mul_ps(a.v, p1), p2);
}
inline VecF select_gt(VecF a, VecF b, VecF x, VecF y) {
  return _mm256_blendv_ps(y.v, x.v, _mm256_cmp_ps(a.v, b.v, _CMP_GT_OQ));
}
inline VecF sqrt(VecF a) { return _mm256_sqrt_ps(a.v); }
inline bool all_le(VecF a, VecF b) { return _mm256_movemask_ps(_mm256_cmp_ps(a.v, b.v, _CMP_LE_OQ)) == 0xFF; }
inline void frexp_1_2(VecF w, VecF* m, VecF* e) {
  // Normal positive w only (callers pass w >= 1).
  __m256i bits = _mm256_castps_si256(w.v);
  __m256i expo = _mm256_sub_epi32(_mm256_srli_epi32(bits, 23), _mm256_set1_epi32(127));
  *e = _mm256_cvtepi32_ps(expo);
  *m = _mm256_castsi256_ps(_mm256_or_si256(_mm256_and_si256(bits, _mm256_set1_epi32(0x007FFFFF)),
                                           _mm256_set1_epi32(0x3F800000)));
}

#else

struct VecF {
  static constexpr int kWidth = 1;
  float v;
  VecF() = default;
  VecF(float x) : v(x) {}
  static VecF zero() { return 0.0f; }
  static VecF set1(float x) { return x; }
  static VecF load(const float* p) { return *p; }
  static VecF load_partial(const float* p, int n) { return n > 0 ? *p : 0.0f; }
  void store(float* p) const { *p = v; }
  void store_partial(float* p, int n) const {
    if (n > 0) *p = v;
  }
  float reduce_add() const { return v; }
};
inline VecF operator+(VecF a, VecF b) { return a.v + b.v; }
inline VecF operator-(VecF a, VecF b) { return a.v - b.v; }
inline VecF operator*(VecF a, VecF b) { return a.v * b.v; }
inline VecF operator/(VecF a, VecF b) { return a.v / b.v; }
inline VecF fma(VecF a, VecF b, VecF c) { return std::fma(a.v, b.v, c.v); }
inline VecF fnma(VecF a, VecF b, VecF c) { return std::fma(-a.v, b.v, c.v); }
inline VecF max(VecF a, VecF b) { return a.v > b.v ? a.v : b.v; }
inline VecF min(VecF a, VecF b) { return a.v < b.v ? a.v : b.v; }
inline VecF abs(VecF a) { return std::fabs(a.v); }
inline VecF round_even(VecF a) { return std::nearbyint(a.v); }
inline VecF scale_pow2(VecF a, VecF k) { return std::ldexp(a.v, int(k.v)); }
inline VecF select_gt(VecF a, VecF b, VecF x, VecF y) { return a.v > b.v ? x : y; }
inline VecF sqrt(VecF a) { return std::sqrt(a.v); }
inline bool all_le(VecF a, VecF b) { return a.v <= b.v; }
inline void frexp_1_2(VecF w, VecF* m, VecF* e) {
  int ex;
  float f = std::frexp(w.v, &ex);  // f in [0.5, 1)
  *m = 2.0f * f;
  *e = float(ex - 1);
}

#endif

#if defined(__AVX512F__)
// The AVX-512 exponentials share one scheme that keeps most of the work off the multiply
// pipes (on Zen 4 vreduceps and vscalefps cost as much as two multiply-adds, and the scan's
// recurrence is bound by those pipes): x (in base 2) is rounded to k, a multiple of 1/16, by
// adding 1.5·2^19 (whose ulp is 1/16), which also leaves j = 16·k mod 16 in the low mantissa
// bits of the sum; 2^k = 2^⌊k⌋ · 2^(j/16) with 2^(j/16) from a 16-entry table (vpermps), and
// 2^r for the remainder |r| ≤ 1/32 as 1 + r·q(r), q of degree 2 (minimax, relative error
// 6e-8 after float rounding).
constexpr float kRound16 = 786432.0f;  // 1.5 · 2^19
alignas(64) constexpr float kExp2Table16[16] = {
    1.0f,         1.04427373f, 1.09050775f, 1.13878858f, 1.18920708f, 1.24185777f, 1.29683959f, 1.35425556f,
    1.41421354f,  1.47682619f, 1.54221082f, 1.61049032f, 1.68179286f, 1.75625217f, 1.8340081f,  1.91520655f};
constexpr float kExp2Q0 = 0.693147182f, kExp2Q1 = 0.240234286f, kExp2Q2 = 0.0555021353f;
constexpr float kLog2eLo = 1.92596299e-8f;  // log2(e) − kLog2e

// s · 2^r with s = 2^(j/16) picked by the low bits of t (see above), |r| ≤ 1/32.
inline __m512 exp2_table_mantissa(__m512 t, __m512 r) {
  const __m512 s = _mm512_permutexvar_ps(_mm512_castps_si512(t), _mm512_load_ps(kExp2Table16));
  __m512 q = _mm512_fmadd_ps(_mm512_set1_ps(kExp2Q2), r, _mm512_set1_ps(kExp2Q1));
  q = _mm512_fmadd_ps(q, r, _mm512_set1_ps(kExp2Q0));
  return _mm512_fmadd_ps(_mm512_mul_ps(s, r), q, s);
}

// exp(x), relative error ≤ 2 ulp: x·log2 e is split exactly into k + r by multiply-adds
// (the product's rounding error is recovered by the second one), then as above; vscalefps
// applies 2^⌊k⌋ with correct overflow and gradual underflow.
inline VecF exp_f32(VecF x) {
  // max/min with the constant first: a NaN x passes through.
  x = min(VecF::set1(kExpMaxArg + 1.0f), max(VecF::set1(kExpMinArg - 16.0f), x));
  const __m512 t = _mm512_fmadd_ps(x.v, _mm512_set1_ps(kLog2e), _mm512_set1_ps(kRound16));
  const __m512 k = _mm512_sub_ps(t, _mm512_set1_ps(kRound16));
  __m512 r = _mm512_fmsub_ps(x.v, _mm512_set1_ps(kLog2e), k);
  r = _mm512_fmadd_ps(x.v, _mm512_set1_ps(kLog2eLo), r);
  return _mm512_scalef_ps(exp2_table_mantissa(t, r), k);
}
#elif defined(__AVX2__)
// exp(x), relative error ≈ 1 ulp: x = k·ln2 + r with |r| ≤ ln2/2 (two-constant Cody–Waite
// reduction), e^r by its degree-7 Taylor polynomial (truncation < 5e-9), then scaled by 2^k.
inline VecF exp_f32(VecF x) {
  x = min(max(x, VecF::set1(kExpMinArg - 16.0f)), VecF::set1(kExpMaxArg));
  VecF k = round_even(x * VecF::set1(kLog2e));
  VecF r = fnma(k, VecF::set1(kLn2Hi), x);
  r = fnma(k, VecF::set1(kLn2Lo), r);
  VecF p = VecF::set1(1.0f / 5040);
  p = fma(p, r, VecF::set1(1.0f / 720));
  p = fma(p, r, VecF::set1(1.0f / 120));
  p = fma(p, r, VecF::set1(1.0f / 24));
  p = fma(p, r, VecF::set1(1.0f / 6));
  p = fma(p, r, VecF::set1(0.5f));
  p = fma(p, r, VecF::set1(1.0f));
  p = fma(p, r, VecF::set1(1.0f));
  return scale_pow2(p, k);
}
#endif

#if defined(__AVX512F__) || defined(__AVX2__)
// 1/b to about 1 ulp. AVX-512: vrcp14ps (14 bits) and one Newton step, which is much
// cheaper than vdivps (6 cycles per zmm on Zen 4); AVX2 keeps the division (vrcpps has
// only 12 bits).
inline VecF recip_f32(VecF b) {
#if defined(__AVX512F__)
  const VecF r = _mm512_rcp14_ps(b.v);
  return fma(r, fnma(b, r, VecF::set1(1.0f)), r);
#else
  return VecF::set1(1.0f) / b;
#endif
}

#if defined(__AVX512F__)
// log1p(y) for y in [0, 1] = 2·atanh(s) with s = y/(2 + y) in [0, 1/3]: atanh(s)/s =
// 1 + u·P(u), u = s², P of degree 3 (minimax, relative error 4e-9). Written as
// y − s·(y − 2u·P(u)) (2s = y − s·y), so the rounding of s touches only a third of the result;
// no exponent split is needed since 1 + y stays in [1, 2].
inline VecF log1p_unit_f32(VecF y) {
  const VecF s = y * recip_f32(y + VecF::set1(2.0f));
  const VecF u = s * s;
  VecF p = fma(VecF::set1(0.140891671f), u, VecF::set1(0.139803007f));
  p = fma(p, u, VecF::set1(0.200124547f));
  p = fma(p, u, VecF::set1(0.333331585f));
  return fnma(s, y - (u + u) * p, y);
}
#else
// log1p(y) for y in [0, 1]: w = 1 + y rounded, log w = e·ln2 + log m with m in [1, 2) folded
// to [√2/2, √2], log m = 2·atanh(s), s = (m−1)/(m+1), |s| ≤ 0.18, odd series to s¹¹; plus the
// first-order correction
// (y − (w − 1))/w for the rounding of 1 + y (all of the result when y is below ulp(1)/2).
inline VecF log1p_unit_f32(VecF y) {
  const VecF one = VecF::set1(1.0f);
  const VecF w = one + y;
  VecF m, e;
  const VecF corr = (y - (w - one)) * recip_f32(w);
  frexp_1_2(w, &m, &e);
  // Fold m > √2 to m/2 so |log m| ≤ ln2/2.
  const VecF big = select_gt(m, VecF::set1(1.41421356f), one, VecF::zero());
  m = m * select_gt(m, VecF::set1(1.41421356f), VecF::set1(0.5f), one);
  e = e + big;
  const VecF s = (m - one) * recip_f32(m + one);
  const VecF s2 = s * s;
  VecF p = VecF::set1(2.0f / 11);
  p = fma(p, s2, VecF::set1(2.0f / 9));
  p = fma(p, s2, VecF::set1(2.0f / 7));
  p = fma(p, s2, VecF::set1(2.0f / 5));
  p = fma(p, s2, VecF::set1(2.0f / 3));
  p = fma(p, s2, VecF::set1(2.0f));
  const VecF log_m = p * s;
  return fma(e, VecF::set1(kLn2Hi), fma(e, VecF::set1(kLn2Lo), log_m + corr));
}
#endif
#else
inline VecF exp_f32(VecF x) { return std::exp(x.v); }
inline VecF log1p_unit_f32(VecF y) { return std::log1p(y.v); }
inline VecF recip_f32(VecF b) { return 1.0f / b.v; }
#endif

// 2^x, relative error ≈ 1 ulp. AVX-512: see exp_f32. AVX2: x = k + r with k = floor(x),
// r in [0, 1), 2^r by a degree-6 minimax polynomial (relative error 1.9e-9 on [0, 1); degree 5 would give 7.5e-8, just over
// 2 ulp after rounding), scaled by 2^k. Cheaper than exp_f32 (no Cody–Waite split), so hot
// loops pre-multiply their exponents by log2(e).
constexpr float kExp2Poly[7] = {1.0000000018557977f,  0.69314698384043868f, 0.24022983627589422f,
                                0.05548334197771016f, 0.0096788410070436723f, 0.0012439687747148748f,
                                0.00021702255680520309f};
#if defined(__AVX512F__)
inline VecF exp2_f32(VecF x) {
  // Clamped so the rounding sum stays exact; beyond ±200 the result is exactly 0 or inf.
  x = min(VecF::set1(200.0f), max(VecF::set1(-200.0f), x));
  const __m512 t = _mm512_add_ps(x.v, _mm512_set1_ps(kRound16));
  const __m512 k = _mm512_sub_ps(t, _mm512_set1_ps(kRound16));
  const __m512 r = _mm512_sub_ps(x.v, k);  // exact
  return _mm512_scalef_ps(exp2_table_mantissa(t, r), k);
}

// 2^x for the decays of the selective scans, for x in [−125, 125] only (the caller checks),
// relative error ≤ 2.4e-7 (about 3 ulp; the scan's recurrence damps it, see scan_rows.h):
// x is rounded to k, a multiple of 1/32 (adding 1.5·2^18), 2^(j/32) comes from a 32-entry
// table (vpermt2d), 2^r for |r| ≤ 1/64 is 1 + r·(c0 + c1·r), and the scaling by 2^⌊k⌋ is an
// integer add into the exponent field: the table holds 2^(j/32) with (j << 18) subtracted,
// and t's bits shifted left by 18 are (32·k) << 18 = (⌊k⌋ << 23) + (j << 18). Compared with
// exp2_f32: no clamp, no vscalefps and one multiply-add less, which matters in the scan's
// recurrence, bound by these pipes.
alignas(64) constexpr int32_t kExp2Table32Bits[32] = {
    0x3F800000, 0x3F7ECD87, 0x3F7DAAC3, 0x3F7C980F, 0x3F7B95C2, 0x3F7AA43A, 0x3F79C3D3, 0x3F78F4F0,
    0x3F7837F0, 0x3F778D3A, 0x3F76F532, 0x3F767043, 0x3F75FED7, 0x3F75A15B, 0x3F75583F, 0x3F7523F6,
    0x3F7504F3, 0x3F74FBAF, 0x3F7508A4, 0x3F752C4D, 0x3F75672A, 0x3F75B9BE, 0x3F76248C, 0x3F76A81E,
    0x3F7744FD, 0x3F77FBB8, 0x3F78CCDF, 0x3F79B907, 0x3F7AC0C7, 0x3F7BE4BA, 0x3F7D257D, 0x3F7E83B3};

inline VecF exp2_in_range_f32(VecF x) {
  constexpr float kRound32 = 393216.0f;  // 1.5 · 2^18: rounds to a multiple of 1/32
  const __m512 t = _mm512_add_ps(x.v, _mm512_set1_ps(kRound32));
  // r from t, not from x alone (vreduceps would save an add): the compiler may contract the
  // caller's x = dt·a with the add above, or with the subtraction below, into a multiply-add
  // (GCC's default -ffp-contract=fast), so t or r can see the exact product where x holds the
  // rounded one. r = x − (t − 1.5·2^18) keeps k + r equal to the product either way (to one
  // rounding); an r rounded independently of t would be off by 1/32 whenever the two roundings
  // fall on either side of a multiple of 1/32.
  const __m512 r = _mm512_sub_ps(x.v, _mm512_sub_ps(t, _mm512_set1_ps(kRound32)));
  const __m512i ti = _mm512_castps_si512(t);
  const __m512i table = _mm512_permutex2var_epi32(_mm512_load_si512(kExp2Table32Bits), ti,
                                                  _mm512_load_si512(kExp2Table32Bits + 16));
  const __m512 s = _mm512_castsi512_ps(_mm512_add_epi32(table, _mm512_slli_epi32(ti, 18)));
  const __m512 q = _mm512_fmadd_ps(_mm512_set1_ps(0.24022886f), r, _mm512_set1_ps(0.6931607f));
  return _mm512_fmadd_ps(_mm512_mul_ps(s, r), q, s);
}
#elif defined(__AVX2__)
inline VecF exp2_f32(VecF x) {
  x = min(max(x, VecF::set1(-150.0f)), VecF::set1(128.0f));  // keeps k in scale_pow2's range
  const VecF k = _mm256_round_ps(x.v, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
  const VecF r = x - k;
  VecF p = VecF::set1(kExp2Poly[6]);
  p = fma(p, r, VecF::set1(kExp2Poly[5]));
  p = fma(p, r, VecF::set1(kExp2Poly[4]));
  p = fma(p, r, VecF::set1(kExp2Poly[3]));
  p = fma(p, r, VecF::set1(kExp2Poly[2]));
  p = fma(p, r, VecF::set1(kExp2Poly[1]));
  p = fma(p, r, VecF::set1(kExp2Poly[0]));
  return scale_pow2(p, k);
}
#else
inline VecF exp2_f32(VecF x) { return std::exp2(x.v); }
#endif
#if !defined(__AVX512F__)
inline VecF exp2_in_range_f32(VecF x) { return exp2_f32(x); }
#endif

// ---- Reduced-precision math of the quantized scan (MathMode::fast, see scan_bidir.h): its
// output is rounded to an 8-bit grid whose step is ~4e-3 of the token's range, so relative
// errors of 1e-5..1e-4 in Δ, the gate and the decays cost no accuracy and save a third of the
// scan's arithmetic outside the recurrence. AVX-512 only; the other builds keep the exact math.
#if defined(__AVX512F__)
// The fast functions' exponential: 2^(k + r), k a multiple of 1/32 and |r| ≤ 1/64, to first
// order as m_j·2^⌊k⌋·(r + b) with b = 46/32 (j = 32·(k − ⌊k⌋)). b is what makes it cheap: the
// remainder comes out already offset by b from the rounding (t − (1.5·2^18 + b) is k − b exactly,
// a multiple of 1/32 like b), so a decay costs a multiply, three adds, the table lookup and one
// more multiply, and the adds go to the add pipes, which the scan's recurrence leaves idle while
// its multiply-add pipes are saturated (Zen 4: ~5 % of the quantized scan against the 1/ln2
// form, 2^(j/32)·ln2·(r + 1/ln2), which needs one add more). b is not 1/ln2, so the line's slope
// is 1/b where 2^r has ln2: m_j = 2^(j/32)·1.000046/b centres the error at ±5.3e-5; m_0 = 1/b
// (rounded so that m_0·b is exactly 1) keeps 2^0 = 1 exact at the price of [−9.9e-5, 6.5e-6]
// there. The table holds m_j's bits with (j << 18) subtracted, as kExp2Table32Bits.
alignas(64) constexpr int32_t kExp2OffsetTable32Bits[32] = {
    0x3F321643, 0x3F31FEB4, 0x3F31FAE8, 0x3F320D73, 0x3F3236D3, 0x3F327786, 0x3F32D010, 0x3F3340F7,
    0x3F33CAC3, 0x3F346DFF, 0x3F352B3B, 0x3F360308, 0x3F36F5FA, 0x3F3804AB, 0x3F392FB5, 0x3F3A77B8,
    0x3F3BDD56, 0x3F3CB09A, 0x3F3B81FF, 0x3F3A632F, 0x3F395484, 0x3F385658, 0x3F376907, 0x3F368CF0,
    0x3F35C274, 0x3F3509F5, 0x3F3463D7, 0x3F33D083, 0x3F335061, 0x3F32E3DD, 0x3F328B65, 0x3F324769};
constexpr float kFastRound32 = 393216.0f;                // 1.5·2^18: rounds to a multiple of 1/32
constexpr float kFastRound32Offset = 393216.0f + 1.4375f;  // the same plus b (exact: a multiple of 1/32)

// 2^(k + r) for t = the float whose bits hold 32·k (see exp2_in_range_f32) and the offset
// remainder r_b = r + b: relative error ≤ 1e-4 (≤ 5.3e-5 but for j = 0), exact at k + r = 0.
inline __m512 exp2_fast_from_parts(__m512 t, __m512 r_b) {
  const __m512i ti = _mm512_castps_si512(t);
  const __m512i table = _mm512_permutex2var_epi32(_mm512_load_si512(kExp2OffsetTable32Bits), ti,
                                                  _mm512_load_si512(kExp2OffsetTable32Bits + 16));
  const __m512 m = _mm512_castsi512_ps(_mm512_add_epi32(table, _mm512_slli_epi32(ti, 18)));
  return _mm512_mul_ps(r_b, m);
}

// 2^x for x in [−125, 125] (the caller checks), relative error ≤ 1e-4, exact at x = 0 (so a
// decay near 1, which the recurrence raises to high powers, keeps its exponent to within 1 %:
// log2 of the result is x·(1/(b·ln2)) + O(x²), 1/(b·ln2) = 1.0036).
inline VecF exp2_fast_in_range_f32(VecF x) {
  // x (the caller's dt·A·log2 e) stays a plain product: contracted into the two adds below as
  // multiply-adds (GCC's default -ffp-contract=fast) it would put two ops on the saturated
  // multiply-add pipes instead of one.
  asm("" : "+v"(x.v));
  const __m512 t = _mm512_add_ps(x.v, _mm512_set1_ps(kFastRound32));
  // r_b from t, not from x alone (see exp2_in_range_f32): k + r_b − b is x to one rounding.
  const __m512 r_b = _mm512_sub_ps(x.v, _mm512_sub_ps(t, _mm512_set1_ps(kFastRound32Offset)));
  return VecF(exp2_fast_from_parts(t, r_b));
}

// e^x for x in [−86, 86] (the callers clamp), relative error ≤ 1e-4.
inline __m512 exp_fast_in_range(VecF x) {
  // x·log2 e split exactly into k (a multiple of 1/32) + r by the multiply-adds, r offset by b.
  const __m512 t = _mm512_fmadd_ps(x.v, _mm512_set1_ps(kLog2e), _mm512_set1_ps(kFastRound32));
  const __m512 r_b = _mm512_fmsub_ps(x.v, _mm512_set1_ps(kLog2e), _mm512_sub_ps(t, _mm512_set1_ps(kFastRound32Offset)));
  return exp2_fast_from_parts(t, r_b);
}

// e^x, relative error ≤ 1e-4; x is clamped to [−86, 86] (results in [2^−124, 2^124]).
inline VecF exp_fast_f32(VecF x) { return exp_fast_in_range(min(VecF::set1(86.0f), max(VecF::set1(-86.0f), x))); }

// e^x for x ≤ 0 (softplus's e^−|x|), one clamp less: x is clamped to x ≥ −86. A NaN passes.
inline VecF exp_fast_nonpositive_f32(VecF x) { return exp_fast_in_range(max(VecF::set1(-86.0f), x)); }

// log1p(y) for y in [0, 1] as y·P(y), P of degree 5 (minimax in relative error: 8.5e-6).
inline VecF log1p_unit_fast_f32(VecF y) {
  VecF p = fma(VecF::set1(-0.0238688793f), y, VecF::set1(0.101221636f));
  p = fma(p, y, VecF::set1(-0.210048169f));
  p = fma(p, y, VecF::set1(0.325206518f));
  p = fma(p, y, VecF::set1(-0.499361336f));
  p = fma(p, y, VecF::set1(0.999991596f));
  return p * y;
}

// softplus (relative error ≤ 1.1e-4): max(x, 0) + log1p(e^−|x|); above 20 the sum rounds to x.
inline VecF softplus_fast_f32(VecF x) {
  const VecF neg_abs = _mm512_or_ps(x.v, _mm512_set1_ps(-0.0f));
  return max(x, VecF::zero()) + log1p_unit_fast_f32(exp_fast_nonpositive_f32(neg_abs));
}

// silu(x) = x / (1 + e^−x), relative error ≤ 1.1e-4.
inline VecF silu_fast_f32(VecF x) { return x * recip_f32(VecF::set1(1.0f) + exp_fast_f32(VecF::zero() - x)); }
#endif

// The first n (1..kWidth) bytes at p as floats, the other lanes 0; reads no byte past p[n−1].
#if defined(__AVX512F__)
inline VecF load_u8_f32(const uint8_t* p, int n) {
  const __m128i bytes = _mm_maskz_loadu_epi8(__mmask16((n >= 16 ? 0x10000u : (1u << n)) - 1u), p);
  return _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(bytes));
}
#elif defined(__AVX2__)
inline VecF load_u8_f32(const uint8_t* p, int n) {
  alignas(16) uint8_t tmp[16] = {};
  for (int i = 0; i < n && i < 8; ++i) tmp[i] = p[i];
  return _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(tmp))));
}
#else
inline VecF load_u8_f32(const uint8_t* p, int n) { return n > 0 ? float(*p) : 0.0f; }
#endif

// Stores the first n lanes of v, which hold integral values in [0, 255], as bytes.
#if defined(__AVX512F__)
inline void store_u8(uint8_t* p, VecF v, int n) {
  const __m128i bytes = _mm512_cvtepi32_epi8(_mm512_cvtps_epi32(v.v));
  _mm_mask_storeu_epi8(p, __mmask16((n >= 16 ? 0x10000u : (1u << n)) - 1u), bytes);
}
#elif defined(__AVX2__)
inline void store_u8(uint8_t* p, VecF v, int n) {
  const __m256i i32 = _mm256_cvtps_epi32(v.v);
  const __m128i i16 = _mm_packus_epi32(_mm256_castsi256_si128(i32), _mm256_extracti128_si256(i32, 1));
  const __m128i u8 = _mm_packus_epi16(i16, i16);
  if (n >= 8) {
    _mm_storel_epi64(reinterpret_cast<__m128i*>(p), u8);
  } else {
    alignas(16) uint8_t tmp[16];
    _mm_store_si128(reinterpret_cast<__m128i*>(tmp), u8);
    for (int i = 0; i < n; ++i) p[i] = tmp[i];
  }
}
#else
inline void store_u8(uint8_t* p, VecF v, int n) {
  if (n > 0) *p = uint8_t(int(v.v));
}
#endif

// softplus(x) = log(1 + e^x), = x above 20 (the Mamba convention), computed as
// max(x, 0) + log1p(e^−|x|) so it never overflows.
inline VecF softplus_f32(VecF x) {
  VecF sp = max(x, VecF::zero()) + log1p_unit_f32(exp_f32(VecF::zero() - abs(x)));
  return select_gt(x, VecF::set1(20.0f), x, sp);
}

// silu(x) = x · sigmoid(x) = x / (1 + e^−x).
inline VecF silu_f32(VecF x) { return x * recip_f32(VecF::set1(1.0f) + exp_f32(VecF::zero() - x)); }

#if !defined(__AVX512F__)
// The builds without AVX-512 keep the exact math for MathMode::fast too.
inline VecF exp2_fast_in_range_f32(VecF x) { return exp2_in_range_f32(x); }
inline VecF exp_fast_f32(VecF x) { return exp_f32(x); }
inline VecF softplus_fast_f32(VecF x) { return softplus_f32(x); }
inline VecF silu_fast_f32(VecF x) { return silu_f32(x); }
#endif

}  // namespace
}  // namespace ptq4vm::cpu
