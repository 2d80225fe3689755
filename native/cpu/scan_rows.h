// Inner loops of the selective scans (selective_scan_f32, selective_scan_bidir_f32) against
// VecF (see vector_kernels.h). Lanes run over channels e (contiguous in u, delta, z, y at a
// fixed token). Tokens go in short chunks: a first pass computes the per-token, per-channel
// terms (dt = softplus(Δ + bias), dt·u, D·u, SiLU(z)), a second pass runs the recurrence, whose
// only per-state work is exp2(dt · A·log2 e) and three multiply-adds. The state h[n] of a
// channel block lives in registers when the state size is a compile-time constant (NS > 0),
// else in `state` scratch. Fast (MathMode::fast) swaps in the reduced-precision functions of
// simd.h for softplus, SiLU and the decays; everything else is shared.
#pragma once
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "ptq4vm/scan.h"
#include "ptq4vm/scan_bidir.h"
#include "quantize_rows.h"
#include "simd.h"

namespace ptq4vm::cpu {
namespace {

// Tokens per pre-pass. Measured on Zen 4: 8–16 beat 32 and 64; a short pre-pass lets the
// out-of-order core overlap it with the neighbouring recurrence steps.
constexpr int kScanChunk = 8;

// Where the build has AVX-512 VNNI (scan_vnni.cpp), dt_proj's products run on vpdpbusd: four
// u8·s8 products per lane and instruction instead of one float multiply-add each, which the
// scan, bound by its multiply-add pipes, feels (Vim-Ti: ~5 % of the scan).
#if defined(__AVX512VNNI__)
#define PTQ4VM_SCAN_VNNI_DT_PROJ 1
#else
#define PTQ4VM_SCAN_VNNI_DT_PROJ 0
#endif

// dt_proj computed in the scan (ScanDtProjInt8) for one channel block: the block's weights as
// floats, wf[r·W + lane] = qw[e0 + lane, r], and its output scales. With VNNI, wf holds instead
// the weights as int8 quadruples, lane-major per group of four r (zero past R), and w_sum the
// lanes' Σ_r qw, for the zero-point correction.
struct BlockDtProj {
  const ScanDtProjInt8* p = nullptr;   // INT8 dt_proj, or
  const ScanDtProjF32* pf = nullptr;   // FP32 dt_proj (wf then always floats); both null: Δ read from memory
  const float* wf = nullptr;
  const float* codes = nullptr;       // [B·L, R]: q − zero of every row, as floats (not with VNNI)
  VecF w_sum = VecF::zero();
  VecF w_scale = VecF::zero();
  int64_t row0 = 0;                   // b·L: token t is code row row0 + t
  int64_t row0_period = 0;            // row0 % period
};

// One direction's operands for the channel block [e0, e0 + lanes) of one batch item.
struct ScanBlockOperands {
  const float* u;  int64_t ldu;
  const float* delta;  int64_t lddelta;
  const float* Bm;  int64_t ldB;
  const float* Cm;  int64_t ldC;
  const float* a2;  int64_t a2_ld;  // A·log2 e transposed [N, ·], at e0
  VecF delta_bias, d_skip;
  BlockDtProj dt_proj;
};

// i % period for i = (row0 % period) + t, t < L: no division in the usual cases (period L,
// whose rows b·L + t give t, and period 1).
inline int64_t period_index(int64_t i, int64_t period) { return i < period ? i : period == 1 ? 0 : i % period; }

// Fills wf for channel block [e0, e0 + lanes) (lanes past E are 0): [R, W] floats, or with
// VNNI ⌈R/4⌉ groups of W int8 quadruples (R·W floats' room suffices), then returns Σ_r qw.
inline VecF block_dt_proj_weights(const ScanDtProjInt8& p, int64_t e0, int lanes, float* wf) {
  constexpr int W = VecF::kWidth;
#if PTQ4VM_SCAN_VNNI_DT_PROJ
  auto* packed = reinterpret_cast<int8_t*>(wf);
  alignas(64) float sums[W];
  for (int l = 0; l < W; ++l) {
    int32_t sum = 0;
    for (int64_t r = 0; r < (p.R + 3) / 4 * 4; ++r) {
      const int8_t w = l < lanes && r < p.R ? p.qw[(e0 + l) * p.R + r] : 0;
      packed[(r / 4) * W * 4 + l * 4 + r % 4] = w;
      sum += w;
    }
    sums[l] = float(sum);
  }
  return VecF::load(sums);
#else
  for (int64_t r = 0; r < p.R; ++r)
    for (int l = 0; l < W; ++l) wf[r * W + l] = l < lanes ? float(p.qw[(e0 + l) * p.R + r]) : 0.0f;
  return VecF::zero();
#endif
}

// Fills wf for an FP32 dt_proj: [R, W] floats, wf[r·W + lane] = w[e0 + lane, r], 0 past E.
inline void block_dt_proj_weights_f32(const ScanDtProjF32& p, int64_t e0, int lanes, float* wf) {
  constexpr int W = VecF::kWidth;
  for (int64_t r = 0; r < p.R; ++r)
    for (int l = 0; l < W; ++l) wf[r * W + l] = l < lanes ? p.w[(e0 + l) * p.R + r] : 0.0f;
}

// The dt_proj (INT8 p or FP32 pf, or neither: Δ read from memory) of channel block
// [e0, e0 + lanes) of batch item b: its weights into wf (R · W floats), codes (the INT8 input
// codes minus zero points as floats, not read with VNNI) and the block's first row b·L.
template <typename Load>
BlockDtProj block_dt_proj(const ScanDtProjInt8* p, const ScanDtProjF32* pf, int64_t b, int64_t L, int64_t e0,
                          int lanes, float* wf, const float* codes, Load&& load) {
  BlockDtProj d;
  if (p) {
    d.w_sum = block_dt_proj_weights(*p, e0, lanes, wf);
    d.p = p;
    d.wf = wf;
    d.codes = codes;
    d.w_scale = load(p->w_scale + e0);
    d.row0 = b * L;
    d.row0_period = b * L % p->period;
  } else if (pf) {
    block_dt_proj_weights_f32(*pf, e0, lanes, wf);
    d.pf = pf;
    d.wf = wf;
    d.row0 = b * L;
  }
  return d;
}

// Σ_r x[r]·wf[r·W + lane] over a row x of R floats and the [R, W] weights, two partial sums.
inline VecF dt_proj_dot(const float* x, const float* wf, int64_t R) {
  constexpr int W = VecF::kWidth;
  VecF acc0 = VecF::zero(), acc1 = VecF::zero();
  int64_t r = 0;
  for (; r + 1 < R; r += 2) {
    acc0 = fma(VecF::set1(x[r]), VecF::load(wf + r * W), acc0);
    acc1 = fma(VecF::set1(x[r + 1]), VecF::load(wf + (r + 1) * W), acc1);
  }
  if (r < R) acc0 = fma(VecF::set1(x[r]), VecF::load(wf + r * W), acc0);
  return acc0 + acc1;
}

// Δ of token t for an FP32 dt_proj: Σ_r x[row, r]·w[e, r].
inline VecF dt_proj_row_f32(const BlockDtProj& d, int64_t t) {
  return dt_proj_dot(d.pf->x + (d.row0 + t) * d.pf->ldx, d.wf, d.pf->R);
}

// Δ of token t from its dt_proj input codes, bit for bit what gemm_u8s8_f32 writes: the
// integer sums Σ_r (q − zero)·qw are exact in float (below 2^24), then the same epilogue.
inline VecF dt_proj_row(const BlockDtProj& d, int64_t t) {
  const ScanDtProjInt8& p = *d.p;
#if PTQ4VM_SCAN_VNNI_DT_PROJ
  // Σ_r q·qw exactly in int32, then − zero·Σ_r qw: every term an integer below 2^24, so the
  // float result equals the float sums of (q − zero)·qw below, and gemm_u8s8_f32's.
  const uint8_t* q = p.q + (d.row0 + t) * p.ldq;
  const auto* packed = reinterpret_cast<const __m512i*>(d.wf);
  __m512i acc = _mm512_setzero_si512();
  int64_t g = 0;
  for (; 4 * g + 4 <= p.R; ++g) {
    int32_t four;
    std::memcpy(&four, q + 4 * g, 4);
    acc = _mm512_dpbusd_epi32(acc, _mm512_set1_epi32(four), _mm512_loadu_si512(packed + g));
  }
  if (4 * g < p.R) {
    int32_t four = 0;
    std::memcpy(&four, q + 4 * g, size_t(p.R - 4 * g));  // the weights past R are 0
    acc = _mm512_dpbusd_epi32(acc, _mm512_set1_epi32(four), _mm512_loadu_si512(packed + g));
  }
  const int64_t per = period_index(d.row0_period + t, p.period);
  const VecF sum = fma(VecF::set1(-float(p.a_zero[per])), d.w_sum, VecF(_mm512_cvtepi32_ps(acc)));
  return fma(sum * VecF::set1(p.a_scale[per]), d.w_scale, VecF::zero());
#else
  // The products and sums of integers below 2^24 are exact in any order.
  const VecF sum = dt_proj_dot(d.codes + (d.row0 + t) * p.R, d.wf, p.R);
  const int64_t per = period_index(d.row0_period + t, p.period);
  return fma(sum * VecF::set1(p.a_scale[per]), d.w_scale, VecF::zero());
#endif
}

// Rows the sink writes (token t at base + t · stride bytes), prefetched a chunk ahead; base
// null for none.
struct OutputRows {
  const char* base = nullptr;
  int64_t stride = 0;
};

// Runs one direction over the L tokens and calls sink(t, o, gate) with the ungated output
// o = Σ_n h[n]·C[n] + D·u of each token (gate = SiLU(z) of the token if z, else unused).
template <int NS, bool Fast, typename Sink>
inline void scan_direction(const ScanBlockOperands& d, int64_t L, int64_t N, bool reverse, bool softplus,
                           int lanes, const float* z, int64_t ldz, float* state, OutputRows out0,
                           OutputRows out1, Sink&& sink) {
  constexpr int W = VecF::kWidth;
  const bool full = lanes == W;
  auto load = [&](const float* p) { return full ? VecF::load(p) : VecF::load_partial(p, lanes); };
  alignas(64) float dt_buf[kScanChunk * W], dtu_buf[kScanChunk * W], skip_buf[kScanChunk * W];
  alignas(64) float gate_buf[kScanChunk * W], part_buf[kScanChunk * W];

  // With NS known, the state lives in h_blk between chunks and the block's A·log2 e rows are
  // copied next to each other so the loop addresses them from one base register.
  alignas(64) float h_blk[NS > 0 ? NS * W : 1];
  alignas(64) float a2_blk[NS > 0 ? NS * W : 1];
  // dt_max: while every dt of a chunk lies in [0, dt_max] = [0, 125 / max_n |A·log2 e|], every
  // exponent dt·A·log2 e lies in [−125, 125] and the decays take exp2_in_range_f32 (the usual
  // case: Mamba's dt is small); other chunks clamp the exponents first.
  VecF a2_abs_max = VecF::zero();
  for (int64_t n = 0; n < N; ++n) {
    const VecF a2 = VecF::load(d.a2 + n * d.a2_ld);
    a2_abs_max = max(a2_abs_max, abs(a2));
    if constexpr (NS > 0) {
      a2.store(a2_blk + n * W);
      VecF::zero().store(h_blk + n * W);
    } else {
      VecF::zero().store(state + n * W);
    }
  }
  const VecF dt_max = VecF::set1(125.0f) / a2_abs_max;  // inf where A is 0

  for (int64_t s0 = 0; s0 < L; s0 += kScanChunk) {
    const int chunk = L - s0 < kScanChunk ? int(L - s0) : kScanChunk;
    // Pass 1: token terms of the chunk, in scan order, as three short loops rather than one
    // long one: the out-of-order core then overlaps more tokens' dependency chains (dt_proj's
    // multiply-adds, softplus), which a single loop body of ~100 instructions per token
    // serialised (Zen 4: 5 % of the whole scan).
    auto token = [&](int i) { return reverse ? L - 1 - (s0 + i) : s0 + i; };
    if (d.dt_proj.pf) {
      for (int i = 0; i < chunk; ++i) (dt_proj_row_f32(d.dt_proj, token(i)) + d.delta_bias).store(dt_buf + i * W);
    } else if (d.dt_proj.p) {
      for (int i = 0; i < chunk; ++i) (dt_proj_row(d.dt_proj, token(i)) + d.delta_bias).store(dt_buf + i * W);
    } else {
      for (int i = 0; i < chunk; ++i) (load(d.delta + token(i) * d.lddelta) + d.delta_bias).store(dt_buf + i * W);
    }
    VecF dt_lo = VecF::zero(), dt_hi = VecF::zero(), dt_nan = VecF::zero();
    auto token_terms = [&](auto with_softplus) {
      for (int i = 0; i < chunk; ++i) {
        const VecF uv = load(d.u + token(i) * d.ldu);
        VecF dt = VecF::load(dt_buf + i * W);
        // softplus is ≥ 0 (or NaN, which dt_nan catches): only a raw Δ needs the lower bound.
        if constexpr (decltype(with_softplus)::value) dt = Fast ? softplus_fast_f32(dt) : softplus_f32(dt);
        else dt_lo = min(dt_lo, dt);
        dt_hi = max(dt_hi, dt);
        dt_nan = fma(dt, VecF::zero(), dt_nan);  // NaN from here on if dt is NaN or infinite
        dt.store(dt_buf + i * W);
        (dt * uv).store(dtu_buf + i * W);
        (d.d_skip * uv).store(skip_buf + i * W);
      }
    };
    if (softplus) token_terms(std::true_type{});
    else token_terms(std::false_type{});
    if (z) {
      for (int i = 0; i < chunk; ++i) {
        const VecF zv = load(z + token(i) * ldz);
        (Fast ? silu_fast_f32(zv) : silu_f32(zv)).store(gate_buf + i * W);
      }
    }
    // (min/max may drop a NaN operand, hence dt_nan.)
    const bool in_range = all_le(VecF::zero(), dt_lo) && all_le(dt_hi, dt_max) && all_le(dt_nan, VecF::zero());
    // The next chunk's rows of u, Δ, z and the outputs (a cache line or less each per token,
    // a row stride apart: the hardware prefetchers miss them) are fetched while this chunk's
    // recurrence runs.
    for (int64_t i = 0, s1 = s0 + kScanChunk; i < kScanChunk && s1 + i < L; ++i) {
      const int64_t t = reverse ? L - 1 - (s1 + i) : s1 + i;
      __builtin_prefetch(d.u + t * d.ldu);
      if (!d.dt_proj.p && !d.dt_proj.pf) __builtin_prefetch(d.delta + t * d.lddelta);
      if (z) __builtin_prefetch(z + t * ldz);
      if (out0.base) __builtin_prefetch(out0.base + t * out0.stride, 1);
      if (out1.base) __builtin_prefetch(out1.base + t * out1.stride, 1);
    }
    // Pass 2: the recurrence.
    auto decay_of = [](VecF x, auto checked) {
      if constexpr (decltype(checked)::value) x = min(VecF::set1(125.0f), max(VecF::set1(-125.0f), x));
      return Fast ? exp2_fast_in_range_f32(x) : exp2_in_range_f32(x);
    };
    auto recurrence = [&](auto checked) {
      if constexpr (NS > 0) {
        // Half the states per sweep over the chunk: NS/2 states, dt, dtu, the partial sums and
        // the exponential's constants fit in the 32 vector registers, where all NS states at
        // once would spill and put a store-to-load round trip on every state's recurrence.
        // The first half's partial outputs wait in part_buf.
        constexpr int H = NS / 2;
        for (int half = 0; half < 2; ++half) {
          VecF h[H];
          for (int n = 0; n < H; ++n) h[n] = VecF::load(h_blk + (half * H + n) * W);
          const float* a2h = a2_blk + half * H * W;
          for (int i = 0; i < chunk; ++i) {
            const int64_t t = token(i);
            const VecF dt = VecF::load(dt_buf + i * W), dtu = VecF::load(dtu_buf + i * W);
            const float* Bt = d.Bm + t * d.ldB + half * H;
            const float* Ct = d.Cm + t * d.ldC + half * H;
            VecF acc0 = VecF::load((half == 0 ? skip_buf : part_buf) + i * W), acc1 = VecF::zero();
#pragma GCC unroll 16
            for (int n = 0; n < H; ++n) {
              const VecF decay = decay_of(dt * VecF::load(a2h + n * W), checked);
              h[n] = fma(decay, h[n], dtu * VecF::set1(Bt[n]));
              if (n % 2 == 0) acc0 = fma(h[n], VecF::set1(Ct[n]), acc0);
              else acc1 = fma(h[n], VecF::set1(Ct[n]), acc1);
            }
            if (half == 0) (acc0 + acc1).store(part_buf + i * W);
            else sink(t, acc0 + acc1, gate_buf + i * W);
          }
          for (int n = 0; n < H; ++n) h[n].store(h_blk + (half * H + n) * W);
        }
      } else {
        for (int i = 0; i < chunk; ++i) {
          const int64_t t = token(i);
          const VecF dt = VecF::load(dt_buf + i * W), dtu = VecF::load(dtu_buf + i * W);
          const float* Bt = d.Bm + t * d.ldB;
          const float* Ct = d.Cm + t * d.ldC;
          // Two partial sums halve the dependent chain of multiply-adds over the states.
          VecF acc0 = VecF::load(skip_buf + i * W), acc1 = VecF::zero();
          for (int64_t n = 0; n < N; ++n) {
            const VecF decay = decay_of(dt * VecF::load(d.a2 + n * d.a2_ld), checked);
            const VecF h = fma(decay, VecF::load(state + n * W), dtu * VecF::set1(Bt[n]));
            h.store(state + n * W);
            if (n % 2 == 0) acc0 = fma(h, VecF::set1(Ct[n]), acc0);
            else acc1 = fma(h, VecF::set1(Ct[n]), acc1);
          }
          sink(t, acc0 + acc1, gate_buf + i * W);
        }
      }
    };
    if (in_range) recurrence(std::false_type{});
    else recurrence(std::true_type{});
  }
}

template <typename Load>
ScanBlockOperands block_operands(const ScanArgs& a, const float* a2t, int64_t a2t_ld, int64_t b, int64_t e0,
                                 Load&& load) {
  const bool delta_computed = a.dt_proj || a.dt_proj_f32;
  return {a.u + b * a.L * a.ldu + e0, a.ldu, delta_computed ? nullptr : a.delta + b * a.L * a.lddelta + e0, a.lddelta,
          a.Bm + b * a.L * a.ldB, a.ldB, a.Cm + b * a.L * a.ldC, a.ldC, a2t + e0, a2t_ld,
          a.delta_bias ? load(a.delta_bias + e0) : VecF::zero(), a.D ? load(a.D + e0) : VecF::zero(), BlockDtProj{}};
}

// dt_wf: room for the block's dt_proj weights (R · W floats) when a has dt_proj; dt_codes: its
// codes table (see BlockDtProj).
template <int NS, bool Fast>
void selective_scan_block_impl(const ScanArgs& a, const float* a2t, int64_t a2t_ld, int64_t b,
                               int64_t e0, float* state, float* dt_wf, const float* dt_codes) {
  constexpr int W = VecF::kWidth;
  const int lanes = a.E - e0 < W ? int(a.E - e0) : W;
  const bool full = lanes == W;
  auto load = [&](const float* p) { return full ? VecF::load(p) : VecF::load_partial(p, lanes); };
  ScanBlockOperands d = block_operands(a, a2t, a2t_ld, b, e0, load);
  d.dt_proj = block_dt_proj(a.dt_proj, a.dt_proj_f32, b, a.L, e0, lanes, dt_wf, dt_codes, load);
  const VecF out_scale = VecF::set1(a.out_scale);
  float* y = a.y + b * a.L * a.ldy + e0;
  const float* z = a.z ? a.z + b * a.L * a.ldz + e0 : nullptr;
  const OutputRows y_rows{reinterpret_cast<const char*>(y), a.ldy * int64_t(sizeof(float))};
  scan_direction<NS, Fast>(d, a.L, a.N, a.reverse, a.delta_softplus, lanes, z, a.ldz, state, y_rows, {},
                            [&](int64_t t, VecF o, const float* gate) {
                              if (z) o = o * VecF::load(gate);
                              o = o * out_scale;
                              float* yt = y + t * a.ldy;
                              if (a.accumulate) o = o + load(yt);
                              if (full) o.store(yt);
                              else o.store_partial(yt, lanes);
                            });
}

// Both directions of channel block [e0, e0 + lanes) of batch item b: the forward outputs go
// to fwd_buf [L, W], the backward pass combines, gates and writes y and/or q.
// dt_wf: room for both directions' dt_proj weights of the block (2 · R · W floats) when a
// direction has dt_proj; dt_codes[k]: that direction's codes table (see BlockDtProj).
template <int NS, bool Fast>
void selective_scan_bidir_block_impl(const BiScanArgs& a, const float* const a2t[2], int64_t a2t_ld,
                                     int64_t b, int64_t e0, float* fwd_buf, float* state, float* dt_wf,
                                     const float* const dt_codes[2]) {
  constexpr int W = VecF::kWidth;
  const int lanes = a.E - e0 < W ? int(a.E - e0) : W;
  const bool full = lanes == W;
  auto load = [&](const float* p) { return full ? VecF::load(p) : VecF::load_partial(p, lanes); };
  ScanBlockOperands d[2];
  float* wf = dt_wf;  // the directions' dt_proj weights, one after the other
  for (int k = 0; k < 2; ++k) {
    const ScanDirectionArgs& s = a.dir[k];
    const BlockDtProj dtp = block_dt_proj(s.dt_proj, s.dt_proj_f32, b, a.L, e0, lanes, wf, dt_codes[k], load);
    if (s.dt_proj) wf += s.dt_proj->R * W;
    else if (s.dt_proj_f32) wf += s.dt_proj_f32->R * W;
    const bool delta_computed = s.dt_proj || s.dt_proj_f32;
    d[k] = {s.u + b * a.L * s.ldu + e0, s.ldu, delta_computed ? nullptr : s.delta + b * a.L * s.lddelta + e0, s.lddelta,
            s.Bm + b * a.L * s.ldB, s.ldB, s.Cm + b * a.L * s.ldC, s.ldC, a2t[k] + e0, a2t_ld,
            s.delta_bias ? load(s.delta_bias + e0) : VecF::zero(), s.D ? load(s.D + e0) : VecF::zero(), dtp};
  }
  scan_direction<NS, Fast>(d[0], a.L, a.N, false, a.delta_softplus, lanes, nullptr, 0, state, {}, {},
                           [&](int64_t t, VecF o, const float*) { o.store(fwd_buf + t * W); });

  const float* z = a.z + b * a.L * a.ldz + e0;
  float* y = a.y ? a.y + b * a.L * a.ldy + e0 : nullptr;
  const TokenQuantizer& qz = a.quant;
  const VecF inv_smooth = qz.inv_smooth ? load(qz.inv_smooth + e0) : VecF::set1(1.0f);
  const VecF qmax = VecF::set1(float(qz.qmax));
  const VecF half = VecF::set1(0.5f);
  const int64_t q_row0_period = b * a.L % qz.period;
  const OutputRows y_rows{reinterpret_cast<const char*>(y), a.ldy * int64_t(sizeof(float))};
  const OutputRows q_rows{a.q ? reinterpret_cast<const char*>(a.q + b * a.L * a.ldq + e0) : nullptr, a.ldq};
  scan_direction<NS, Fast>(d[1], a.L, a.N, true, a.delta_softplus, lanes, z, a.ldz, state, y ? y_rows : OutputRows{},
                           q_rows, [&](int64_t t, VecF o, const float* gate) {
                             const VecF yc = ((VecF::load(fwd_buf + t * W) + o) * half) * VecF::load(gate);
                             if (y) {
                               if (full) yc.store(y + t * a.ldy);
                               else yc.store_partial(y + t * a.ldy, lanes);
                             }
                             if (a.q) {
                               const int64_t row = b * a.L + t;
                               const int64_t p = period_index(q_row0_period + t, qz.period);
                               const VecF qv = quantize_lanes(yc, inv_smooth, VecF::set1(qz.inv_scale[p]),
                                                              VecF::set1(float(qz.zero[p])), qmax);
                               store_u8(a.q + row * a.ldq + e0, qv, lanes);
                             }
                           });
}

}  // namespace
}  // namespace ptq4vm::cpu
