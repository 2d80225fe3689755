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

#include "ptq4vm/train.h"
#include "simd.h"

namespace ptq4vm::cpu {

// Float entry points, one set per ISA namespace (scalar: the portable build of VecF).
//   train_lane_width: lanes of VecF in that build (sizes the workspaces).
//   train_scan_backward_item: one batch item; ws holds scan_workspace_elems(L, N, width) floats.
//   train_conv_backward_item: one batch item; weight_t is the weight transposed to [K, E],
//     dpre a [L, E] buffer.
//   train_act_quant_*_rows: rows [r0, r1); inv_smooth [cols] or null, inv_scale [period];
//     dsmooth_part [cols] receives the sum over these rows, dscale_rows [r1 − r0] each row's
//     ∂loss/∂s (a row uses one s), so the caller can reduce them in a fixed order.
#define PTQ4VM_TRAIN_ISA_DECLS                                                                     \
  int train_lane_width();                                                                          \
  void train_scan_backward_item(const ScanOperands<float>& s, const ScanGrads<float>& g,          \
                                int64_t b, float* ws);                                             \
  void train_conv_backward_item(int64_t b, int64_t L, int64_t E, int64_t K, const float* x,       \
                                int64_t ldx, const float* weight_t, const float* bias,            \
                                bool reverse, bool apply_silu, const float* dout, int64_t lddout, \
                                float* dx, int64_t lddx, float* dpre);                             \
  void train_act_quant_forward_rows(const ActQuant<float>& q, const float* inv_smooth,            \
                                    const float* inv_scale, int64_t r0, int64_t r1, float* out,   \
                                    int64_t ldo);                                                  \
  void train_act_quant_backward_rows(const ActQuant<float>& q, const float* inv_smooth,           \
                                     const float* inv_scale, const float* dout, int64_t lddout,   \
                                     int64_t r0, int64_t r1, float* dx, int64_t lddx,             \
                                     float* dsmooth_part, double* dscale_rows);

namespace scalar {
PTQ4VM_TRAIN_ISA_DECLS
}
namespace avx2 {
PTQ4VM_TRAIN_ISA_DECLS
}
namespace avx512 {
PTQ4VM_TRAIN_ISA_DECLS
}

// Workspace of one scan backward item: states, decays, dB and dC lane partials ([L][N][W] each),
// dt, delta + bias and the pre-gate output ([L][W]), the adjoint and A of the channel block ([N][W]).
inline int64_t scan_workspace_elems(int64_t L, int64_t N, int64_t width) {
  return (4 * L * N + 3 * L + 2 * N) * width;
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

inline VecF v_exp(VecF x) { return exp_f32(x); }
inline VecD v_exp(VecD x) { return std::exp(x.v); }
// e^x for the scan's state decays, the innermost cost of the backward's recompute; relative
// error below 1e-6 for x ≥ −20 (5e-6 near the clamp): one-constant reduction x = k·ln2 + r and
// e^r by its degree-6 Taylor polynomial. Only the lower clamp: x = dt·A ≤ 0 here.
inline VecF v_decay(VecF x) {
  x = max(x, VecF::set1(kExpMinArg));
  const VecF k = round_even(x * VecF::set1(kLog2e));
  const VecF r = fnma(k, VecF::set1(0.693147180559945f), x);
  VecF p = VecF::set1(1.0f / 720);
  p = fma(p, r, VecF::set1(1.0f / 120));
  p = fma(p, r, VecF::set1(1.0f / 24));
  p = fma(p, r, VecF::set1(1.0f / 6));
  p = fma(p, r, VecF::set1(0.5f));
  p = fma(p, r, VecF::set1(1.0f));
  p = fma(p, r, VecF::set1(1.0f));
  return scale_pow2(p, k);
}
inline VecD v_decay(VecD x) { return std::exp(x.v); }
// softplus with Mamba's threshold: x above 20 passes through.
inline VecF v_softplus(VecF x) { return softplus_f32(x); }
inline VecD v_softplus(VecD x) { return x.v > 20.0 ? x.v : std::log1p(std::exp(x.v)); }
template <class V>
inline V v_sigmoid(V x) {
  return V::set1(1) / (V::set1(1) + v_exp(V::zero() - x));
}

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
// Sums over the states use kAcc independent accumulators: a single chain of N dependent FMAs
// per step would bound the loop by FMA latency.
constexpr int kAcc = 4;

template <class V>
void scan_backward_item(const ScanOperands<scalar_of<V>>& s, const ScanGrads<scalar_of<V>>& g,
                        int64_t b, scalar_of<V>* ws) {
  using S = scalar_of<V>;
  constexpr int W = V::kWidth;
  const int64_t L = s.L, E = s.E, N = s.N;
  const int64_t LNW = L * N * W;
  S* const hs = ws;              // h after step k
  S* const decay = hs + LNW;     // exp(dt · A) of step k
  S* const dB_lanes = decay + LNW;
  S* const dC_lanes = dB_lanes + LNW;
  S* const dts = dC_lanes + LNW;  // dt of step k (after softplus)
  S* const pre = dts + L * W;     // delta + delta_bias of step k
  S* const outs = pre + L * W;    // o of step k (Σ h·C + D·u, before the gate)
  S* const adj = outs + L * W;    // ∂loss/∂h, running backwards
  S* const Ablk = adj + N * W;    // A of the channel block, [n][lane]
  for (int64_t i = 0; i < LNW; ++i) dB_lanes[i] = dC_lanes[i] = 0;

  const V one = V::set1(1), vzero = V::zero(), out_scale = V::set1(s.out_scale);
  const bool need_o = s.z && g.dz;
  auto row_of = [&](int64_t k) { return b * L + (s.reverse ? L - 1 - k : k); };

  for (int64_t e0 = 0; e0 < E; e0 += W) {
    const int w = int(E - e0 < W ? E - e0 : W);
    for (int64_t n = 0; n < N; ++n)
      for (int l = 0; l < W; ++l) Ablk[n * W + l] = l < w ? s.A[(e0 + l) * N + n] : S(0);
    const V Dv = s.D ? load_n<V>(s.D + e0, w) : vzero;
    const V bias = s.delta_bias ? load_n<V>(s.delta_bias + e0, w) : vzero;

    // Forward: states, decays and outputs of every step.
    for (int64_t k = 0; k < L; ++k) {
      const int64_t row = row_of(k);
      const V u = load_n<V>(s.u + row * s.ldu + e0, w);
      const V x = load_n<V>(s.delta + row * s.lddelta + e0, w) + bias;
      const V dt = s.delta_softplus ? v_softplus(x) : x;
      x.store(pre + k * W);
      dt.store(dts + k * W);
      const V dtu = dt * u;
      const S* Brow = s.Bm + row * s.ldB;
      const S* Crow = s.Cm + row * s.ldC;
      S* hk = hs + k * N * W;
      S* dk = decay + k * N * W;
      V o0 = Dv * u, o1 = vzero, o2 = vzero, o3 = vzero;
      auto state = [&](int64_t n, V& o) {
        const V a = v_decay(dt * V::load(Ablk + n * W));
        V h = dtu * V::set1(Brow[n]);
        if (k > 0) h = fma(a, V::load(hk - N * W + n * W), h);
        a.store(dk + n * W);
        h.store(hk + n * W);
        if (need_o) o = fma(h, V::set1(Crow[n]), o);
      };
      int64_t n = 0;
      for (; n + kAcc <= N; n += kAcc) {
        state(n, o0);
        state(n + 1, o1);
        state(n + 2, o2);
        state(n + 3, o3);
      }
      for (; n < N; ++n) state(n, o0);
      if (need_o) ((o0 + o1) + (o2 + o3)).store(outs + k * W);
    }

    // Backward in time: adj_k = dout_k·C_k + decay_{k+1}·adj_{k+1}.
    for (int64_t n = 0; n < N * W; ++n) adj[n] = 0;
    for (int64_t k = L - 1; k >= 0; --k) {
      const int64_t row = row_of(k);
      const V u = load_n<V>(s.u + row * s.ldu + e0, w);
      const V dt = V::load(dts + k * W);
      const V dtu = dt * u;
      const V dy = load_n<V>(g.dy + row * g.lddy + e0, w) * out_scale;
      const S* Brow = s.Bm + row * s.ldB;
      const S* Crow = s.Cm + row * s.ldC;
      const S* hk = hs + k * N * W;
      // The next channel block (or the next batch item's first) reads and writes the
      // neighbouring lines of these rows: fetch them while this block computes; strided rows
      // defeat the hardware prefetchers.
      const bool last_block = e0 + W >= E;
      if (!last_block || b + 1 < s.B) {
        const int64_t pr = last_block ? row + L : row, pc = last_block ? 0 : e0 + W;
        __builtin_prefetch(s.u + pr * s.ldu + pc);
        __builtin_prefetch(s.delta + pr * s.lddelta + pc);
        __builtin_prefetch(g.dy + pr * g.lddy + pc);
        if (s.z) __builtin_prefetch(s.z + pr * s.ldz + pc);
        if (g.du) __builtin_prefetch(g.du + pr * g.lddu + pc, 1);
        if (g.ddelta) __builtin_prefetch(g.ddelta + pr * g.ldddelta + pc, 1);
        if (need_o) __builtin_prefetch(g.dz + pr * g.lddz + pc, 1);
      }
      V dout = dy;  // ∂loss/∂o
      if (s.z) {
        const V zz = load_n<V>(s.z + row * s.ldz + e0, w);
        const V sig = v_sigmoid(zz);
        if (need_o) {
          const V dsilu = sig * (one + zz * (one - sig));
          add_n(dy * V::load(outs + k * W) * dsilu, g.dz + row * g.lddz + e0, w);
        }
        dout = dy * (zz * sig);
      }
      // With t_n = adj_n·A_n: du = dt·Σ adj·B + D·dout, and since
      // ∂h_k/∂dt = A·decay_k·h_{k−1} + B·u = A·(h_k − dt·u·B) + B·u,
      // ∂loss/∂dt = Σ t·h − dt·u·Σ t·B + u·Σ adj·B. kAcc accumulators of each sum.
      V sb0 = vzero, sb1 = vzero, sb2 = vzero, sb3 = vzero;  // Σ adj·B
      V th0 = vzero, th1 = vzero, th2 = vzero, th3 = vzero;  // Σ t·h
      V tb0 = vzero, tb1 = vzero, tb2 = vzero, tb3 = vzero;  // Σ t·B
      const S* dnext = k + 1 < L ? decay + (k + 1) * N * W : nullptr;
      S* dBk = dB_lanes + k * N * W;
      S* dCk = dC_lanes + k * N * W;
      auto adjoint = [&](int64_t n, V& sb, V& th, V& tb) {
        const V Bn = V::set1(Brow[n]);
        const V hn = V::load(hk + n * W);
        V a = V::load(adj + n * W);
        if (dnext) a = a * V::load(dnext + n * W);
        a = fma(dout, V::set1(Crow[n]), a);
        a.store(adj + n * W);
        fma(dout, hn, V::load(dCk + n * W)).store(dCk + n * W);
        fma(a, dtu, V::load(dBk + n * W)).store(dBk + n * W);
        sb = fma(a, Bn, sb);
        const V t = a * V::load(Ablk + n * W);
        th = fma(t, hn, th);
        tb = fma(t, Bn, tb);
      };
      int64_t n = 0;
      for (; n + kAcc <= N; n += kAcc) {
        adjoint(n, sb0, th0, tb0);
        adjoint(n + 1, sb1, th1, tb1);
        adjoint(n + 2, sb2, th2, tb2);
        adjoint(n + 3, sb3, th3, tb3);
      }
      for (; n < N; ++n) adjoint(n, sb0, th0, tb0);
      const V sb = (sb0 + sb1) + (sb2 + sb3);
      const V du_sum = fma(dt, sb, Dv * dout);
      V ddt = fma(u, sb, fma(vzero - dtu, (tb0 + tb1) + (tb2 + tb3), (th0 + th1) + (th2 + th3)));
      if (g.du) add_n(du_sum, g.du + row * g.lddu + e0, w);
      if (g.ddelta) {
        if (s.delta_softplus) {
          const V x = V::load(pre + k * W);
          ddt = ddt * select_gt(x, V::set1(20), one, v_sigmoid(x));
        }
        add_n(ddt, g.ddelta + row * g.ldddelta + e0, w);
      }
    }
  }
  for (int64_t k = 0; k < L; ++k) {
    const int64_t row = row_of(k);
    for (int64_t n = 0; n < N; ++n) {
      if (g.dB) g.dB[row * g.lddB + n] += V::load(dB_lanes + (k * N + n) * W).reduce_add();
      if (g.dC) g.dC[row * g.lddC + n] += V::load(dC_lanes + (k * N + n) * W).reduce_add();
    }
  }
}

// ---- Causal conv1d (+ SiLU) backward, one batch item ----
// Tap i (weight[e, i]) reads x[t + dir·(K−1−i)], dir = −1 forward, +1 reverse; so x[t'] feeds
// out[t' − dir·(K−1−i)] through tap i.
template <class V>
void conv_backward_item(int64_t b, int64_t L, int64_t E, int64_t K, const scalar_of<V>* x, int64_t ldx,
                        const scalar_of<V>* weight_t, const scalar_of<V>* bias, bool reverse,
                        bool apply_silu, const scalar_of<V>* dout, int64_t lddout, scalar_of<V>* dx,
                        int64_t lddx, scalar_of<V>* dpre) {
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
      add_n(acc, dx + (base + t) * lddx + e0, w);
    }
  }
}

// ---- Activation fake quantizer, rows [r0, r1) ----
template <typename S>
inline int64_t act_param_index(const ActQuant<S>& q, int64_t r) {
  const int64_t p = r % q.period;
  return q.reverse_period ? q.period - 1 - p : p;
}

template <class V>
void act_quant_forward_rows(const ActQuant<scalar_of<V>>& q, const scalar_of<V>* inv_smooth,
                            const scalar_of<V>* inv_scale, int64_t r0, int64_t r1, scalar_of<V>* out,
                            int64_t ldo) {
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
    }
  }
}

template <class V>
void act_quant_backward_rows(const ActQuant<scalar_of<V>>& q, const scalar_of<V>* inv_smooth,
                             const scalar_of<V>* inv_scale, const scalar_of<V>* dout, int64_t lddout,
                             int64_t r0, int64_t r1, scalar_of<V>* dx, int64_t lddx,
                             scalar_of<V>* dsmooth_part, double* dscale_rows) {
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
      if (dx) add_n(ga * ism, dx + r * lddx + j0, w);
      if (dsmooth_part) add_n(vzero - ga * a * ism, dsmooth_part + j0, w);
    }
    if (dscale_rows) dscale_rows[r - r0] = double(ds.reduce_add());
  }
}

}  // namespace
}  // namespace ptq4vm::cpu
