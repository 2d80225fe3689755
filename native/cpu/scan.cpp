// selective_scan_f32 / selective_scan_bidir_f32 drivers: A·log2(e) transposed once to [N, E],
// (batch, channel-block) tasks split across threads, per-ISA block loops (scan_rows.h);
// scalar references.
#include "ptq4vm/scan.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "ptq4vm/gemm_int8.h"
#include "ptq4vm/quantize.h"
#include "ptq4vm/runtime.h"
#include "ptq4vm/scan_bidir.h"
#include "scratch.h"
#include "vector_kernels.h"

namespace ptq4vm {

namespace {
constexpr double kLog2eD = 1.4426950408889634074;
constexpr int64_t kMaxLanes = 16;  // the widest VecF; rows of a2t are padded to a multiple of it


// A·log2(e) transposed to [N, a2t_ld], zero-padded to a multiple of the widest vector.
void fill_a2t(const float* A, int64_t E, int64_t N, int64_t a2t_ld, float* a2t) {
  for (int64_t n = 0; n < N; ++n) {
    for (int64_t e = 0; e < E; ++e) a2t[n * a2t_ld + e] = float(double(A[e * N + n]) * kLog2eD);
    for (int64_t e = E; e < a2t_ld; ++e) a2t[n * a2t_ld + e] = 0.0f;
  }
}

int lanes_of(int isa) {
  return cpu::pick_isa(isa, cpu::scalar::vector_lanes, cpu::avx2::vector_lanes, cpu::avx512::vector_lanes)();
}

// Floats of the codes table of an INT8 dt_proj over `rows` rows (none with VNNI, which reads
// the codes themselves), a multiple of 16 so that what follows it stays aligned.
int64_t dt_codes_floats(const ScanDtProjInt8* p, int64_t rows, bool vnni) {
  return p && !vnni ? (rows * p->R + 15) / 16 * 16 : 0;
}

// dt_proj's codes minus their zero points as floats, [rows, R]: converted once for all channel
// blocks, which each read every row.
void fill_dt_codes(const ScanDtProjInt8& p, int64_t rows, float* dst) {
  for (int64_t r = 0; r < rows; ++r) {
    const float zero = float(p.a_zero[r % p.period]);
    for (int64_t j = 0; j < p.R; ++j) dst[r * p.R + j] = float(p.q[r * p.ldq + j]) - zero;
  }
}

int64_t dt_rank_of(const ScanDtProjInt8* p, const ScanDtProjF32* pf) { return p ? p->R : pf ? pf->R : 0; }

// Δ [rows, E] of a dt_proj computed in the scan, as the references compute it: INT8 as the
// INT8 GEMM's reference, FP32 in double.
std::vector<float> reference_delta(const ScanDtProjInt8* p, const ScanDtProjF32* pf, int64_t rows, int64_t E) {
  std::vector<float> delta(size_t(std::max<int64_t>(rows * E, 1)), 0.0f);
  if (p) {
    Int8Epilogue ep;
    ep.period = p->period, ep.a_scale = p->a_scale, ep.a_zero = p->a_zero, ep.w_scale = p->w_scale;
    gemm_u8s8_f32_ref(rows, E, p->R, p->q, p->ldq, p->qw, ep, delta.data(), E);
  } else if (pf) {
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t e = 0; e < E; ++e) {
        double acc = 0;
        for (int64_t j = 0; j < pf->R; ++j) acc += double(pf->x[r * pf->ldx + j]) * pf->w[e * pf->R + j];
        delta[size_t(r * E + e)] = float(acc);
      }
  }
  return delta;
}

}  // namespace

void selective_scan_f32(const ScanArgs& a) {
  if (a.B <= 0 || a.L <= 0 || a.E <= 0) return;
  const int isa = int(active_isa());
  const int lanes = lanes_of(isa);
  const bool vnni = isa >= int(Isa::Avx512Vnni);
  const auto block_fn = vnni ? cpu::vnni::selective_scan_block
                             : cpu::pick_isa(isa, cpu::scalar::selective_scan_block,
                                             cpu::avx2::selective_scan_block,
                                             cpu::avx512::selective_scan_block);
  const int64_t a2t_ld = (a.E + kMaxLanes - 1) / kMaxLanes * kMaxLanes;
  const int64_t N = std::max<int64_t>(a.N, 0);
  const int64_t rows = a.B * a.L;
  const int64_t dt_rank = dt_rank_of(a.dt_proj, a.dt_proj_f32);
  const int64_t codes_floats = dt_codes_floats(a.dt_proj, rows, vnni);
  // One buffer: A·log2 e, then dt_proj's codes table.
  float* a2t = cpu::thread_scratch_as<float>(cpu::ScratchSlot::KernelLocal, size_t(N * a2t_ld + codes_floats + 1));
  fill_a2t(a.A, a.E, N, a2t_ld, a2t);
  float* dt_codes = a2t + N * a2t_ld;
  if (codes_floats) fill_dt_codes(*a.dt_proj, rows, dt_codes);
  const int64_t e_blocks = (a.E + lanes - 1) / lanes;
  parallel_for(a.B * e_blocks, 1, [&](int64_t i0, int64_t i1) {
    // One buffer: the state (N · lanes), then the dt_proj weights (R · lanes), 64-byte aligned.
    const int64_t state_floats = (N * lanes + 15) / 16 * 16;
    float* ws = cpu::thread_scratch_as<float>(cpu::ScratchSlot::KernelLocal2, size_t(state_floats + dt_rank * lanes + 1));
    for (int64_t i = i0; i < i1; ++i) {
      block_fn(a, a2t, a2t_ld, i / e_blocks, (i % e_blocks) * lanes, ws, ws + state_floats, dt_codes);
    }
  });
}

void selective_scan_bidir_f32(const BiScanArgs& a) {
  if (a.B <= 0 || a.L <= 0 || a.E <= 0) return;
  const int isa = int(active_isa());
  const int lanes = lanes_of(isa);
  const bool vnni = isa >= int(Isa::Avx512Vnni);
  const auto block_fn = vnni ? cpu::vnni::selective_scan_bidir_block
                             : cpu::pick_isa(isa, cpu::scalar::selective_scan_bidir_block,
                                             cpu::avx2::selective_scan_bidir_block,
                                             cpu::avx512::selective_scan_bidir_block);
  const int64_t a2t_ld = (a.E + kMaxLanes - 1) / kMaxLanes * kMaxLanes;
  const int64_t N = std::max<int64_t>(a.N, 0);
  const int64_t rows = a.B * a.L;
  int64_t dt_rank = 0, codes_floats[2] = {0, 0};
  for (int k = 0; k < 2; ++k) {
    dt_rank = std::max(dt_rank, dt_rank_of(a.dir[k].dt_proj, a.dir[k].dt_proj_f32));
    codes_floats[k] = dt_codes_floats(a.dir[k].dt_proj, rows, vnni);
  }
  // One buffer: A·log2 e of both directions, then the dt_proj input codes as floats.
  float* a2t_mem = cpu::thread_scratch_as<float>(
      cpu::ScratchSlot::KernelLocal, size_t(2 * N * a2t_ld + codes_floats[0] + codes_floats[1] + 1));
  const float* a2t[2] = {a2t_mem, a2t_mem + N * a2t_ld};
  fill_a2t(a.dir[0].A, a.E, N, a2t_ld, a2t_mem);
  fill_a2t(a.dir[1].A, a.E, N, a2t_ld, a2t_mem + N * a2t_ld);
  // dt_proj's codes minus zero points, once for all channel blocks (which each read every row).
  float* codes_mem = a2t_mem + 2 * N * a2t_ld;
  const float* dt_codes[2] = {codes_mem, codes_mem + codes_floats[0]};
  for (int k = 0; k < 2; ++k) {
    if (codes_floats[k]) fill_dt_codes(*a.dir[k].dt_proj, rows, codes_mem + (k ? codes_floats[0] : 0));
  }
  const int64_t e_blocks = (a.E + lanes - 1) / lanes;
  parallel_for(a.B * e_blocks, 1, [&](int64_t i0, int64_t i1) {
    // One buffer: the state (N · lanes), the dt_proj weights (2 · R · lanes), then the forward
    // outputs (L · lanes), 64-byte aligned.
    const int64_t state_floats = (N * lanes + 15) / 16 * 16;
    const int64_t wf_floats = (2 * dt_rank * lanes + 15) / 16 * 16;
    float* ws = cpu::thread_scratch_as<float>(cpu::ScratchSlot::KernelLocal2,
                                              size_t(state_floats + wf_floats + a.L * lanes + 1));
    for (int64_t i = i0; i < i1; ++i) {
      block_fn(a, a2t, a2t_ld, i / e_blocks, (i % e_blocks) * lanes, ws + state_floats + wf_floats, ws,
               ws + state_floats, dt_codes);
    }
  });
}

void selective_scan_f32_ref(const ScanArgs& a) {
  std::vector<double> h(size_t(std::max<int64_t>(a.N, 1)));
  std::vector<float> computed;
  const float* delta = a.delta;
  int64_t lddelta = a.lddelta;
  if (a.dt_proj || a.dt_proj_f32) {
    computed = reference_delta(a.dt_proj, a.dt_proj_f32, a.B * a.L, a.E);
    delta = computed.data(), lddelta = a.E;
  }
  for (int64_t b = 0; b < a.B; ++b) {
    for (int64_t e = 0; e < a.E; ++e) {
      std::fill(h.begin(), h.end(), 0.0);
      for (int64_t s = 0; s < a.L; ++s) {
        const int64_t t = a.reverse ? a.L - 1 - s : s;
        const int64_t row = b * a.L + t;
        const double u = a.u[row * a.ldu + e];
        double dt = double(delta[row * lddelta + e]) + (a.delta_bias ? a.delta_bias[e] : 0.0);
        if (a.delta_softplus && dt <= 20.0) dt = std::log1p(std::exp(dt));
        double o = 0;
        for (int64_t n = 0; n < a.N; ++n) {
          h[n] = std::exp(dt * a.A[e * a.N + n]) * h[n] + dt * a.Bm[row * a.ldB + n] * u;
          o += h[n] * a.Cm[row * a.ldC + n];
        }
        if (a.D) o += a.D[e] * u;
        if (a.z) {
          const double z = a.z[row * a.ldz + e];
          o *= z / (1.0 + std::exp(-z));
        }
        float& y = a.y[row * a.ldy + e];
        y = float((a.accumulate ? double(y) : 0.0) + double(a.out_scale) * o);
      }
    }
  }
}

void selective_scan_bidir_f32_ref(const BiScanArgs& a) {
  const int64_t rows = a.B * a.L;
  std::vector<float> o[2];
  for (int k = 0; k < 2; ++k) {
    const ScanDirectionArgs& d = a.dir[k];
    o[k].assign(size_t(std::max<int64_t>(rows * a.E, 1)), 0.0f);
    ScanArgs s;
    s.B = a.B, s.L = a.L, s.E = a.E, s.N = a.N;
    s.u = d.u, s.ldu = d.ldu, s.delta = d.delta, s.lddelta = d.lddelta, s.A = d.A;
    s.dt_proj = d.dt_proj, s.dt_proj_f32 = d.dt_proj_f32;
    s.Bm = d.Bm, s.ldB = d.ldB, s.Cm = d.Cm, s.ldC = d.ldC, s.D = d.D, s.delta_bias = d.delta_bias;
    s.delta_softplus = a.delta_softplus;
    s.reverse = k == 1;
    s.y = o[k].data(), s.ldy = a.E;
    selective_scan_f32_ref(s);
  }
  std::vector<float> yc(size_t(std::max<int64_t>(rows * a.E, 1)));
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t e = 0; e < a.E; ++e) {
      const double z = a.z[r * a.ldz + e];
      const double v = (double(o[0][r * a.E + e]) + o[1][r * a.E + e]) * 0.5 * (z / (1.0 + std::exp(-z)));
      yc[r * a.E + e] = float(v);
      if (a.y) a.y[r * a.ldy + e] = float(v);
    }
  if (a.q) {
    quantize_u8_ref(rows, a.E, a.quant.period, yc.data(), a.E, a.quant.inv_smooth, a.quant.inv_scale, a.quant.zero,
                    a.quant.qmax, a.q, a.ldq);
  }
}

}  // namespace ptq4vm
