// Benchmark of the CPU kernels at Vim-Ti shapes, batch 8 (8 × 197 = 1576 tokens), on every ISA
// path this machine has: FP32 and INT8 GEMMs, the scans, conv1d, RMSNorm, and one whole Vim-Ti
// block run the FP32 way and the INT8 way (fused quantizing ops). Prints a table, then one JSON
// line. Not a test.
//   bench_cpu_kernels [reps] [--cpu-time]     (PTQ4VM_THREADS sets the thread count)
// Times are the median and the minimum of `reps` runs after two warm-up runs. --cpu-time runs
// one thread and measures the process's CPU time instead of wall time, which stays meaningful
// on a machine other jobs are loading (their time slices are not counted).
#include <algorithm>
#include <chrono>
#include <cstring>
#include <ctime>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <random>
#include <string>
#include <new>
#include <vector>

#include "ptq4vm/conv1d.h"
#include "ptq4vm/conv1d_quant.h"
#include "ptq4vm/gemm.h"
#include "ptq4vm/gemm_int8.h"
#include "ptq4vm/norm.h"
#include "ptq4vm/norm_quant.h"
#include "ptq4vm/quantize.h"
#include "ptq4vm/runtime.h"
#include "ptq4vm/scan.h"
#include "ptq4vm/scan_bidir.h"

using namespace ptq4vm;

namespace {

// Operand buffers start a 64-byte cache line, as the executor's (lib/backend/cpu-kernels.ts,
// alignedFloat32Array): malloc puts large blocks 16 bytes past one, and a kernel whose 64-byte
// vectors straddle two lines runs 5–15 % slower than in the forward.
template <typename T>
struct CacheLineAllocator {
  using value_type = T;
  CacheLineAllocator() = default;
  template <typename U>
  CacheLineAllocator(const CacheLineAllocator<U>&) {}
  T* allocate(size_t n) {
    void* p = std::aligned_alloc(64, (n * sizeof(T) + 63) / 64 * 64);
    if (!p) throw std::bad_alloc();
    return static_cast<T*>(p);
  }
  void deallocate(T* p, size_t) { std::free(p); }
};
template <typename T, typename U>
bool operator==(const CacheLineAllocator<T>&, const CacheLineAllocator<U>&) { return true; }
template <typename T, typename U>
bool operator!=(const CacheLineAllocator<T>&, const CacheLineAllocator<U>&) { return false; }
template <typename T>
using Buffer = std::vector<T, CacheLineAllocator<T>>;

Buffer<float> random_floats(size_t n, float lo, float hi, uint32_t seed) {
  std::mt19937 g(seed);
  std::uniform_real_distribution<float> d(lo, hi);
  Buffer<float> v(n);
  for (auto& x : v) x = d(g);
  return v;
}
Buffer<uint8_t> random_u8(size_t n, uint32_t seed) {
  std::mt19937 g(seed);
  Buffer<uint8_t> v(n);
  for (auto& x : v) x = uint8_t(g() & 255);
  return v;
}
Buffer<int8_t> random_s8(size_t n, uint32_t seed) {
  std::mt19937 g(seed);
  Buffer<int8_t> v(n);
  for (auto& x : v) x = int8_t(int(g() % 255) - 127);
  return v;
}

struct Timing {
  double median_ms, min_ms;
};

bool g_cpu_time = false;

double now_ms() {
  if (g_cpu_time) {
    timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return double(ts.tv_sec) * 1e3 + double(ts.tv_nsec) * 1e-6;
  }
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

Timing time_ms(int reps, const std::function<void()>& fn) {
  fn();
  fn();
  std::vector<double> t;
  for (int r = 0; r < reps; ++r) {
    const double t0 = now_ms();
    fn();
    t.push_back(now_ms() - t0);
  }
  std::sort(t.begin(), t.end());
  return {t[t.size() / 2], t.front()};
}

struct Result {
  std::string op, shape, isa;
  Timing t;
  double gops;  // GFLOP/s (FP32) or GOP/s (INT8) at the median; 0 when not meaningful
};
std::vector<Result> g_results;

void report(const std::string& op, const std::string& shape, const char* isa, Timing t, double ops) {
  const double rate = ops > 0 ? ops / t.median_ms / 1e6 : 0.0;
  g_results.push_back({op, shape, isa, t, rate});
  std::printf("%-22s %-24s %-11s %9.3f %9.3f %9.1f\n", op.c_str(), shape.c_str(), isa, t.median_ms, t.min_ms, rate);
  std::fflush(stdout);
}

constexpr int64_t kB = 8, kL = 197, kT = kB * kL, kD = 192, kE = 384, kN = 16, kR = 12, kK = 4;

struct GemmShape {
  const char* name;
  int64_t M, N, K;
};
const GemmShape kGemms[] = {
    {"in_proj", kT, 2 * kE, kD}, {"x_proj", kT, kR + 2 * kN, kE}, {"dt_proj", kT, kE, kR}, {"out_proj", kT, kD, kE}};

std::string shape_name(const GemmShape& g) {
  char s[64];
  std::snprintf(s, sizeof s, "%s %lldx%lldx%lld", g.name, (long long)g.M, (long long)g.N, (long long)g.K);
  return s;
}

// Everything one Vim-Ti block needs, FP32 and INT8 (random weights and static quantizers).
struct Block {
  Buffer<float> x, res, norm_w, normed, xz, conv_w, conv_b, u[2], xdbl[2], delta[2], A, D, dbias, y, out;
  Buffer<float> w_in, w_x, w_dt, w_out;
  Buffer<int8_t> q_in, q_x, q_dt, q_out;
  PackedInt8WeightsPtr p_in, p_x, p_dt, p_out;
  Buffer<uint8_t> a_in, a_x[2], a_dt[2], a_out;
  Buffer<float> ones_e, ones_d, ones_r, inv_scale, a_scale, w_scale_2e, w_scale_e, w_scale_d, w_scale_x;
  Buffer<int32_t> zero;

  Block() {
    x = random_floats(size_t(kT * kD), -1, 1, 1);
    res = random_floats(size_t(kT * kD), -1, 1, 2);
    norm_w = random_floats(size_t(kD), 0.5f, 1.5f, 3);
    normed.resize(size_t(kT * kD));
    xz.resize(size_t(kT * 2 * kE));
    conv_w = random_floats(size_t(kE * kK), -0.5f, 0.5f, 4);
    conv_b = random_floats(size_t(kE), -0.1f, 0.1f, 5);
    for (int k = 0; k < 2; ++k) {
      u[k].resize(size_t(kT * kE));
      xdbl[k].resize(size_t(kT * (kR + 2 * kN)));
      delta[k].resize(size_t(kT * kE));
      a_x[k].resize(size_t(kT * kE));
      a_dt[k].resize(size_t(kT * kR));
    }
    A.resize(size_t(kE * kN));
    for (int64_t i = 0; i < kE * kN; ++i) A[i] = -float(i % kN + 1);
    D = random_floats(size_t(kE), -1, 1, 6);
    dbias = random_floats(size_t(kE), -4, -2, 7);
    y.resize(size_t(kT * kE));
    out.resize(size_t(kT * kD));
    w_in = random_floats(size_t(2 * kE * kD), -0.1f, 0.1f, 8);
    w_x = random_floats(size_t((kR + 2 * kN) * kE), -0.1f, 0.1f, 9);
    w_dt = random_floats(size_t(kE * kR), -0.1f, 0.1f, 10);
    w_out = random_floats(size_t(kD * kE), -0.1f, 0.1f, 11);
    q_in = random_s8(w_in.size(), 12);
    q_x = random_s8(w_x.size(), 13);
    q_dt = random_s8(w_dt.size(), 14);
    q_out = random_s8(w_out.size(), 15);
    p_in = pack_int8_weights(2 * kE, kD, q_in.data());
    p_x = pack_int8_weights(kR + 2 * kN, kE, q_x.data());
    p_dt = pack_int8_weights(kE, kR, q_dt.data());
    p_out = pack_int8_weights(kD, kE, q_out.data());
    a_in.resize(size_t(kT * kD));
    a_out.resize(size_t(kT * kE));
    ones_e.assign(size_t(kE), 1.0f);
    ones_d.assign(size_t(kD), 1.0f);
    ones_r.assign(size_t(kR), 1.0f);
    inv_scale.assign(size_t(kL), 60.0f);
    a_scale.assign(size_t(kL), 1.0f / 60.0f);
    zero.assign(size_t(kL), 128);
    w_scale_2e.assign(size_t(2 * kE), 0.001f);
    w_scale_e.assign(size_t(kE), 0.001f);
    w_scale_d.assign(size_t(kD), 0.001f);
    w_scale_x.assign(size_t(kR + 2 * kN), 0.001f);
  }

  TokenQuantizer quantizer(const Buffer<float>& inv_smooth) const {
    TokenQuantizer q;
    q.period = kL;
    q.inv_smooth = inv_smooth.data();
    q.inv_scale = inv_scale.data();
    q.zero = zero.data();
    return q;
  }
  Int8Epilogue epilogue(const Buffer<float>& w_scale, const float* bias) const {
    Int8Epilogue ep;
    ep.period = kL;
    ep.a_scale = a_scale.data();
    ep.a_zero = zero.data();
    ep.w_scale = w_scale.data();
    ep.bias = bias;
    return ep;
  }
  BiScanArgs scan_args() {
    BiScanArgs s;
    s.B = kB, s.L = kL, s.E = kE, s.N = kN;
    for (int k = 0; k < 2; ++k) {
      ScanDirectionArgs& d = s.dir[k];
      d.u = u[k].data(), d.ldu = kE, d.delta = delta[k].data(), d.lddelta = kE, d.A = A.data();
      d.Bm = xdbl[k].data() + kR, d.ldB = kR + 2 * kN, d.Cm = xdbl[k].data() + kR + kN, d.ldC = kR + 2 * kN;
      d.D = D.data(), d.delta_bias = dbias.data();
    }
    s.z = xz.data() + kE, s.ldz = 2 * kE;
    return s;
  }

  // The FP32 block, as the runtime runs it: norm, in_proj, per direction conv/x_proj, the
  // bidirectional scan with dt_proj inside (ScanDtProjF32), out_proj.
  void run_fp32() {
    add_rmsnorm_f32(kT, kD, x.data(), res.data(), res.data(), norm_w.data(), 1e-5f, normed.data());
    gemm_f32(false, true, kT, 2 * kE, kD, normed.data(), kD, w_in.data(), kD, nullptr, false, xz.data(), 2 * kE);
    for (int k = 0; k < 2; ++k) {
      causal_conv1d_f32(kB, kL, kE, kK, xz.data(), 2 * kE, conv_w.data(), conv_b.data(), k == 1, true, u[k].data(), kE);
      gemm_f32(false, true, kT, kR + 2 * kN, kE, u[k].data(), kE, w_x.data(), kE, nullptr, false, xdbl[k].data(),
               kR + 2 * kN);
    }
    BiScanArgs s = scan_args();
    ScanDtProjF32 dt_proj[2];
    for (int k = 0; k < 2; ++k) {
      dt_proj[k] = {xdbl[k].data(), kR + 2 * kN, w_dt.data(), kR};
      s.dir[k].delta = nullptr;
      s.dir[k].dt_proj_f32 = &dt_proj[k];
    }
    s.y = y.data(), s.ldy = kE;
    selective_scan_bidir_f32(s);
    gemm_f32(false, true, kT, kD, kE, y.data(), kE, w_out.data(), kE, nullptr, false, out.data(), kD);
  }

  // The INT8 block: every linear's input is produced already quantized by the op before it;
  // dt_proj is computed inside the scan.
  void run_int8() {
    add_rmsnorm_quantize_f32(kT, kD, x.data(), res.data(), res.data(), norm_w.data(), 1e-5f, nullptr,
                             quantizer(ones_d), a_in.data(), kD);
    gemm_u8s8_f32(kT, 2 * kE, kD, a_in.data(), kD, *p_in, epilogue(w_scale_2e, nullptr), xz.data(), 2 * kE);
    for (int k = 0; k < 2; ++k) {
      causal_conv1d_silu_quantize_f32(kB, kL, kE, kK, xz.data(), 2 * kE, conv_w.data(), conv_b.data(), k == 1,
                                      u[k].data(), kE, quantizer(ones_e), a_x[k].data(), kE, MathMode::fast);
      gemm_u8s8_f32(kT, kR + 2 * kN, kE, a_x[k].data(), kE, *p_x, epilogue(w_scale_x, nullptr), xdbl[k].data(),
                    kR + 2 * kN);
      quantize_u8(kT, kR, kL, xdbl[k].data(), kR + 2 * kN, ones_r.data(), inv_scale.data(), zero.data(), 255,
                  a_dt[k].data(), kR);
    }
    scan_int8();
    gemm_u8s8_f32(kT, kD, kE, a_out.data(), kE, *p_out, epilogue(w_scale_d, nullptr), out.data(), kD);
  }

  // The INT8 block's scan alone: dt_proj inside the scan (ScanDtProjInt8), fast math, the
  // output quantized for out_proj, as the CPU executor runs a quantized scan.
  void scan_int8() {
    ScanDtProjInt8 dt_proj[2];
    BiScanArgs s = scan_args();
    for (int k = 0; k < 2; ++k) {
      dt_proj[k] = {a_dt[k].data(), kR, kL, a_scale.data(), zero.data(), q_dt.data(), w_scale_e.data(), kR};
      s.dir[k].delta = nullptr;
      s.dir[k].dt_proj = &dt_proj[k];
    }
    s.q = a_out.data(), s.ldq = kE, s.quant = quantizer(ones_e);
    s.math = MathMode::fast;
    selective_scan_bidir_f32(s);
  }
};

}  // namespace

int main(int argc, char** argv) {
  int reps = 30;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--cpu-time") == 0) g_cpu_time = true;
    else reps = std::max(1, std::atoi(argv[i]));
  }
  if (g_cpu_time) set_num_threads(1);
  std::printf("%-22s %-24s %-11s %9s %9s %9s\n", "op", "shape", "isa", "median_ms", "min_ms", "G(FL)OP/s");
  std::vector<Isa> isas;
  for (Isa isa : {Isa::Scalar, Isa::Avx2, Isa::Avx512, Isa::Avx512Vnni})
    if (int(isa) <= int(detected_isa())) isas.push_back(isa);

  for (Isa isa : isas) {
    set_active_isa(isa);
    // The portable path is slow; fewer repetitions keep the whole bench short.
    const int n = isa == Isa::Scalar ? std::max(1, reps / 10) : reps;
    const bool fp32_distinct = isa != Isa::Avx512Vnni;  // FP32 kernels are the same at avx512 and avx512vnni
    const bool int8_distinct = isa != Isa::Avx512;      // INT8 at avx512 without VNNI runs the AVX2 kernel
    for (const auto& g : kGemms) {
      if (fp32_distinct) {
        auto A = random_floats(size_t(g.M * g.K), -1, 1, 1), W = random_floats(size_t(g.N * g.K), -1, 1, 2);
        Buffer<float> C(size_t(g.M * g.N));
        report("gemm_f32", shape_name(g), isa_name(isa), time_ms(n, [&] {
                 gemm_f32(false, true, g.M, g.N, g.K, A.data(), g.K, W.data(), g.K, nullptr, false, C.data(), g.N);
               }),
               2.0 * g.M * g.N * g.K);
      }
      if (int8_distinct) {
        auto A = random_u8(size_t(g.M * g.K), 3);
        auto qw = random_s8(size_t(g.N * g.K), 4);
        auto W = pack_int8_weights(g.N, g.K, qw.data());
        Buffer<float> C(size_t(g.M * g.N)), scale(size_t(std::max(g.M, g.N)), 0.01f);
        Buffer<int32_t> zero(size_t(g.M), 7);
        Int8Epilogue ep;
        ep.period = g.M, ep.a_scale = scale.data(), ep.a_zero = zero.data(), ep.w_scale = scale.data();
        report("gemm_u8s8_f32", shape_name(g), isa_name(isa), time_ms(n, [&] {
                 gemm_u8s8_f32(g.M, g.N, g.K, A.data(), g.K, *W, ep, C.data(), g.N);
               }),
               2.0 * g.M * g.N * g.K);
      }
    }
    if (!fp32_distinct) continue;
    Block blk;
    {
      // One direction as selective_scan_f32 runs it: softplus(Δ + bias), D skip, SiLU(z) gate.
      ScanArgs s;
      s.B = kB, s.L = kL, s.E = kE, s.N = kN;
      s.u = blk.u[0].data(), s.ldu = kE, s.delta = blk.delta[0].data(), s.lddelta = kE, s.A = blk.A.data();
      s.Bm = blk.xdbl[0].data() + kR, s.ldB = kR + 2 * kN, s.Cm = blk.xdbl[0].data() + kR + kN, s.ldC = kR + 2 * kN;
      s.D = blk.D.data(), s.z = blk.xz.data() + kE, s.ldz = 2 * kE, s.delta_bias = blk.dbias.data();
      s.y = blk.y.data(), s.ldy = kE;
      // Counted as 1 state update = 1 exp + 3 multiply-adds ≈ 8 "flops", for comparison only.
      report("scan_f32 (1 dir)", "8x197x384 N=16", isa_name(isa), time_ms(n, [&] { selective_scan_f32(s); }),
             8.0 * kT * kE * kN);
      BiScanArgs bi = blk.scan_args();
      bi.y = blk.y.data(), bi.ldy = kE;
      report("scan_bidir_f32", "8x197x384 N=16", isa_name(isa), time_ms(n, [&] { selective_scan_bidir_f32(bi); }),
             16.0 * kT * kE * kN);
      bi.y = nullptr, bi.q = blk.a_out.data(), bi.ldq = kE, bi.quant = blk.quantizer(blk.ones_e);
      report("scan_bidir_quant", "8x197x384 N=16", isa_name(isa), time_ms(n, [&] { selective_scan_bidir_f32(bi); }),
             16.0 * kT * kE * kN);
      bi.math = MathMode::fast;
      report("scan_bidir_quant_fast", "8x197x384 N=16", isa_name(isa), time_ms(n, [&] { selective_scan_bidir_f32(bi); }),
             16.0 * kT * kE * kN);
    }
    report("conv1d_silu_f32", "8x197x384 K=4", isa_name(isa), time_ms(n, [&] {
             causal_conv1d_f32(kB, kL, kE, kK, blk.xz.data(), 2 * kE, blk.conv_w.data(), blk.conv_b.data(), false, true,
                               blk.u[0].data(), kE);
           }),
           0);
    report("conv1d_silu_quant", "8x197x384 K=4", isa_name(isa), time_ms(n, [&] {
             causal_conv1d_silu_quantize_f32(kB, kL, kE, kK, blk.xz.data(), 2 * kE, blk.conv_w.data(), blk.conv_b.data(),
                                             false, blk.u[0].data(), kE, blk.quantizer(blk.ones_e), blk.a_x[0].data(), kE,
                                             MathMode::fast);
           }),
           0);
    report("add_rmsnorm_f32", "1576x192", isa_name(isa), time_ms(n, [&] {
             add_rmsnorm_f32(kT, kD, blk.x.data(), blk.res.data(), blk.res.data(), blk.norm_w.data(), 1e-5f,
                             blk.normed.data());
           }),
           0);
    report("add_rmsnorm_quant", "1576x192", isa_name(isa), time_ms(n, [&] {
             add_rmsnorm_quantize_f32(kT, kD, blk.x.data(), blk.res.data(), blk.res.data(), blk.norm_w.data(), 1e-5f,
                                      nullptr, blk.quantizer(blk.ones_d), blk.a_in.data(), kD);
           }),
           0);
  }

  // One whole block at the best ISA, FP32 flow vs INT8 flow (x24 ≈ the Vim-Ti blocks of a batch).
  set_active_isa(detected_isa());
  Block blk;
  const Timing fp32 = time_ms(reps, [&] { blk.run_fp32(); });
  const Timing int8 = time_ms(reps, [&] { blk.run_int8(); });
  report("vim_ti_block_fp32", "batch 8", isa_name(detected_isa()), fp32, 0);
  report("vim_ti_block_int8", "batch 8", isa_name(detected_isa()), int8, 0);
  // The INT8 block's scan on its own, at AVX-512 and (where present) VNNI, whose build computes
  // dt_proj on vpdpbusd; the inputs are those run_int8 left.
  for (Isa isa : {Isa::Avx512, Isa::Avx512Vnni}) {
    if (int(isa) > int(detected_isa())) continue;
    set_active_isa(isa);
    report("scan_bidir_int8_block", "8x197x384 N=16 dt_proj", isa_name(isa), time_ms(reps, [&] { blk.scan_int8(); }),
           16.0 * kT * kE * kN);
  }
  set_active_isa(detected_isa());
  std::printf("Vim-Ti block, batch 8: INT8 speedup %.2fx (median) / %.2fx (min); 24 blocks ≈ %.0f ms FP32, %.0f ms INT8\n",
              fp32.median_ms / int8.median_ms, fp32.min_ms / int8.min_ms, 24 * fp32.median_ms, 24 * int8.median_ms);

  std::printf("{\"bench\":\"cpu_kernels\",\"threads\":%d,\"clock\":\"%s\",\"detected_isa\":\"%s\","
              "\"block_speedup\":%.3f,\"results\":[",
              num_threads(), g_cpu_time ? "cpu" : "wall", isa_name(detected_isa()), fp32.median_ms / int8.median_ms);
  for (size_t i = 0; i < g_results.size(); ++i) {
    const auto& r = g_results[i];
    std::printf("%s{\"op\":\"%s\",\"shape\":\"%s\",\"isa\":\"%s\",\"median_ms\":%.4f,\"min_ms\":%.4f,\"gops\":%.2f}",
                i ? "," : "", r.op.c_str(), r.shape.c_str(), r.isa.c_str(), r.t.median_ms, r.t.min_ms, r.gops);
  }
  std::printf("]}\n");
  return 0;
}
