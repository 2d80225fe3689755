// Inner loops of the JLSS backward passes (train.h), written once against a vector type V:
// VecF from simd.h (16, 8 or 1 float lanes, by the ISA flags of the including file) for the
// float instantiation, VecD (one double lane, libm) for the double one the gradient checks use.
// Lanes run over channels (the contiguous axis of the token-major layout).
// The drivers (threads, workspaces, ISA dispatch) are train_scan.cpp, train_conv.cpp and
// train_quant.cpp; train_avx2.cpp and train_avx512.cpp compile the float loops for their ISA.
// Everything below the declarations has internal linkage, so differently-compiled copies of
// these templates never merge at link time.
#pragma once
#include <cmath>
#include <cstdint>
#include <type_traits>

#include "ptq4vm/train.h"
#include "simd.h"

namespace ptq4vm::cpu {

// Float entry points, one set per ISA namespace (scalar: the portable build of VecF).
//   train_lane_width: lanes of VecF in that build (sizes the workspaces).
//   train_scan_backward_item: one batch item of nd directions; ws holds
//     scan_workspace_elems(L, N, width, nd) floats.
//   train_conv_backward_item: one batch item; weight_t is the weight transposed to [K, E],
//     dpre a [L, E] buffer.
//   train_act_quant_*_rows: rows [r0, r1); inv_smooth [cols] or null, inv_scale [period];
//     dsmooth_part [cols] receives the sum over these rows, dscale_rows [r1 − r0] each row's
//     ∂loss/∂s (a row uses one s), so the caller can reduce them in a fixed order.
#define PTQ4VM_TRAIN_ISA_DECLS                                                                     \
  int train_lane_width();                                                                          \
  void train_scan_backward_item(const ScanOperands<float>* dirs, const ScanGrads<float>* grads,   \
                                int nd, int64_t b, float* ws, bool accumulate);                   \
  void train_conv_backward_item(int64_t b, int64_t L, int64_t E, int64_t K, const float* x,       \
                                int64_t ldx, const float* weight_t, const float* bias,            \
                                bool reverse, bool apply_silu, const float* dout, int64_t lddout, \
                                float* dx, int64_t lddx, float* dpre, bool accumulate);            \
  void train_act_quant_forward_rows(const ActQuant<float>& q, const float* inv_smooth,            \
                                    const float* inv_scale, int64_t r0, int64_t r1, float* out,   \
                                    int64_t ldo, uint8_t* levels, int64_t ldl);                    \
  void train_act_quant_backward_rows(const ActQuant<float>& q, const float* inv_smooth,           \
                                     const float* inv_scale, const float* dout, int64_t lddout,   \
                                     int64_t r0, int64_t r1, float* dx, int64_t lddx,             \
                                     float* dsmooth_part, double* dscale_rows, bool accumulate_dx);

namespace scalar {
PTQ4VM_TRAIN_ISA_DECLS
}
namespace avx2 {
PTQ4VM_TRAIN_ISA_DECLS
}
namespace avx512 {
PTQ4VM_TRAIN_ISA_DECLS
}

namespace {

// One double lane with VecF's interface (the double instantiation is for checks: exact libm).
struct VecD {
  static constexpr int kWidth = 1;
  double v;
  VecD() = default;
  VecD(double x) : v(x) {}
  static VecD zero() { return 0.0; }
  static VecD set1(double x) { return x; }
  static VecD load(const double* p) { return *p; }
  static VecD load_partial(const double* p, int n) { return n > 0 ? *p : 0.0; }
  void store(double* p) const { *p = v; }
  void store_partial(double* p, int n) const {
    if (n > 0) *p = v;
  }
  double reduce_add() const { return v; }
};
inline VecD operator+(VecD a, VecD b) { return a.v + b.v; }
inline VecD operator-(VecD a, VecD b) { return a.v - b.v; }
inline VecD operator*(VecD a, VecD b) { return a.v * b.v; }
inline VecD operator/(VecD a, VecD b) { return a.v / b.v; }
inline VecD fma(VecD a, VecD b, VecD c) { return std::fma(a.v, b.v, c.v); }
inline VecD max(VecD a, VecD b) { return a.v > b.v ? a.v : b.v; }
inline VecD min(VecD a, VecD b) { return a.v < b.v ? a.v : b.v; }
inline VecD round_even(VecD a) { return std::nearbyint(a.v); }
inline VecD select_gt(VecD a, VecD b, VecD x, VecD y) { return a.v > b.v ? x : y; }

// The scan's decay 2^x for x = dt·A·log2 e, as the forward scans compute it (scan_rows.h): the
// exponent clamped to [−125, 125], then exp2_in_range_f32. The recomputed states are then those
// of the forward. Double (checks): exact.
inline VecF v_decay(VecF x) {
  return exp2_in_range_f32(min(VecF::set1(125.0f), max(VecF::set1(-125.0f), x)));
}
inline VecD v_decay(VecD x) { return std::exp2(x.v); }
// softplus with Mamba's threshold: x above 20 passes through (the forward kernels' softplus_f32).
inline VecF v_softplus(VecF x) { return softplus_f32(x); }
inline VecD v_softplus(VecD x) { return x.v > 20.0 ? x.v : std::log1p(std::exp(x.v)); }
// softplus'(x) = sigmoid(x) = e^(x − softplus(x)), from the softplus already computed: one exp2,
// no division; accurate to a few ulp of the exponent (x − sp is exact where it is small).
inline VecF v_softplus_grad(VecF x, VecF sp) {
  return select_gt(x, VecF::set1(20), VecF::set1(1), exp2_f32((x - sp) * VecF::set1(kLog2e)));
}
inline VecD v_softplus_grad(VecD x, VecD) { return x.v > 20.0 ? 1.0 : 1.0 / (1.0 + std::exp(-x.v)); }
// 1 / (1 + e^−x): exp2 and the ~1 ulp reciprocal of simd.h (no division).
inline VecF v_sigmoid(VecF x) {
  const VecF e = exp2_f32(min(x * VecF::set1(-kLog2e), VecF::set1(126.0f)));
  return recip_f32(VecF::set1(1) + e);
}
inline VecD v_sigmoid(VecD x) { return 1.0 / (1.0 + std::exp(-x.v)); }

template <class V> struct LaneScalar;
template <> struct LaneScalar<VecF> { using type = float; };
template <> struct LaneScalar<VecD> { using type = double; };
template <class V> using scalar_of = typename LaneScalar<V>::type;

// Loads/stores of the first w ≤ kWidth lanes.
template <class V, class S>
inline V load_n(const S* p, int w) {
  return w == V::kWidth ? V::load(p) : V::load_partial(p, w);
}
template <class V, class S>
inline void store_n(V x, S* p, int w) {
  if (w == V::kWidth) x.store(p);
  else x.store_partial(p, w);
}
template <class V, class S>
inline void add_n(V x, S* p, int w) {
  store_n(load_n<V>(p, w) + x, p, w);
}

// ---- Selective scan backward, one batch item ----
// Per block of W channels, a forward pass recomputes the states (in registers when N is a
// compile-time constant NS, else in memory) and keeps, per step k and state n, the decay
// d_k = exp(dt_k·A) and G_k = A·d_k·h_{k−1} = ∂h_k/∂dt_k − u_k·B_k ([L][N][W] each, L2-resident);
// then the adjoint runs backwards in time. The decays are computed as the forward kernels compute
// them (v_decay), so the recomputed states are those the forward produced. With
// adj_k = dout_k·C_k + d_{k+1}·adj_{k+1}:
//   ∂loss/∂dt_k = Σ_n adj_k·G_k + u_k·Σ_n adj_k·B_k;   ∂loss/∂u_k = dt_k·Σ_n adj_k·B_k + D·dout_k;
//   ∂loss/∂B_k = Σ_e adj_k·dt_k·u_k;   ∂loss/∂C_k = Σ_e dout_k·h_k.
// dout does not depend on the adjoint, so dC and dz are done in the forward pass. The sums over
// channels (the lanes) of dB and dC: with 16 lanes and 16 states, 16 product vectors fold into
// one vector of the 16 sums right away (fold4, fold16); otherwise per-lane partials ([L][N][W])
// are summed once per item.

// A·log2(e), the exponent factor of the forward kernels' exp2 (scan.cpp computes it so too).
template <class V>
inline scalar_of<V> log2e_times(scalar_of<V> a) {
  return scalar_of<V>(double(a) * 1.4426950408889634074);
}
#if defined(__AVX512F__)
// Lane sums of 16 vectors p[0..15] as one vector (lane i = Σ lanes of p[i]), folded in four
// steps of in-register shuffles. fold4 takes four vectors (states 4q..4q+3) to per-128-bit-chunk
// sums: chunk j of the result holds, in lanes 0..3, the sums over chunk j of p0..p3.
inline VecF fold4(VecF p0, VecF p1, VecF p2, VecF p3) {
  const __m512 x = _mm512_add_ps(_mm512_unpacklo_ps(p0.v, p1.v), _mm512_unpackhi_ps(p0.v, p1.v));
  const __m512 y = _mm512_add_ps(_mm512_unpacklo_ps(p2.v, p3.v), _mm512_unpackhi_ps(p2.v, p3.v));
  return _mm512_add_ps(_mm512_shuffle_ps(x, y, 0x44), _mm512_shuffle_ps(x, y, 0xEE));
}
// The four fold4 results of states 0..15 → lane i = total of state i.
inline VecF fold16(VecF q0, VecF q1, VecF q2, VecF q3) {
  const __m512 r = _mm512_add_ps(_mm512_shuffle_f32x4(q0.v, q1.v, 0x88), _mm512_shuffle_f32x4(q0.v, q1.v, 0xDD));
  const __m512 t = _mm512_add_ps(_mm512_shuffle_f32x4(q2.v, q3.v, 0x88), _mm512_shuffle_f32x4(q2.v, q3.v, 0xDD));
  return _mm512_add_ps(_mm512_shuffle_f32x4(r, t, 0x88), _mm512_shuffle_f32x4(r, t, 0xDD));
}
template <class V, int NS>
constexpr bool kFoldLanes = std::is_same_v<V, VecF> && V::kWidth == 16 && NS == 16;
#else
template <class V, int NS>
constexpr bool kFoldLanes = false;
#endif

// Runs body(n) for the N states and, when folding, sums the product vectors body returns over
// the lanes into `sums` (lane n); otherwise body itself adds them to per-lane partials.
template <class V, int NS, class Body>
inline void for_states(int64_t N, V* sums, Body&& body) {
  if constexpr (kFoldLanes<V, NS>) {
#if defined(__AVX512F__)
    V q[4];
#pragma GCC unroll 4
    for (int g = 0; g < 4; ++g) {
      const V p0 = body(4 * g), p1 = body(4 * g + 1), p2 = body(4 * g + 2), p3 = body(4 * g + 3);
      q[g] = fold4(p0, p1, p2, p3);
    }
    *sums = fold16(q[0], q[1], q[2], q[3]);
#endif
  } else if constexpr (NS > 0) {
#pragma GCC unroll 16
    for (int n = 0; n < NS; ++n) body(n);
  } else {
    for (int64_t n = 0; n < N; ++n) body(n);
  }
}

// Buffers of one channel block (scan_workspace_elems sizes the whole item workspace).
template <typename S>
struct ScanBlockWs {
  S* decs;   // [L][N][W]: d_k
  S* Gs;     // [L][N][W]: G_k
  S* dts;    // [L][W] by step k: dt, dt·u, u, softplus'
  S* dtus;
  S* us;
  S* dsps;
  S* a2blk;  // [N][W]: A·log2 e and A of the block, and h or adj when N is not NS
  S* Ablk;
  S* state;
};

// Output v at p: written (overwrite) or added.
template <class V, class S>
inline void put_n(V v, S* p, int w, bool accumulate) {
  if (accumulate) add_n(v, p, w);
  else store_n(v, p, w);
}

// Where to prefetch while working on a channel block: the same rows `rows` further on and the
// block at column `col` (off: nothing left to fetch).
struct PrefetchAt {
  bool on;
  int64_t rows, col;
};
// `ahead` blocks further in (batch item, channel block) order: strided rows defeat the hardware
// prefetchers, and the next block is too close to hide the latency.
inline PrefetchAt prefetch_at(int64_t b, int64_t e0, int64_t B, int64_t L, int64_t E, int W, int64_t ahead) {
  const int64_t blocks = (E + W - 1) / W;
  const int64_t next = b * blocks + e0 / W + ahead;
  if (next >= B * blocks) return {false, 0, 0};
  return {true, (next / blocks - b) * L, (next % blocks) * W};
}
// Blocks ahead the scan backward prefetches (measured on Zen 4 in the JLSS step: 1 is much worse,
// 2 to 12 are alike; 2 keeps the fewest lines in flight for long sequences).
constexpr int64_t kScanPrefetchBlocks = 2;

// One direction over channel block [e0, e0 + w) of item b. douts [L][W] holds ∂loss/∂o by token
// position t (shared by the directions); o_sum [L][W] (or null) receives + o by token position;
// dB_part / dC_part are this direction's partials (see scan_backward_item).
template <class V, int NS>
void scan_backward_block(const ScanOperands<scalar_of<V>>& s, const ScanGrads<scalar_of<V>>& g, int64_t b, int64_t e0,
                         const ScanBlockWs<scalar_of<V>>& ws, const scalar_of<V>* douts, scalar_of<V>* o_sum,
                         scalar_of<V>* dB_part, scalar_of<V>* dC_part, bool accumulate, PrefetchAt pf) {
  using S = scalar_of<V>;
  constexpr int W = V::kWidth;
  constexpr bool fold = kFoldLanes<V, NS>;
  const int64_t L = s.L, E = s.E, N = NS > 0 ? NS : s.N;
  const int w = int(E - e0 < W ? E - e0 : W);
  const bool need_B = g.dB != nullptr, need_C = g.dC != nullptr;
  const V one = V::set1(1), vzero = V::zero();
  auto pos_of = [&](int64_t k) { return s.reverse ? L - 1 - k : k; };
  V reg[NS > 0 ? NS : 1];  // h in the forward pass, adj in the backward pass

  for (int64_t n = 0; n < N; ++n)
    for (int l = 0; l < W; ++l) {
      const S a = l < w ? s.A[(e0 + l) * N + n] : S(0);
      ws.Ablk[n * W + l] = a;
      ws.a2blk[n * W + l] = log2e_times<V>(a);
    }
  const V Dv = s.D ? load_n<V>(s.D + e0, w) : vzero;
  const V bias = s.delta_bias ? load_n<V>(s.delta_bias + e0, w) : vzero;
  const bool prefetch = pf.on;

  // Forward in time: states, decays, G, dC and o.
  if constexpr (NS > 0) {
    for (int n = 0; n < NS; ++n) reg[n] = vzero;
  } else {
    for (int64_t i = 0; i < N * W; ++i) ws.state[i] = 0;
  }
  for (int64_t k = 0; k < L; ++k) {
    const int64_t t = pos_of(k), row = b * L + t;
    const V u = load_n<V>(s.u + row * s.ldu + e0, w);
    const V x = load_n<V>(s.delta + row * s.lddelta + e0, w) + bias;
    if (prefetch) {
      __builtin_prefetch(s.u + (row + pf.rows) * s.ldu + pf.col, 0, 2);
      __builtin_prefetch(s.delta + (row + pf.rows) * s.lddelta + pf.col, 0, 2);
    }
    V dt = x, dsp = one;
    if (s.delta_softplus) {
      dt = v_softplus(x);
      dsp = v_softplus_grad(x, dt);
    }
    const V dtu = dt * u;
    const V dout = V::load(douts + t * W);
    dt.store(ws.dts + k * W);
    dtu.store(ws.dtus + k * W);
    u.store(ws.us + k * W);
    dsp.store(ws.dsps + k * W);
    const S* Brow = s.Bm + row * s.ldB;
    const S* Crow = s.Cm + row * s.ldC;
    S* dk = ws.decs + k * N * W;
    S* Gk = ws.Gs + k * N * W;
    S* dCk = dC_part + t * (fold ? W : N * W);
    // The decays first, then the states: one pass holding both would spill registers.
    if constexpr (NS > 0) {
#pragma GCC unroll 16
      for (int n = 0; n < NS; ++n) v_decay(dt * V::load(ws.a2blk + n * W)).store(dk + n * W);
    } else {
      for (int64_t n = 0; n < N; ++n) v_decay(dt * V::load(ws.a2blk + n * W)).store(dk + n * W);
    }
    V o0 = Dv * u, o1 = vzero, dC_sum = vzero;  // o = Σ h·C + D·u
    for_states<V, NS>(N, &dC_sum, [&](int64_t n) {
      V h;
      if constexpr (NS > 0) h = reg[n];
      else h = V::load(ws.state + n * W);
      const V carried = V::load(dk + n * W) * h;  // d_k·h_{k−1}
      h = fma(dtu, V::set1(Brow[n]), carried);
      if constexpr (NS > 0) reg[n] = h;
      else h.store(ws.state + n * W);
      (carried * V::load(ws.Ablk + n * W)).store(Gk + n * W);
      if (n % 2) o1 = fma(h, V::set1(Crow[n]), o1);
      else o0 = fma(h, V::set1(Crow[n]), o0);
      const V p = dout * h;
      if constexpr (!fold) {
        if (need_C) (V::load(dCk + n * W) + p).store(dCk + n * W);
      }
      return p;
    });
    if constexpr (fold) {
      if (need_C) (V::load(dCk) + dC_sum).store(dCk);
    }
    if (o_sum) (V::load(o_sum + t * W) + (o0 + o1)).store(o_sum + t * W);
  }

  // Backward in time: the adjoint.
  if constexpr (NS > 0) {
    for (int n = 0; n < NS; ++n) reg[n] = vzero;
  } else {
    for (int64_t i = 0; i < N * W; ++i) ws.state[i] = 0;
  }
  for (int64_t k = L - 1; k >= 0; --k) {
    const int64_t t = pos_of(k), row = b * L + t;
    if (prefetch) {
      if (g.du) __builtin_prefetch(g.du + (row + pf.rows) * g.lddu + pf.col, 1, 2);
      if (g.ddelta) __builtin_prefetch(g.ddelta + (row + pf.rows) * g.ldddelta + pf.col, 1, 2);
    }
    const V dout = V::load(douts + t * W), dtu = V::load(ws.dtus + k * W);
    const S* Brow = s.Bm + row * s.ldB;
    const S* Crow = s.Cm + row * s.ldC;
    const S* dk = ws.decs + k * N * W;
    const S* Gk = ws.Gs + k * N * W;
    S* dBk = dB_part + t * (fold ? W : N * W);
    V sb0 = vzero, sb1 = vzero;  // Σ adj·B
    V ad0 = vzero, ad1 = vzero;  // Σ adj·G
    V dB_sum = vzero;
    for_states<V, NS>(N, &dB_sum, [&](int64_t n) {
      V a;  // d_{k+1}·adj_{k+1}, then adj_k
      if constexpr (NS > 0) a = reg[n];
      else a = V::load(ws.state + n * W);
      a = fma(dout, V::set1(Crow[n]), a);
      if (n % 2) {
        sb1 = fma(a, V::set1(Brow[n]), sb1);
        ad1 = fma(a, V::load(Gk + n * W), ad1);
      } else {
        sb0 = fma(a, V::set1(Brow[n]), sb0);
        ad0 = fma(a, V::load(Gk + n * W), ad0);
      }
      const V p = a * dtu;
      if constexpr (!fold) {
        if (need_B) (V::load(dBk + n * W) + p).store(dBk + n * W);
      }
      a = a * V::load(dk + n * W);
      if constexpr (NS > 0) reg[n] = a;
      else a.store(ws.state + n * W);
      return p;
    });
    if constexpr (fold) {
      if (need_B) (V::load(dBk) + dB_sum).store(dBk);
    }
    const V sb = sb0 + sb1;
    if (g.du) put_n(fma(V::load(ws.dts + k * W), sb, Dv * dout), g.du + row * g.lddu + e0, w, accumulate);
    if (g.ddelta) {
      const V ddt = fma(V::load(ws.us + k * W), sb, ad0 + ad1);
      put_n(ddt * V::load(ws.dsps + k * W), g.ddelta + row * g.ldddelta + e0, w, accumulate);
    }
  }
}

// Workspace of one scan backward item over nd directions: per direction dB and dC partials (16
// lanes and 16 states: [L][W] sums by state; otherwise [L][N][W] lane partials), three shared
// [L][W] token buffers (dout, the gate's derivative, o), and the block buffers of ScanBlockWs.
inline int64_t scan_workspace_elems(int64_t L, int64_t N, int64_t width, int nd) {
  return (2 * nd * L * N + 3 * L + 2 * L * N + 4 * L + 3 * N) * width;
}

// Batch item b of y = out_scale · (Σ_d o_d) · [silu(z)], nd = 1 or 2 directions sharing z, dy
// and dz (those of dirs[0] / grads[0]); grads[d] holds direction d's du, ddelta, dB and dC.
// The gate's token terms are computed once per channel block and dz written once.
template <class V, int NS>
void scan_backward_item(const ScanOperands<scalar_of<V>>* dirs, const ScanGrads<scalar_of<V>>* grads, int nd,
                        int64_t b, scalar_of<V>* work, bool accumulate) {
  using S = scalar_of<V>;
  constexpr int W = V::kWidth;
  constexpr bool fold = kFoldLanes<V, NS>;
  const ScanOperands<S>& s = dirs[0];
  const ScanGrads<S>& g = grads[0];
  const int64_t L = s.L, E = s.E, N = NS > 0 ? NS : s.N;
  const int64_t part = fold ? L * W : L * N * W;
  S* dB_parts = work;                  // [nd][part]
  S* dC_parts = dB_parts + nd * part;  // [nd][part]
  S* douts = work + 2 * nd * L * N * W;
  S* gates = douts + L * W;  // ∂y/∂z / o
  S* o_sum = gates + L * W;
  S* blk = o_sum + L * W;
  const ScanBlockWs<S> ws{blk, blk + L * N * W, blk + 2 * L * N * W, blk + 2 * L * N * W + L * W,
                          blk + 2 * L * N * W + 2 * L * W, blk + 2 * L * N * W + 3 * L * W,
                          blk + 2 * L * N * W + 4 * L * W, blk + 2 * L * N * W + 4 * L * W + N * W,
                          blk + 2 * L * N * W + 4 * L * W + 2 * N * W};
  for (int64_t i = 0; i < 2 * nd * part; ++i) work[i] = 0;
  const V one = V::set1(1), out_scale = V::set1(s.out_scale);
  const bool need_dz = s.z && g.dz;
  for (int64_t e0 = 0; e0 < E; e0 += W) {
    const int w = int(E - e0 < W ? E - e0 : W);
    const PrefetchAt pf = prefetch_at(b, e0, s.B, L, E, W, kScanPrefetchBlocks);
    const bool prefetch = pf.on;
    for (int64_t t = 0; t < L; ++t) {
      const int64_t row = b * L + t;
      if (prefetch) {
        __builtin_prefetch(g.dy + (row + pf.rows) * g.lddy + pf.col, 0, 2);
        if (s.z) __builtin_prefetch(s.z + (row + pf.rows) * s.ldz + pf.col, 0, 2);
        if (need_dz) __builtin_prefetch(g.dz + (row + pf.rows) * g.lddz + pf.col, 1, 2);
      }
      const V dy = load_n<V>(g.dy + row * g.lddy + e0, w) * out_scale;
      V dout = dy;
      if (s.z) {
        const V zz = load_n<V>(s.z + row * s.ldz + e0, w);
        const V sig = v_sigmoid(zz);
        dout = dy * (zz * sig);
        if (need_dz) (dy * (sig * (one + zz * (one - sig)))).store(gates + t * W);
      }
      dout.store(douts + t * W);
      if (need_dz) V::zero().store(o_sum + t * W);
    }
    for (int d = 0; d < nd; ++d) {
      scan_backward_block<V, NS>(dirs[d], grads[d], b, e0, ws, douts, need_dz ? o_sum : nullptr, dB_parts + d * part,
                                 dC_parts + d * part, accumulate, pf);
    }
    if (need_dz) {
      for (int64_t t = 0; t < L; ++t) {
        const int64_t row = b * L + t;
        put_n(V::load(gates + t * W) * V::load(o_sum + t * W), g.dz + row * g.lddz + e0, w, accumulate);
      }
    }
  }
  for (int d = 0; d < nd; ++d) {
    const ScanGrads<S>& gd = grads[d];
    const S* dBp = dB_parts + d * part;
    const S* dCp = dC_parts + d * part;
    for (int64_t t = 0; t < L; ++t) {
      const int64_t row = b * L + t;
      if constexpr (fold) {
        if (gd.dB) put_n(V::load(dBp + t * W), gd.dB + row * gd.lddB, int(N), accumulate);
        if (gd.dC) put_n(V::load(dCp + t * W), gd.dC + row * gd.lddC, int(N), accumulate);
      } else {
        for (int64_t n = 0; n < N; ++n) {
          if (gd.dB) {
            const S v = V::load(dBp + (t * N + n) * W).reduce_add();
            gd.dB[row * gd.lddB + n] = accumulate ? gd.dB[row * gd.lddB + n] + v : v;
          }
          if (gd.dC) {
            const S v = V::load(dCp + (t * N + n) * W).reduce_add();
            gd.dC[row * gd.lddC + n] = accumulate ? gd.dC[row * gd.lddC + n] + v : v;
          }
        }
      }
    }
  }
}

// Vim's state size 16 runs the register-resident instantiation.
template <class V>
void scan_backward_item_any(const ScanOperands<scalar_of<V>>* dirs, const ScanGrads<scalar_of<V>>* grads, int nd,
                            int64_t b, scalar_of<V>* work, bool accumulate) {
  if (dirs[0].N == 16) scan_backward_item<V, 16>(dirs, grads, nd, b, work, accumulate);
  else scan_backward_item<V, 0>(dirs, grads, nd, b, work, accumulate);
}

// ---- Causal conv1d (+ SiLU) backward, one batch item ----
// Tap i (weight[e, i]) reads x[t + dir·(K−1−i)], dir = −1 forward, +1 reverse; so x[t'] feeds
// out[t' − dir·(K−1−i)] through tap i.
template <class V>
void conv_backward_item(int64_t b, int64_t L, int64_t E, int64_t K, const scalar_of<V>* x, int64_t ldx,
                        const scalar_of<V>* weight_t, const scalar_of<V>* bias, bool reverse,
                        bool apply_silu, const scalar_of<V>* dout, int64_t lddout, scalar_of<V>* dx,
                        int64_t lddx, scalar_of<V>* dpre, bool accumulate) {
  constexpr int W = V::kWidth;
  const int64_t dir = reverse ? 1 : -1;
  const V one = V::set1(1);
  const int64_t base = b * L;
  for (int64_t t = 0; t < L; ++t) {
    for (int64_t e0 = 0; e0 < E; e0 += W) {
      const int w = int(E - e0 < W ? E - e0 : W);
      V g = load_n<V>(dout + (base + t) * lddout + e0, w);
      if (apply_silu) {
        V p = bias ? load_n<V>(bias + e0, w) : V::zero();
        for (int64_t i = 0; i < K; ++i) {
          const int64_t src = t + dir * (K - 1 - i);
          if (src < 0 || src >= L) continue;
          p = fma(load_n<V>(weight_t + i * E + e0, w), load_n<V>(x + (base + src) * ldx + e0, w), p);
        }
        const V sig = v_sigmoid(p);
        g = g * (sig * (one + p * (one - sig)));
      }
      store_n(g, dpre + t * E + e0, w);
    }
  }
  for (int64_t t = 0; t < L; ++t) {
    for (int64_t e0 = 0; e0 < E; e0 += W) {
      const int w = int(E - e0 < W ? E - e0 : W);
      V acc = V::zero();
      for (int64_t i = 0; i < K; ++i) {
        const int64_t dst = t - dir * (K - 1 - i);
        if (dst < 0 || dst >= L) continue;
        acc = fma(load_n<V>(weight_t + i * E + e0, w), load_n<V>(dpre + dst * E + e0, w), acc);
      }
      put_n(acc, dx + (base + t) * lddx + e0, w, accumulate);
    }
  }
}

// ---- Activation fake quantizer, rows [r0, r1) ----
// The integral levels (0..255) of the first w lanes as bytes.
inline void store_levels(VecF level, uint8_t* p, int w) { store_u8(p, level, w); }
inline void store_levels(VecD level, uint8_t* p, int w) {
  if (w > 0) *p = uint8_t(level.v);
}

template <typename S>
inline int64_t act_param_index(const ActQuant<S>& q, int64_t r) {
  const int64_t p = r % q.period;
  return q.reverse_period ? q.period - 1 - p : p;
}

template <class V>
void act_quant_forward_rows(const ActQuant<scalar_of<V>>& q, const scalar_of<V>* inv_smooth,
                            const scalar_of<V>* inv_scale, int64_t r0, int64_t r1, scalar_of<V>* out,
                            int64_t ldo, uint8_t* levels, int64_t ldl) {
  using S = scalar_of<V>;
  constexpr int W = V::kWidth;
  const V vzero = V::zero(), vqmax = V::set1(S(q.qmax));
  for (int64_t r = r0; r < r1; ++r) {
    const int64_t p = act_param_index(q, r);
    const V is = V::set1(inv_scale[p]), zp = V::set1(S(q.zero[p])), sc = V::set1(q.scale[p]);
    const S* xr = q.x + r * q.ldx;
    S* orow = out + r * ldo;
    for (int64_t j0 = 0; j0 < q.cols; j0 += W) {
      const int w = int(q.cols - j0 < W ? q.cols - j0 : W);
      V a = load_n<V>(xr + j0, w);
      if (inv_smooth) a = a * load_n<V>(inv_smooth + j0, w);
      const V level = min(max(round_even(a * is) + zp, vzero), vqmax);
      store_n((level - zp) * sc, orow + j0, w);
      if (levels) store_levels(level, levels + r * ldl + j0, w);
    }
  }
}

template <class V>
void act_quant_backward_rows(const ActQuant<scalar_of<V>>& q, const scalar_of<V>* inv_smooth,
                             const scalar_of<V>* inv_scale, const scalar_of<V>* dout, int64_t lddout,
                             int64_t r0, int64_t r1, scalar_of<V>* dx, int64_t lddx,
                             scalar_of<V>* dsmooth_part, double* dscale_rows, bool accumulate_dx) {
  using S = scalar_of<V>;
  constexpr int W = V::kWidth;
  const V vzero = V::zero(), vqmax = V::set1(S(q.qmax));
  for (int64_t r = r0; r < r1; ++r) {
    const int64_t p = act_param_index(q, r);
    const V is = V::set1(inv_scale[p]), zp = V::set1(S(q.zero[p]));
    const V below_term = vzero - zp, above_term = vqmax - zp;  // ∂out/∂s where clamped
    const S* xr = q.x + r * q.ldx;
    const S* gr = dout + r * lddout;
    V ds = vzero;
    for (int64_t j0 = 0; j0 < q.cols; j0 += W) {
      const int w = int(q.cols - j0 < W ? q.cols - j0 : W);
      V a = load_n<V>(xr + j0, w);
      const V ism = inv_smooth ? load_n<V>(inv_smooth + j0, w) : V::set1(1);
      if (inv_smooth) a = a * ism;
      const V v = a * is;
      const V rv = round_even(v);
      const V level = rv + zp;
      const V go = load_n<V>(gr + j0, w);
      if (dscale_rows) {
        const V dsv = select_gt(level, vqmax, above_term, select_gt(vzero, level, below_term, rv - v));
        ds = fma(go, dsv, ds);
      }
      const V ga = select_gt(level, vqmax, vzero, select_gt(vzero, level, vzero, go));  // ∂loss/∂a
      if (dx) put_n(ga * ism, dx + r * lddx + j0, w, accumulate_dx);
      if (dsmooth_part) add_n(vzero - ga * a * ism, dsmooth_part + j0, w);
    }
    if (dscale_rows) dscale_rows[r - r0] = double(ds.reduce_add());
  }
}

}  // namespace
}  // namespace ptq4vm::cpu
