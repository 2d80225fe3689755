// Selective scans against selective_scan_f32_ref: the single-direction contract, and the fused
// two-direction scan (every supported type combination, fast and simple kernels, odd and long
// sequences, quantized input and output).
#include <algorithm>
#include <cmath>
#include <memory>

#include "ptq4vm/cuda/scan.h"
#include "ptq4vm/quantize.h"
#include "ptq4vm/scan.h"
#include "test_util.cuh"

namespace {
using namespace ptq4vm;
using namespace ptq4vm::test;
using cuda::DType;

// A host float matrix uploaded as F32 or F16 (the host copy keeps the values the device sees).
struct Typed {
  std::vector<float> host;
  std::unique_ptr<DeviceArray<float>> f;
  std::unique_ptr<DeviceArray<__half>> h;
  const void* ptr = nullptr;
  Typed(DType t, std::vector<float> v) {
    if (t == DType::F16) {
      host = round_half(v);
      h = std::make_unique<DeviceArray<__half>>(to_half(host));
      ptr = h->get();
    } else {
      host = std::move(v);
      f = std::make_unique<DeviceArray<float>>(host);
      ptr = f->get();
    }
  }
};

template <class T>
std::vector<T> flip_tokens(const std::vector<T>& x, int64_t B, int64_t L, int64_t ld) {
  std::vector<T> y(x.size());
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t < L; ++t)
      std::copy(x.begin() + (b * L + t) * ld, x.begin() + (b * L + t + 1) * ld, y.begin() + (b * L + (L - 1 - t)) * ld);
  return y;
}

struct Combo {
  DType u, p, y;
};

// One direction's operands, generated in that direction's own order.
struct DirData {
  std::vector<uint8_t> q;  // U8 u
  std::vector<float> q_scale, smooth;
  std::vector<int32_t> q_zero;
  std::vector<float> u_host;  // the u values the kernel sees (dequantized / rounded), own order
  std::unique_ptr<Typed> u, delta, xdbl;
  std::unique_ptr<DeviceArray<uint8_t>> dq;
  std::unique_ptr<DeviceArray<float>> dq_scale, dsmooth, dA, dD, ddb;
  std::unique_ptr<DeviceArray<int32_t>> dq_zero;
  std::vector<float> A, D, dbias;
};

void make_dir(DirData& d, Rng& rng, const Combo& c, int64_t B, int64_t L, int64_t E, int64_t N, int64_t R) {
  const int64_t rows = B * L, W = R + 2 * N;
  if (c.u == DType::U8) {
    d.q = random_u8(rng, rows * E);
    d.q_scale = rng.floats(L, 0.01f, 0.03f);
    d.smooth = rng.floats(E, 0.5f, 2.0f);
    d.q_zero.resize(L);
    for (auto& z : d.q_zero) z = static_cast<int32_t>(rng.integer(100, 156));
    d.u_host.resize(rows * E);
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t e = 0; e < E; ++e) {
        const int64_t p = r % L;
        d.u_host[r * E + e] = (static_cast<float>(int(d.q[r * E + e]) - d.q_zero[p]) * d.q_scale[p]) * d.smooth[e];
      }
    d.dq = std::make_unique<DeviceArray<uint8_t>>(d.q);
    d.dq_scale = std::make_unique<DeviceArray<float>>(d.q_scale);
    d.dsmooth = std::make_unique<DeviceArray<float>>(d.smooth);
    d.dq_zero = std::make_unique<DeviceArray<int32_t>>(d.q_zero);
  } else {
    d.u = std::make_unique<Typed>(c.u, rng.floats(rows * E, -2.f, 2.f));
    d.u_host = d.u->host;
  }
  d.delta = std::make_unique<Typed>(c.p, rng.floats(rows * E, -3.f, 1.f));
  d.xdbl = std::make_unique<Typed>(c.p, rng.floats(rows * W, -1.f, 1.f));
  d.A.resize(E * N);
  for (auto& a : d.A) a = -std::exp(rng.uniform(0.f, 2.7f));
  d.D = rng.floats(E);
  d.dbias = rng.floats(E, -0.5f, 0.5f);
  d.dA = std::make_unique<DeviceArray<float>>(d.A);
  d.dD = std::make_unique<DeviceArray<float>>(d.D);
  d.ddb = std::make_unique<DeviceArray<float>>(d.dbias);
}

void run_biscan_case(const Combo& c, cuda::KernelMode mode, int64_t B, int64_t L, int64_t E, int64_t N, bool gate,
                     uint64_t seed) {
  Rng rng(seed);
  const int64_t R = 5, W = R + 2 * N, rows = B * L;
  DirData f, b;
  make_dir(f, rng, c, B, L, E, N, R);
  make_dir(b, rng, c, B, L, E, N, R);
  std::unique_ptr<Typed> z;
  if (gate) z = std::make_unique<Typed>(c.p, rng.floats(rows * E, -2.f, 2.f));

  // Reference: forward scan on token order, backward scan = reverse scan on token-order copies.
  std::vector<float> want(rows * E, 0.f);
  auto tok_u = flip_tokens(b.u_host, B, L, E), tok_delta = flip_tokens(b.delta->host, B, L, E),
       tok_xdbl = flip_tokens(b.xdbl->host, B, L, W);
  for (int dir = 0; dir < 2; ++dir) {
    DirData& d = dir ? b : f;
    ScanArgs a;
    a.B = B;
    a.L = L;
    a.E = E;
    a.N = N;
    a.u = dir ? tok_u.data() : d.u_host.data();
    a.ldu = E;
    a.delta = dir ? tok_delta.data() : d.delta->host.data();
    a.lddelta = E;
    a.A = d.A.data();
    const float* x = dir ? tok_xdbl.data() : d.xdbl->host.data();
    a.Bm = x + R;
    a.ldB = W;
    a.Cm = x + R + N;
    a.ldC = W;
    a.D = d.D.data();
    a.z = gate ? z->host.data() : nullptr;
    a.ldz = E;
    a.delta_bias = d.dbias.data();
    a.delta_softplus = true;
    a.reverse = dir == 1;
    a.accumulate = dir == 1;
    a.out_scale = 0.5f;
    a.y = want.data();
    a.ldy = E;
    selective_scan_f32_ref(a);
  }

  // Output quantization parameters (U8 y).
  const int64_t ldy = E + 1;
  auto y_inv_smooth = rng.floats(E, 0.5f, 2.0f);
  auto y_inv_scale = rng.floats(L, 15.f, 30.f);
  std::vector<int32_t> y_zero(L);
  for (auto& zz : y_zero) zz = static_cast<int32_t>(rng.integer(100, 156));
  DeviceArray<float> d_yis(y_inv_smooth), d_yisc(y_inv_scale);
  DeviceArray<int32_t> d_yz(y_zero);

  cuda::BiScanArgs a;
  a.B = B;
  a.L = L;
  a.E = E;
  a.N = N;
  a.u_type = c.u;
  a.p_type = c.p;
  a.y_type = c.y;
  for (int dir = 0; dir < 2; ++dir) {
    DirData& d = dir ? b : f;
    cuda::BiScanDirection& s = dir ? a.bwd : a.fwd;
    if (c.u == DType::U8) {
      s.u = d.dq->get();
      s.u_dequant.period = L;
      s.u_dequant.scale = d.dq_scale->get();
      s.u_dequant.zero = d.dq_zero->get();
      s.u_dequant.smooth = d.dsmooth->get();
    } else {
      s.u = d.u->ptr;
    }
    s.ldu = E;
    s.delta = d.delta->ptr;
    s.lddelta = E;
    s.delta_bias = d.ddb->get();
    s.A = d.dA->get();
    const size_t esz = c.p == DType::F16 ? 2 : 4;
    s.Bm = static_cast<const char*>(d.xdbl->ptr) + R * esz;
    s.ldB = W;
    s.Cm = static_cast<const char*>(d.xdbl->ptr) + (R + N) * esz;
    s.ldC = W;
    s.D = d.dD->get();
  }
  a.z = gate ? z->ptr : nullptr;
  a.ldz = E;
  a.delta_softplus = true;
  a.ldy = ldy;
  a.y_quant.period = L;
  a.y_quant.inv_smooth = d_yis.get();
  a.y_quant.inv_scale = d_yisc.get();
  a.y_quant.zero = d_yz.get();
  DeviceArray<float> yf(rows * ldy);
  DeviceArray<__half> yh(rows * ldy);
  DeviceArray<uint8_t> yq(rows * ldy);
  a.y = c.y == DType::F32 ? static_cast<void*>(yf.get()) : c.y == DType::F16 ? static_cast<void*>(yh.get()) : yq.get();

  const cuda::KernelMode saved = cuda::kernel_mode();
  cuda::set_kernel_mode(mode);
  cuda::bidirectional_scan(a, nullptr);
  cuda::set_kernel_mode(saved);
  sync_device();

  std::ostringstream label;
  label << "u=" << cuda::dtype_name(c.u) << " p=" << cuda::dtype_name(c.p) << " y=" << cuda::dtype_name(c.y)
        << " mode=" << cuda::kernel_mode_name(mode) << " B=" << B << " L=" << L << " E=" << E << " N=" << N
        << " gate=" << gate;
  if (c.y == DType::F32) {
    auto got = yf.download();
    // fp32 state vs the reference's double state, fast exp: 2e-4 of the largest output.
    const double e = rel_err_strided(got.data(), ldy, want.data(), E, rows, E);
    CHECK_MSG(e <= 2e-4, label.str() << ": rel err " << e);
  } else if (c.y == DType::F16) {
    auto got = to_float(yh.download());
    const double e = rel_err_strided(got.data(), ldy, want.data(), E, rows, E);
    CHECK_MSG(e <= 2e-3, label.str() << ": rel err " << e);
  } else {
    std::vector<uint8_t> want_q(rows * E);
    quantize_u8_ref(rows, E, L, want.data(), E, y_inv_smooth.data(), y_inv_scale.data(), y_zero.data(), 255,
                    want_q.data(), E);
    auto got = yq.download();
    auto cmp = compare_u8(got.data(), ldy, want_q.data(), E, rows, E);
    // y differs from the double-state reference by ~1e-5 relative; with ~100 levels per unit a
    // value that close to a .5 boundary rounds the other way in a few percent of cases at most.
    CHECK_MSG(cmp.worse == 0 && cmp.off_by_one * 100 <= 3 * cmp.total,
              label.str() << ": " << cmp.off_by_one << " of " << cmp.total << " off by one, " << cmp.worse
                          << " worse " << cmp.first_bad);
    // And it is not trivially constant.
    CHECK(*std::max_element(got.begin(), got.end()) != *std::min_element(got.begin(), got.end()));
  }
}

const Combo kCombos[] = {{DType::U8, DType::F32, DType::U8},  {DType::U8, DType::F16, DType::U8},
                         {DType::F32, DType::F32, DType::U8}, {DType::F16, DType::F16, DType::U8},
                         {DType::F16, DType::F16, DType::F16}, {DType::F32, DType::F32, DType::F32}};

}  // namespace

TEST_CASE("cuda selective_scan_f32: scan.h contract vs selective_scan_f32_ref (reverse, gate, accumulate, strides)") {
  require_gpu();
  Rng rng(301);
  for (int64_t N : {16, 5}) {
    const int64_t B = 2, L = 37, E = 50, R = 3, W = R + 2 * N, ldu = E + 3, ldz = 2 * E;
    auto u = rng.floats(B * L * ldu, -2.f, 2.f), delta = rng.floats(B * L * E, -3.f, 1.f),
         xdbl = rng.floats(B * L * W), z = rng.floats(B * L * ldz, -2.f, 2.f), D = rng.floats(E),
         dbias = rng.floats(E, -0.5f, 0.5f);
    std::vector<float> A(E * N);
    for (auto& a : A) a = -std::exp(rng.uniform(0.f, 2.7f));
    DeviceArray<float> du(u), ddelta(delta), dx(xdbl), dz(z), dD(D), ddb(dbias), dA(A);
    for (bool reverse : {false, true})
      for (bool gate : {false, true})
        for (bool acc : {false, true}) {
          auto y0 = rng.floats(B * L * E);
          std::vector<float> want = y0;
          ScanArgs a;
          a.B = B;
          a.L = L;
          a.E = E;
          a.N = N;
          a.u = u.data();
          a.ldu = ldu;
          a.delta = delta.data();
          a.lddelta = E;
          a.A = A.data();
          a.Bm = xdbl.data() + R;
          a.ldB = W;
          a.Cm = xdbl.data() + R + N;
          a.ldC = W;
          a.D = D.data();
          a.z = gate ? z.data() : nullptr;
          a.ldz = ldz;
          a.delta_bias = dbias.data();
          a.reverse = reverse;
          a.accumulate = acc;
          a.out_scale = acc ? 0.5f : 1.0f;
          a.y = want.data();
          a.ldy = E;
          selective_scan_f32_ref(a);
          DeviceArray<float> dy(y0);
          ScanArgs d = a;
          d.u = du.get();
          d.delta = ddelta.get();
          d.A = dA.get();
          d.Bm = dx.get() + R;
          d.Cm = dx.get() + R + N;
          d.D = dD.get();
          d.z = gate ? dz.get() : nullptr;
          d.delta_bias = ddb.get();
          d.y = dy.get();
          cuda::selective_scan_f32(d, nullptr);
          auto got = dy.download();
          const double e = rel_max_err(got.data(), want.data(), got.size());
          CHECK_MSG(e <= 1e-4, "N=" << N << " reverse=" << reverse << " gate=" << gate << " acc=" << acc << ": " << e);
        }
  }
}

TEST_CASE("cuda bidirectional_scan: every type combination, fast and simple kernels, odd L, ragged E") {
  require_gpu();
  uint64_t seed = 400;
  for (const Combo& c : kCombos)
    for (cuda::KernelMode m : {cuda::KernelMode::Fast, cuda::KernelMode::Simple}) {
      run_biscan_case(c, m, 2, 41, 70, 16, true, seed++);
      run_biscan_case(c, m, 1, 2, 9, 16, true, seed++);
    }
}

TEST_CASE("cuda bidirectional_scan: no gate, d_state 8 (simple path), single token") {
  require_gpu();
  run_biscan_case(kCombos[0], cuda::KernelMode::Fast, 2, 33, 40, 16, false, 501);
  run_biscan_case(kCombos[0], cuda::KernelMode::Fast, 2, 33, 40, 8, true, 502);
  run_biscan_case(kCombos[5], cuda::KernelMode::Fast, 3, 1, 17, 16, true, 503);
}

TEST_CASE("cuda bidirectional_scan: long sequence (L = 3000) shrinks the channels per block") {
  require_gpu();
  run_biscan_case(kCombos[5], cuda::KernelMode::Fast, 1, 3000, 40, 16, true, 601);
  run_biscan_case(kCombos[0], cuda::KernelMode::Simple, 1, 3000, 20, 16, true, 602);
}
