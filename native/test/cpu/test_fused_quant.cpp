// The fused quantizing ops (norm_quant.h, conv1d_quant.h, scan_bidir.h): their fp32 outputs
// match the references, and their bytes are exactly quantize_u8 of their own fp32 outputs (so
// they quantize like every other path), on ragged shapes and every ISA.
#include <cmath>
#include <cstring>

#include "cpu_test_util.h"
#include "ptq4vm/conv1d.h"
#include "ptq4vm/conv1d_quant.h"
#include "ptq4vm/gemm.h"
#include "ptq4vm/gemm_int8.h"
#include "ptq4vm/norm_quant.h"
#include "ptq4vm/quantize.h"
#include "ptq4vm/scan.h"
#include "ptq4vm/scan_bidir.h"

using namespace ptq4vm;
using namespace ptq4vm::test;

namespace {

struct QuantParams {
  std::vector<float> inv_smooth, inv_scale;
  std::vector<int32_t> zero;
  TokenQuantizer q;
};

// Parameters sized so the data spans most of the range (and clamps a little).
QuantParams make_quant(Rng& rng, int64_t cols, int64_t period, float range, bool smooth, int qmax) {
  QuantParams p;
  p.inv_smooth = rng.floats(static_cast<size_t>(cols), 0.5f, 2.0f);
  p.inv_scale.resize(static_cast<size_t>(period));
  p.zero.resize(static_cast<size_t>(period));
  for (int64_t i = 0; i < period; ++i) {
    p.inv_scale[i] = float(qmax) / (range * rng.uniform(1.0f, 3.0f));
    p.zero[i] = int32_t(rng.integer(qmax / 4, 3 * qmax / 4));
  }
  p.q.period = period;
  p.q.inv_smooth = smooth ? p.inv_smooth.data() : nullptr;
  p.q.inv_scale = p.inv_scale.data();
  p.q.zero = p.zero.data();
  p.q.qmax = qmax;
  return p;
}

// got == quantize_u8_ref(values); and got is within one level of want (from the reference).
void check_bytes(const std::vector<uint8_t>& got, const std::vector<uint8_t>& want, int64_t rows, int64_t cols,
                 int64_t ldq, const float* values, int64_t ldv, const TokenQuantizer& q, const char* what) {
  std::vector<uint8_t> requant(got.size(), 0);
  quantize_u8_ref(rows, cols, q.period, values, ldv, q.inv_smooth, q.inv_scale, q.zero, q.qmax, requant.data(), ldq);
  int64_t off_by_one = 0;
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < cols; ++j) {
      const int64_t i = r * ldq + j;
      CHECK_MSG(got[i] == requant[i], what << ": byte (" << r << "," << j << ") is not quantize_u8 of the output");
      const int d = std::abs(int(got[i]) - int(want[i]));
      CHECK_MSG(d <= 1, what << ": byte (" << r << "," << j << ") differs from the reference by " << d);
      off_by_one += d;
    }
  CHECK_MSG(off_by_one * 100 <= rows * cols + 100, what << ": too many rounding differences: " << off_by_one);
}

}  // namespace

TEST_CASE("add_rmsnorm_quantize_f32: output, residual and bytes, every ISA") {
  Rng rng(81);
  ThreadCountGuard guard;
  for_each_isa([&](Isa) {
    for (int threads : {1, 2}) {
      set_num_threads(threads);
      for (int iter = 0; iter < 12; ++iter) {
        const int64_t rows = rng.integer(1, 50), D = std::vector<int64_t>{1, 15, 16, 47, 192, 200}[size_t(iter % 6)];
        const int64_t period = iter % 2 ? rows : 7, ldq = D + rng.integer(0, 3);
        auto x = rng.floats(size_t(rows * D), -2, 2), res = rng.floats(size_t(rows * D), -2, 2);
        auto w = rng.floats(size_t(D), 0.5f, 1.5f);
        auto qp = make_quant(rng, D, period, 4.0f, iter % 3 != 0, iter % 4 == 0 ? 15 : 255);
        std::vector<float> ro(x.size()), out(x.size()), ro_ref(x.size()), out_ref(x.size());
        std::vector<uint8_t> q(size_t(rows * ldq), 0), q_ref(q.size(), 0), q_only(q.size(), 0);
        add_rmsnorm_quantize_f32(rows, D, x.data(), res.data(), ro.data(), w.data(), 1e-5f, out.data(), qp.q, q.data(), ldq);
        add_rmsnorm_quantize_f32_ref(rows, D, x.data(), res.data(), ro_ref.data(), w.data(), 1e-5f, out_ref.data(), qp.q,
                                     q_ref.data(), ldq);
        CHECK(ro == ro_ref);
        CHECK(rel_max_err(out.data(), out_ref.data(), out.size()) < 1e-6);
        check_bytes(q, q_ref, rows, D, ldq, out.data(), D, qp.q, "norm");
        // Without the fp32 output the bytes are the same.
        add_rmsnorm_quantize_f32(rows, D, x.data(), res.data(), ro.data(), w.data(), 1e-5f, nullptr, qp.q, q_only.data(), ldq);
        CHECK(q_only == q);
      }
    }
  });
}

TEST_CASE("causal_conv1d_silu_quantize_f32: both directions, every ISA") {
  Rng rng(82);
  ThreadCountGuard guard;
  for_each_isa([&](Isa) {
    for (int threads : {1, 2}) {
      set_num_threads(threads);
      for (int iter = 0; iter < 12; ++iter) {
        const int64_t B = rng.integer(1, 3), L = rng.integer(1, 25), E = rng.integer(1, 70), K = rng.integer(1, 4);
        const int64_t ldx = 2 * E, ldo = E + rng.integer(0, 2), ldq = E + rng.integer(0, 2);
        const bool reverse = iter & 1;
        auto x = rng.floats(size_t(B * L * ldx), -2, 2), w = rng.floats(size_t(E * K)), bias = rng.floats(size_t(E));
        auto qp = make_quant(rng, E, L, 3.0f, iter % 3 != 0, iter % 4 == 0 ? 15 : 255);
        std::vector<float> out(size_t(B * L * ldo)), out_ref(out.size());
        std::vector<uint8_t> q(size_t(B * L * ldq), 0), q_ref(q.size(), 0);
        causal_conv1d_silu_quantize_f32(B, L, E, K, x.data(), ldx, w.data(), bias.data(), reverse, out.data(), ldo, qp.q,
                                        q.data(), ldq);
        causal_conv1d_silu_quantize_f32_ref(B, L, E, K, x.data(), ldx, w.data(), bias.data(), reverse, out_ref.data(),
                                            ldo, qp.q, q_ref.data(), ldq);
        CHECK(rel_max_err(out.data(), out_ref.data(), out.size()) < 2e-6);
        check_bytes(q, q_ref, B * L, E, ldq, out.data(), ldo, qp.q, "conv");
        // With the fast SiLU: the output is causal_conv1d_f32's with the same math, bit for bit,
        // and the bytes its quantization.
        std::vector<float> out_fast(out.size()), plain_fast(out.size());
        std::vector<uint8_t> q_fast(q.size(), 0);
        causal_conv1d_silu_quantize_f32(B, L, E, K, x.data(), ldx, w.data(), bias.data(), reverse, out_fast.data(), ldo,
                                        qp.q, q_fast.data(), ldq, MathMode::fast);
        causal_conv1d_f32(B, L, E, K, x.data(), ldx, w.data(), bias.data(), reverse, true, plain_fast.data(), ldo,
                          MathMode::fast);
        CHECK(out_fast == plain_fast);
        check_bytes(q_fast, q_ref, B * L, E, ldq, out_fast.data(), ldo, qp.q, "conv fast");
      }
    }
  });
}

namespace {

struct BiScanData {
  std::vector<float> u[2], delta[2], A[2], bc[2], D[2], dbias[2], z;
  BiScanArgs args;
};

BiScanData make_bidir(Rng& rng, int64_t B, int64_t L, int64_t E, int64_t N) {
  BiScanData s;
  BiScanArgs& a = s.args;
  a.B = B, a.L = L, a.E = E, a.N = N;
  for (int k = 0; k < 2; ++k) {
    ScanDirectionArgs& d = a.dir[k];
    d.ldu = E + rng.integer(0, 3);
    d.lddelta = E;
    d.ldB = d.ldC = 2 * N + 3;  // x_proj's output: [dt | B | C]
    s.u[k] = rng.floats(size_t(B * L * d.ldu), -2, 2);
    s.delta[k] = rng.floats(size_t(B * L * E), -4, 1);
    s.A[k].resize(size_t(E * N));
    for (int64_t i = 0; i < E * N; ++i) s.A[k][i] = -float(i % N + 1) * rng.uniform(0.5f, 1.5f);
    s.bc[k] = rng.floats(size_t(B * L * d.ldB));
    s.D[k] = rng.floats(size_t(E));
    s.dbias[k] = rng.floats(size_t(E), -1, 1);
    d.u = s.u[k].data(), d.delta = s.delta[k].data(), d.A = s.A[k].data();
    d.Bm = s.bc[k].data() + 3, d.Cm = s.bc[k].data() + 3 + N;
    d.D = k == 0 || (N % 2) ? s.D[k].data() : nullptr;
    d.delta_bias = s.dbias[k].data();
  }
  a.ldz = 2 * E;
  s.z = rng.floats(size_t(B * L * a.ldz), -3, 3);
  a.z = s.z.data();
  return s;
}

// Runs check(s, iter, rng) on `iters` random bidirectional problems (N = 5 or 16, ragged B, L,
// E) per ISA and thread count (1, 2).
template <typename Check>
void for_each_bidir_case(uint64_t seed, int iters, Check&& check) {
  Rng rng(seed);
  ThreadCountGuard guard;
  for_each_isa([&](Isa) {
    for (int threads : {1, 2}) {
      set_num_threads(threads);
      for (int iter = 0; iter < iters; ++iter) {
        const int64_t N = iter % 3 == 0 ? 5 : 16;
        auto s = make_bidir(rng, rng.integer(1, 3), rng.integer(1, 40), rng.integer(1, 50), N);
        check(s, iter, rng);
      }
    }
  });
}

// A random INT8 dt_proj over `rows` rows (codes with row stride ≥ R, per-token scales when
// period = L) and the Δ [rows, E] gemm_u8s8_f32 writes for it.
struct Int8DtProjCase {
  std::vector<uint8_t> codes;
  std::vector<float> a_scale, w_scale, delta;
  std::vector<int32_t> a_zero;
  std::vector<int8_t> qw;
  ScanDtProjInt8 p;
};
Int8DtProjCase make_int8_dt_proj(Rng& rng, int64_t rows, int64_t E, int64_t period) {
  Int8DtProjCase c;
  const int64_t R = rng.integer(1, 40), ldq = R + rng.integer(0, 3);
  c.codes.resize(size_t(rows * ldq));
  for (auto& v : c.codes) v = uint8_t(rng.integer(0, 255));
  c.a_scale = rng.floats(size_t(period), 0.01f / std::sqrt(float(R)), 0.03f / std::sqrt(float(R)));
  c.a_zero.resize(size_t(period));
  for (auto& z : c.a_zero) z = int32_t(rng.integer(0, 255));
  c.qw.resize(size_t(E * R));
  for (auto& w : c.qw) w = int8_t(rng.integer(-127, 127));
  c.w_scale = rng.floats(size_t(E), 0.005f, 0.015f);
  c.p = {c.codes.data(), ldq, period, c.a_scale.data(), c.a_zero.data(), c.qw.data(), c.w_scale.data(), R};
  c.delta.assign(size_t(rows * E), 0.0f);
  auto packed = pack_int8_weights(E, R, c.qw.data());
  Int8Epilogue ep;
  ep.period = period, ep.a_scale = c.a_scale.data(), ep.a_zero = c.a_zero.data(), ep.w_scale = c.w_scale.data();
  gemm_u8s8_f32(rows, E, R, c.codes.data(), ldq, *packed, ep, c.delta.data(), E);
  return c;
}

// A random FP32 dt_proj (input with row stride ≥ R) and the Δ = x · wᵀ gemm_f32 writes for it.
struct F32DtProjCase {
  std::vector<float> x, w, delta;
  ScanDtProjF32 p;
};
F32DtProjCase make_f32_dt_proj(Rng& rng, int64_t rows, int64_t E) {
  F32DtProjCase c;
  const int64_t R = rng.integer(1, 40), ldx = R + rng.integer(0, 3);
  c.x = rng.floats(size_t(rows * ldx), -1, 1);
  c.w = rng.floats(size_t(E * R), -1.5f / std::sqrt(float(R)), 1.5f / std::sqrt(float(R)));
  c.p = {c.x.data(), ldx, c.w.data(), R};
  c.delta.assign(size_t(rows * E), 0.0f);
  gemm_f32(false, true, rows, E, R, c.x.data(), ldx, c.w.data(), R, nullptr, false, c.delta.data(), E);
  return c;
}

// One direction of a bidirectional case as a single-direction scan (gated when `gated`).
ScanArgs single_direction(const BiScanData& s, bool reverse, bool gated, MathMode math) {
  const BiScanArgs& b = s.args;
  const ScanDirectionArgs& d = b.dir[reverse ? 1 : 0];
  ScanArgs a;
  a.B = b.B, a.L = b.L, a.E = b.E, a.N = b.N;
  a.u = d.u, a.ldu = d.ldu, a.delta = d.delta, a.lddelta = d.lddelta, a.A = d.A;
  a.Bm = d.Bm, a.ldB = d.ldB, a.Cm = d.Cm, a.ldC = d.ldC, a.D = d.D, a.delta_bias = d.delta_bias;
  if (gated) a.z = b.z, a.ldz = b.ldz;
  a.reverse = reverse;
  a.math = math;
  a.ldy = b.E;
  return a;
}

}  // namespace

TEST_CASE("selective_scan_bidir_f32: fp32 output and bytes, ragged shapes, every ISA") {
  Rng rng(83);
  ThreadCountGuard guard;
  for_each_isa([&](Isa) {
    for (int threads : {1, 2}) {
      set_num_threads(threads);
      for (int iter = 0; iter < 10; ++iter) {
        const int64_t N = std::vector<int64_t>{16, 5, 16, 17, 1}[size_t(iter % 5)];
        auto s = make_bidir(rng, rng.integer(1, 3), rng.integer(1, 40), rng.integer(1, 50), N);
        BiScanArgs a = s.args;
        const int64_t rows = a.B * a.L;
        a.ldy = a.E + rng.integer(0, 2);
        a.ldq = a.E + rng.integer(0, 2);
        auto qp = make_quant(rng, a.E, a.L, 1.0f, iter % 2 == 0, 255);
        a.quant = qp.q;
        std::vector<float> y(size_t(rows * a.ldy), 0.0f), y_ref(y.size(), 0.0f);
        std::vector<uint8_t> q(size_t(rows * a.ldq), 0), q_ref(q.size(), 0), q_only(q.size(), 0);
        a.y = y.data(), a.q = q.data();
        selective_scan_bidir_f32(a);
        a.y = y_ref.data(), a.q = q_ref.data();
        selective_scan_bidir_f32_ref(a);
        CHECK_MSG(rel_max_err(y.data(), y_ref.data(), y.size()) < 2e-5,
                  "L=" << a.L << " E=" << a.E << " N=" << a.N << " err " << rel_max_err(y.data(), y_ref.data(), y.size()));
        check_bytes(q, q_ref, rows, a.E, a.ldq, y.data(), a.ldy, a.quant, "scan");
        a.y = nullptr, a.q = q_only.data();
        selective_scan_bidir_f32(a);
        CHECK(q_only == q);
      }
    }
  });
}

TEST_CASE("selective_scan_bidir_f32: math fast stays within its bound of the reference, every ISA") {
  // Per step, softplus, SiLU and the decays are off by ≤ 1.1e-4 relative; a state's error grows
  // with the number of steps its memory spans (≤ L = 40 here), hence ≤ 40 · 1.1e-4 ≈ 4.4e-3 (these seeded data stay below 3e-3).
  // The bytes are still exactly quantize_u8 of the fast y, and within one level of the exact ones.
  Rng rng(87);
  ThreadCountGuard guard;
  for_each_isa([&](Isa isa) {
    for (int threads : {1, 2}) {
      set_num_threads(threads);
      double worst = 0;
      int64_t bytes = 0, differing = 0;
      for (int iter = 0; iter < 10; ++iter) {
        const int64_t N = std::vector<int64_t>{16, 5, 16, 17, 1}[size_t(iter % 5)];
        auto s = make_bidir(rng, rng.integer(1, 3), rng.integer(1, 40), rng.integer(1, 50), N);
        BiScanArgs a = s.args;
        const int64_t rows = a.B * a.L;
        a.ldy = a.ldq = a.E;
        auto qp = make_quant(rng, a.E, a.L, 1.0f, iter % 2 == 0, 255);
        a.quant = qp.q;
        std::vector<float> y(size_t(rows * a.E)), y_exact(y.size()), y_ref(y.size());
        std::vector<uint8_t> q(size_t(rows * a.E)), q_exact(q.size()), q_ref(q.size());
        a.math = MathMode::fast, a.y = y.data(), a.q = q.data();
        selective_scan_bidir_f32(a);
        a.math = MathMode::exact, a.y = y_exact.data(), a.q = q_exact.data();
        selective_scan_bidir_f32(a);
        a.y = y_ref.data(), a.q = q_ref.data();
        selective_scan_bidir_f32_ref(a);
        const double err = rel_max_err(y.data(), y_ref.data(), y.size());
        worst = std::max(worst, err);
        CHECK_MSG(err < 3e-3, "L=" << a.L << " E=" << a.E << " N=" << a.N << " err " << err);
        if (isa == Isa::Avx512 || isa == Isa::Avx512Vnni) {
          // The fast math is really in use there (elsewhere it is the exact math).
          CHECK_MSG(std::memcmp(y.data(), y_exact.data(), y.size() * sizeof(float)) != 0, "fast == exact");
        } else {
          CHECK(std::memcmp(y.data(), y_exact.data(), y.size() * sizeof(float)) == 0);
        }
        std::vector<uint8_t> requant(q.size());
        quantize_u8_ref(rows, a.E, a.quant.period, y.data(), a.E, a.quant.inv_smooth, a.quant.inv_scale, a.quant.zero,
                        a.quant.qmax, requant.data(), a.E);
        CHECK(requant == q);
        for (size_t i = 0; i < q.size(); ++i) {
          CHECK(std::abs(int(q[i]) - int(q_ref[i])) <= 1);
          differing += q[i] != q_exact[i];
        }
        bytes += int64_t(q.size());
      }
      // Most bytes agree with the exact scan's: the error is a small fraction of a level.
      CHECK_MSG(differing * 50 <= bytes, differing << " of " << bytes << " bytes differ from the exact scan's");
      CHECK(worst > 0);
    }
  });
}

TEST_CASE("selective_scan_bidir_f32: equals two single-direction scans combined") {
  Rng rng(84);
  auto s = make_bidir(rng, 2, 30, 33, 16);
  BiScanArgs a = s.args;
  const int64_t rows = a.B * a.L;
  std::vector<float> y(size_t(rows * a.E)), two(size_t(rows * a.E));
  a.y = y.data(), a.ldy = a.E;
  selective_scan_bidir_f32(a);
  for (int k = 0; k < 2; ++k) {
    const ScanDirectionArgs& d = a.dir[k];
    ScanArgs sa;
    sa.B = a.B, sa.L = a.L, sa.E = a.E, sa.N = a.N, sa.u = d.u, sa.ldu = d.ldu, sa.delta = d.delta;
    sa.lddelta = d.lddelta, sa.A = d.A, sa.Bm = d.Bm, sa.ldB = d.ldB, sa.Cm = d.Cm, sa.ldC = d.ldC;
    sa.D = d.D, sa.delta_bias = d.delta_bias, sa.z = a.z, sa.ldz = a.ldz, sa.reverse = k == 1;
    sa.accumulate = k == 1, sa.out_scale = 0.5f, sa.y = two.data(), sa.ldy = a.E;
    selective_scan_f32(sa);
  }
  CHECK(rel_max_err(y.data(), two.data(), y.size()) < 1e-6);
}

TEST_CASE("selective_scan_bidir_f32: exponents past ±125 (large Δ) take the clamped decays, every ISA") {
  Rng rng(85);
  ThreadCountGuard guard;
  for_each_isa([&](Isa) {
    set_num_threads(2);
    for (int iter = 0; iter < 4; ++iter) {
      auto s = make_bidir(rng, 2, rng.integer(9, 40), rng.integer(1, 50), iter % 2 ? 16 : 7);
      // Δ up to 120: dt·A·log2 e reaches −4000 in some chunks, while others stay in range.
      for (int k = 0; k < 2; ++k)
        for (size_t i = 0; i < s.delta[k].size(); ++i)
          if ((i / 97) % 3 == 0) s.delta[k][i] = s.delta[k][i] * 30.0f + 90.0f;
      BiScanArgs a = s.args;
      const int64_t rows = a.B * a.L;
      std::vector<float> y(size_t(rows * a.E)), y_ref(y.size());
      a.ldy = a.E;
      a.y = y.data();
      selective_scan_bidir_f32(a);
      a.y = y_ref.data();
      selective_scan_bidir_f32_ref(a);
      bool finite = true;
      for (float v : y) finite = finite && std::isfinite(v);
      CHECK(finite);
      CHECK_MSG(rel_max_err(y.data(), y_ref.data(), y.size()) < 2e-5, "err " << rel_max_err(y.data(), y_ref.data(), y.size()));
    }
  });
}

TEST_CASE("selective_scan_bidir_f32: dt_proj fused (INT8) equals gemm_u8s8_f32 then the scan, bit for bit, every ISA") {
  for_each_bidir_case(86, 6, [](BiScanData& s, int iter, Rng& rng) {
    BiScanArgs a = s.args;
    const int64_t rows = a.B * a.L, E = a.E;
    // Per direction: codes [rows, R], per-token scales, int8 weights [E, R], and the Δ the INT8
    // GEMM writes (the unfused path).
    Int8DtProjCase dt[2] = {make_int8_dt_proj(rng, rows, E, iter % 2 ? a.L : 1),
                            make_int8_dt_proj(rng, rows, E, iter % 2 ? a.L : 1)};
    ScanDtProjInt8 dtp[2] = {dt[0].p, dt[1].p};
    const std::vector<float>* delta[2] = {&dt[0].delta, &dt[1].delta};
    auto qp = make_quant(rng, E, a.L, 1.0f, iter % 2 == 0, 255);
    a.quant = qp.q;
    a.ldy = a.ldq = E;
    std::vector<float> y_gemm(size_t(rows * E)), y_fused(y_gemm.size()), y_ref(y_gemm.size());
    std::vector<uint8_t> q_gemm(size_t(rows * E)), q_fused(q_gemm.size()), q_ref(q_gemm.size());
    for (int k = 0; k < 2; ++k) a.dir[k].delta = delta[k]->data(), a.dir[k].lddelta = E;
    a.y = y_gemm.data(), a.q = q_gemm.data();
    selective_scan_bidir_f32(a);
    for (int k = 0; k < 2; ++k) {
      a.dir[k].delta = nullptr;
      a.dir[k].dt_proj = &dtp[k];
    }
    a.y = y_fused.data(), a.q = q_fused.data();
    selective_scan_bidir_f32(a);
    a.y = y_ref.data(), a.q = q_ref.data();
    selective_scan_bidir_f32_ref(a);
    CHECK_MSG(std::memcmp(y_gemm.data(), y_fused.data(), y_gemm.size() * sizeof(float)) == 0,
              "fused dt_proj changed y: L=" << a.L << " E=" << E << " err " << rel_max_err(y_fused.data(), y_gemm.data(), y_gemm.size())
              << " fused vs ref " << rel_max_err(y_fused.data(), y_ref.data(), y_ref.size())
              << " gemm vs ref " << rel_max_err(y_gemm.data(), y_ref.data(), y_ref.size()));
    CHECK(q_gemm == q_fused);
    CHECK(rel_max_err(y_fused.data(), y_ref.data(), y_ref.size()) < 2e-5);
    // Only one direction fused: the other reads its Δ.
    a.dir[0].dt_proj = nullptr;
    a.dir[0].delta = delta[0]->data();
    a.y = y_fused.data(), a.q = q_fused.data();
    selective_scan_bidir_f32(a);
    CHECK(std::memcmp(y_gemm.data(), y_fused.data(), y_gemm.size() * sizeof(float)) == 0);
  });
}

TEST_CASE("selective_scan_bidir_f32: dt_proj fused (FP32) matches gemm_f32 then the scan and the reference, every ISA") {
  // Δ's sum runs in another order than gemm_f32's, so the two agree to float rounding only.
  for_each_bidir_case(89, 6, [](BiScanData& s, int, Rng& rng) {
    BiScanArgs a = s.args;
    const int64_t rows = a.B * a.L, E = a.E;
    // Per direction: dt_proj's input and weights, and the Δ the FP32 GEMM writes (the unfused path).
    F32DtProjCase dt[2] = {make_f32_dt_proj(rng, rows, E), make_f32_dt_proj(rng, rows, E)};
    ScanDtProjF32 dtp[2] = {dt[0].p, dt[1].p};
    const std::vector<float>* delta[2] = {&dt[0].delta, &dt[1].delta};
    a.ldy = E;
    a.q = nullptr;
    std::vector<float> y_gemm(size_t(rows * E)), y_fused(y_gemm.size()), y_ref(y_gemm.size());
    for (int k = 0; k < 2; ++k) a.dir[k].delta = delta[k]->data(), a.dir[k].lddelta = E;
    a.y = y_gemm.data();
    selective_scan_bidir_f32(a);
    for (int k = 0; k < 2; ++k) {
      a.dir[k].delta = nullptr;
      a.dir[k].dt_proj_f32 = &dtp[k];
    }
    a.y = y_fused.data();
    selective_scan_bidir_f32(a);
    a.y = y_ref.data();
    selective_scan_bidir_f32_ref(a);
    CHECK_MSG(rel_max_err(y_fused.data(), y_gemm.data(), y_gemm.size()) < 1e-5,
              "L=" << a.L << " E=" << E << " err " << rel_max_err(y_fused.data(), y_gemm.data(), y_gemm.size()));
    CHECK(rel_max_err(y_fused.data(), y_ref.data(), y_ref.size()) < 2e-5);
    // Only the backward direction fused: the forward one reads its Δ.
    a.dir[0].dt_proj_f32 = nullptr;
    a.dir[0].delta = delta[0]->data();
    std::vector<float> y_half(y_gemm.size());
    a.y = y_half.data();
    selective_scan_bidir_f32(a);
    CHECK(rel_max_err(y_half.data(), y_gemm.data(), y_gemm.size()) < 1e-5);
  });
}

TEST_CASE("selective_scan_f32: dt_proj fused (INT8) equals gemm_u8s8_f32 then the scan, bit for bit, every ISA") {
  for_each_bidir_case(91, 6, [](BiScanData& s, int iter, Rng& rng) {
    const int64_t rows = s.args.B * s.args.L, E = s.args.E;
    for (int variant = 0; variant < 4; ++variant) {
      const bool reverse = variant & 1, gated = variant & 2;
      const MathMode math = (iter + variant) % 2 ? MathMode::fast : MathMode::exact;
      const Int8DtProjCase dt = make_int8_dt_proj(rng, rows, E, iter % 2 ? s.args.L : 1);
      ScanArgs a = single_direction(s, reverse, gated, math);
      std::vector<float> y_gemm(size_t(rows * E)), y_fused(y_gemm.size()), y_ref(y_gemm.size());
      a.delta = dt.delta.data(), a.lddelta = E, a.y = y_gemm.data();
      selective_scan_f32(a);
      a.delta = nullptr, a.dt_proj = &dt.p, a.y = y_fused.data();
      selective_scan_f32(a);
      CHECK_MSG(std::memcmp(y_gemm.data(), y_fused.data(), y_gemm.size() * sizeof(float)) == 0,
                "fused dt_proj changed y: L=" << a.L << " E=" << E << " R=" << dt.p.R << " reverse " << reverse
                << " err " << rel_max_err(y_fused.data(), y_gemm.data(), y_gemm.size()));
      if (math == MathMode::exact) {
        a.y = y_ref.data();
        selective_scan_f32_ref(a);
        CHECK(rel_max_err(y_fused.data(), y_ref.data(), y_ref.size()) < 2e-5);
      }
    }
  });
}

TEST_CASE("selective_scan_f32: dt_proj fused (FP32) matches gemm_f32 then the scan and the reference, every ISA") {
  // Δ's sum runs in another order than gemm_f32's, so the two agree to float rounding only.
  for_each_bidir_case(93, 6, [](BiScanData& s, int, Rng& rng) {
    const int64_t rows = s.args.B * s.args.L, E = s.args.E;
    for (int variant = 0; variant < 4; ++variant) {
      const bool reverse = variant & 1, gated = variant & 2;
      const F32DtProjCase dt = make_f32_dt_proj(rng, rows, E);
      ScanArgs a = single_direction(s, reverse, gated, MathMode::exact);
      std::vector<float> y_gemm(size_t(rows * E)), y_fused(y_gemm.size()), y_ref(y_gemm.size());
      a.delta = dt.delta.data(), a.lddelta = E, a.y = y_gemm.data();
      selective_scan_f32(a);
      a.delta = nullptr, a.dt_proj_f32 = &dt.p, a.y = y_fused.data();
      selective_scan_f32(a);
      a.y = y_ref.data();
      selective_scan_f32_ref(a);
      CHECK_MSG(rel_max_err(y_fused.data(), y_gemm.data(), y_gemm.size()) < 1e-5,
                "L=" << a.L << " E=" << E << " err " << rel_max_err(y_fused.data(), y_gemm.data(), y_gemm.size()));
      CHECK(rel_max_err(y_fused.data(), y_ref.data(), y_ref.size()) < 2e-5);
    }
  });
}
