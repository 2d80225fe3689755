// Bindings of the JLSS autograd kernels (train.h) for lib/autograd. Every function takes either
// Float32Array (the fast path: the FP32 forward kernels of gemm.h / conv1d.h / scan.h /
// scan_bidir.h, the INT8 product of gemm_int8.h and the float backward) or Float64Array (double
// forwards and backward, for gradient checks) operands, all of one type, chosen by the first
// array argument. Matrices are contiguous token-major [rows, cols]. Backward functions ADD into
// their gradient outputs, or overwrite them where an `accumulate` argument is false; a null
// gradient is skipped. Synchronous: calibration runs them back to back from one caller.
#include <algorithm>
#include <cmath>
#include <initializer_list>
#include <limits>
#include <new>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "args.h"
#include "ptq4vm/conv1d.h"
#include "ptq4vm/gemm.h"
#include "ptq4vm/gemm_int8.h"
#include "ptq4vm/scan.h"
#include "ptq4vm/scan_bidir.h"
#include "ptq4vm/train.h"
#include "registry.h"

namespace ptq4vm::binding {
namespace {

constexpr int64_t kMaxDim = std::numeric_limits<int32_t>::max();
constexpr int64_t kMaxQmaxAct = 65535;
constexpr int64_t kMaxQmaxWeight = 127;

template <typename T> struct FloatArray;
template <> struct FloatArray<float> {
  static constexpr napi_typedarray_type kType = napi_float32_array;
  static constexpr const char* kName = "Float32Array";
};
template <> struct FloatArray<double> {
  static constexpr napi_typedarray_type kType = napi_float64_array;
  static constexpr const char* kName = "Float64Array";
};

// Args plus float arrays of either precision (args.h has Float32Array only).
class TrainArgs : public Args {
 public:
  TrainArgs(const Napi::CallbackInfo& info, const char* fn, size_t count) : Args(info, fn, count), info_(info), fn_(fn) {}

  // True for Float64Array operands, false for Float32Array; anything else is a TypeError.
  bool is_f64(size_t i, const char* name) const {
    if (info_[i].IsTypedArray()) {
      const auto t = info_[i].As<Napi::TypedArray>().TypedArrayType();
      if (t == napi_float32_array) return false;
      if (t == napi_float64_array) return true;
    }
    throw Napi::TypeError::New(env(), std::string(fn_) + ": '" + name + "' must be a Float32Array or Float64Array");
  }

  template <typename T>
  Span<T> floats(size_t i, const char* name, int64_t min_length, bool nullable = false) const {
    if (nullable && is_null(i)) return {};
    if (!info_[i].IsTypedArray() || info_[i].As<Napi::TypedArray>().TypedArrayType() != FloatArray<T>::kType) {
      throw Napi::TypeError::New(env(), std::string(fn_) + ": '" + name + "' must be a " + FloatArray<T>::kName +
                                            (nullable ? " or null" : "") + " like the other operands");
    }
    auto arr = info_[i].As<Napi::TypedArray>();
    const int64_t len = static_cast<int64_t>(arr.ElementLength());
    if (len < min_length) {
      fail(std::string("'") + name + "' has " + std::to_string(len) + " elements, needs " + std::to_string(min_length));
    }
    auto* base = static_cast<uint8_t*>(arr.ArrayBuffer().Data()) + arr.ByteOffset();
    if (reinterpret_cast<uintptr_t>(base) % alignof(T) != 0) fail(std::string("'") + name + "' is not aligned");
    return {reinterpret_cast<T*>(base), len};
  }

  // Every element finite and > 0 (step sizes, smoothing factors).
  template <typename T>
  void require_positive(const Span<T>& s, int64_t n, const char* name) const {
    for (int64_t i = 0; i < n && s.data; ++i) {
      if (!(std::isfinite(double(s.data[i])) && s.data[i] > 0)) {
        fail(std::string("'") + name + "'[" + std::to_string(i) + "] = " + std::to_string(double(s.data[i])) +
             " must be positive and finite");
      }
    }
  }

 private:
  const Napi::CallbackInfo& info_;
  const char* fn_;
};

// ---- trainGemm(transA, transB, M, N, K, A, lda, B, ldb, accumulate, C, ldc) ----
// C[M,N] (+)= op(A)·op(B), the gemm.h contract without bias.
template <typename T>
void gemm_impl(const TrainArgs& a) {
  const bool ta = a.boolean(0, "transA"), tb = a.boolean(1, "transB");
  const int64_t M = a.integer(2, "M", 0, kMaxDim), N = a.integer(3, "N", 0, kMaxDim), K = a.integer(4, "K", 0, kMaxDim);
  const int64_t lda = a.integer(6, "lda", 0, kMaxDim), ldb = a.integer(8, "ldb", 0, kMaxDim);
  const int64_t ldc = a.integer(11, "ldc", 0, kMaxDim);
  const int64_t na = ta ? strided_extent(a, "A", K, M, lda) : strided_extent(a, "A", M, K, lda);
  const int64_t nb = tb ? strided_extent(a, "B", N, K, ldb) : strided_extent(a, "B", K, N, ldb);
  const int64_t nc = strided_extent(a, "C", M, N, ldc);
  auto A = a.floats<T>(5, "A", na);
  auto B = a.floats<T>(7, "B", nb);
  const bool acc = a.boolean(9, "accumulate");
  auto C = a.floats<T>(10, "C", nc);
  check_disjoint(a, "C", C.data, nc, "A", A.data, na);
  check_disjoint(a, "C", C.data, nc, "B", B.data, nb);
  run_kernel(a, [&] {
    if constexpr (std::is_same_v<T, float>) {
      gemm_f32(ta, tb, M, N, K, A.data, lda, B.data, ldb, nullptr, acc, C.data, ldc);
    } else {
      gemm_f64(ta, tb, M, N, K, A.data, lda, B.data, ldb, nullptr, acc, C.data, ldc);
    }
  });
}
Napi::Value TrainGemm(const Napi::CallbackInfo& info) {
  TrainArgs a(info, "trainGemm", 12);
  if (a.is_f64(5, "A")) gemm_impl<double>(a);
  else gemm_impl<float>(a);
  return info.Env().Undefined();
}

// ---- Conv1d: shared argument prefix (B, L, E, K, x, weight, bias|null, reverse, silu) ----
template <typename T>
struct ConvArgs {
  int64_t B, L, E, K, n;
  Span<T> x, w, bias;
  bool reverse, silu;
};
template <typename T>
ConvArgs<T> conv_args(const TrainArgs& a) {
  ConvArgs<T> c;
  c.B = a.integer(0, "B", 0, kMaxDim);
  c.L = a.integer(1, "L", 0, kMaxDim);
  c.E = a.integer(2, "E", 0, kMaxDim);
  c.K = a.integer(3, "K", 1, 64);
  c.n = checked_mul(a, checked_mul(a, c.B, c.L), c.E);
  c.x = a.floats<T>(4, "x", c.n);
  c.w = a.floats<T>(5, "weight", checked_mul(a, c.E, c.K));
  c.bias = a.floats<T>(6, "bias", c.E, true);
  c.reverse = a.boolean(7, "reverse");
  c.silu = a.boolean(8, "silu");
  return c;
}

// trainConv1d(B, L, E, K, x, weight, bias|null, reverse, silu, out)
template <typename T>
void conv_impl(const TrainArgs& a) {
  const ConvArgs<T> c = conv_args<T>(a);
  auto out = a.floats<T>(9, "out", c.n);
  check_disjoint(a, "out", out.data, c.n, "x", c.x.data, c.n);
  run_kernel(a, [&] {
    if constexpr (std::is_same_v<T, float>) {
      causal_conv1d_f32(c.B, c.L, c.E, c.K, c.x.data, c.E, c.w.data, c.bias.data, c.reverse, c.silu, out.data, c.E);
    } else {
      causal_conv1d_f64(c.B, c.L, c.E, c.K, c.x.data, c.E, c.w.data, c.bias.data, c.reverse, c.silu, out.data, c.E);
    }
  });
}
Napi::Value TrainConv1d(const Napi::CallbackInfo& info) {
  TrainArgs a(info, "trainConv1d", 10);
  if (a.is_f64(4, "x")) conv_impl<double>(a);
  else conv_impl<float>(a);
  return info.Env().Undefined();
}

// trainConv1dBackward(B, L, E, K, x, weight, bias|null, reverse, silu, dout, dx, accumulate)
template <typename T>
void conv_backward_impl(const TrainArgs& a) {
  const ConvArgs<T> c = conv_args<T>(a);
  auto dout = a.floats<T>(9, "dout", c.n);
  auto dx = a.floats<T>(10, "dx", c.n);
  const bool acc = a.boolean(11, "accumulate");
  check_disjoint(a, "dx", dx.data, c.n, "x", c.x.data, c.n);
  check_disjoint(a, "dx", dx.data, c.n, "dout", dout.data, c.n);
  run_kernel(a, [&] {
    causal_conv1d_backward<T>(c.B, c.L, c.E, c.K, c.x.data, c.E, c.w.data, c.bias.data, c.reverse, c.silu, dout.data,
                              c.E, dx.data, c.E, acc);
  });
}
Napi::Value TrainConv1dBackward(const Napi::CallbackInfo& info) {
  TrainArgs a(info, "trainConv1dBackward", 12);
  if (a.is_f64(4, "x")) conv_backward_impl<double>(a);
  else conv_backward_impl<float>(a);
  return info.Env().Undefined();
}

// ---- Scan: shared prefix (B, L, E, N, u, delta, A, Bm, Cm, D|null, z|null, deltaBias|null, softplus, reverse,
// outScale); y = outScale · scan ----
template <typename T>
struct ScanArgsT {
  int64_t n_be, n_bn;
  ScanOperands<T> s;
};
template <typename T>
ScanArgsT<T> scan_args(const TrainArgs& a) {
  ScanArgsT<T> r;
  ScanOperands<T>& s = r.s;
  s.B = a.integer(0, "B", 0, kMaxDim);
  s.L = a.integer(1, "L", 0, kMaxDim);
  s.E = a.integer(2, "E", 0, kMaxDim);
  s.N = a.integer(3, "N", 0, kMaxDim);
  const int64_t rows = checked_mul(a, s.B, s.L);
  r.n_be = checked_mul(a, rows, s.E);
  r.n_bn = checked_mul(a, rows, s.N);
  s.u = a.floats<T>(4, "u", r.n_be).data;
  s.delta = a.floats<T>(5, "delta", r.n_be).data;
  s.A = a.floats<T>(6, "A", checked_mul(a, s.E, s.N)).data;
  s.Bm = a.floats<T>(7, "B", r.n_bn).data;
  s.Cm = a.floats<T>(8, "C", r.n_bn).data;
  s.D = a.floats<T>(9, "D", s.E, true).data;
  s.z = a.floats<T>(10, "z", r.n_be, true).data;
  s.delta_bias = a.floats<T>(11, "deltaBias", s.E, true).data;
  s.delta_softplus = a.boolean(12, "softplus");
  s.reverse = a.boolean(13, "reverse");
  s.out_scale = static_cast<T>(a.number(14, "outScale"));
  s.ldu = s.lddelta = s.ldz = s.E;
  s.ldB = s.ldC = s.N;
  // The backward's per-thread workspace, below 8·(L + 1)·(N + 1)·lanes elements, must not overflow.
  checked_mul(a, checked_mul(a, checked_add(a, s.L, 1), checked_add(a, s.N, 1)), 1024);
  return r;
}

// trainScan(B, L, E, N, u, delta, A, B, C, D|null, z|null, deltaBias|null, softplus, reverse, outScale,
//           accumulate, y): y (+)= outScale · scan
template <typename T>
void scan_impl(const TrainArgs& a) {
  const ScanArgsT<T> r = scan_args<T>(a);
  const ScanOperands<T>& s = r.s;
  const bool accumulate = a.boolean(15, "accumulate");
  auto y = a.floats<T>(16, "y", r.n_be);
  check_disjoint(a, "y", y.data, r.n_be, "u", s.u, r.n_be);
  check_disjoint(a, "y", y.data, r.n_be, "delta", s.delta, r.n_be);
  check_disjoint(a, "y", y.data, r.n_be, "z", s.z, r.n_be);
  check_disjoint(a, "y", y.data, r.n_be, "B", s.Bm, r.n_bn);
  check_disjoint(a, "y", y.data, r.n_be, "C", s.Cm, r.n_bn);
  run_kernel(a, [&] {
    if constexpr (std::is_same_v<T, float>) {
      ScanArgs f;
      f.B = s.B; f.L = s.L; f.E = s.E; f.N = s.N;
      f.u = s.u; f.ldu = s.E; f.delta = s.delta; f.lddelta = s.E; f.A = s.A;
      f.Bm = s.Bm; f.ldB = s.N; f.Cm = s.Cm; f.ldC = s.N; f.D = s.D; f.z = s.z; f.ldz = s.E;
      f.delta_bias = s.delta_bias; f.delta_softplus = s.delta_softplus; f.reverse = s.reverse;
      f.accumulate = accumulate; f.out_scale = s.out_scale; f.y = y.data; f.ldy = s.E;
      selective_scan_f32(f);
    } else {
      selective_scan_f64(s, accumulate, y.data, s.E);
    }
  });
}
Napi::Value TrainScan(const Napi::CallbackInfo& info) {
  TrainArgs a(info, "trainScan", 17);
  if (a.is_f64(4, "u")) scan_impl<double>(a);
  else scan_impl<float>(a);
  return info.Env().Undefined();
}

// trainScanBidir(B, L, E, N, u0, delta0, A0, B0, C0, D0|null, deltaBias0|null, u1, delta1, A1, B1, C1, D1|null,
//                deltaBias1|null, z, softplus, y): y = (scan_fwd + scan_rev) · 0.5 · silu(z), direction 0 forward
// in time, 1 reversed (scan_bidir.h; float64: two selective_scan_f64 runs).
template <typename T>
void scan_bidir_impl(const TrainArgs& a) {
  ScanOperands<T> d[2];
  const int64_t B = a.integer(0, "B", 0, kMaxDim), L = a.integer(1, "L", 0, kMaxDim);
  const int64_t E = a.integer(2, "E", 0, kMaxDim), N = a.integer(3, "N", 0, kMaxDim);
  const int64_t rows = checked_mul(a, B, L), n_be = checked_mul(a, rows, E), n_bn = checked_mul(a, rows, N);
  static const char* const kNames[2][7] = {{"u0", "delta0", "A0", "B0", "C0", "D0", "deltaBias0"},
                                           {"u1", "delta1", "A1", "B1", "C1", "D1", "deltaBias1"}};
  for (int k = 0; k < 2; ++k) {
    const size_t i = 4 + 7 * size_t(k);
    ScanOperands<T>& s = d[k];
    s.B = B; s.L = L; s.E = E; s.N = N;
    s.u = a.floats<T>(i, kNames[k][0], n_be).data;
    s.delta = a.floats<T>(i + 1, kNames[k][1], n_be).data;
    s.A = a.floats<T>(i + 2, kNames[k][2], checked_mul(a, E, N)).data;
    s.Bm = a.floats<T>(i + 3, kNames[k][3], n_bn).data;
    s.Cm = a.floats<T>(i + 4, kNames[k][4], n_bn).data;
    s.D = a.floats<T>(i + 5, kNames[k][5], E, true).data;
    s.delta_bias = a.floats<T>(i + 6, kNames[k][6], E, true).data;
    s.ldu = s.lddelta = s.ldz = E;
    s.ldB = s.ldC = N;
    s.reverse = k == 1;
    s.out_scale = T(0.5);
  }
  const T* z = a.floats<T>(18, "z", n_be).data;
  const bool softplus = a.boolean(19, "softplus");
  auto y = a.floats<T>(20, "y", n_be);
  for (int k = 0; k < 2; ++k) {
    d[k].z = z;
    d[k].delta_softplus = softplus;
    check_disjoint(a, "y", y.data, n_be, kNames[k][0], d[k].u, n_be);
    check_disjoint(a, "y", y.data, n_be, kNames[k][1], d[k].delta, n_be);
    check_disjoint(a, "y", y.data, n_be, kNames[k][3], d[k].Bm, n_bn);
    check_disjoint(a, "y", y.data, n_be, kNames[k][4], d[k].Cm, n_bn);
  }
  check_disjoint(a, "y", y.data, n_be, "z", z, n_be);
  run_kernel(a, [&] {
    if constexpr (std::is_same_v<T, float>) {
      BiScanArgs f;
      f.B = B; f.L = L; f.E = E; f.N = N;
      for (int k = 0; k < 2; ++k) {
        ScanDirectionArgs& o = f.dir[k];
        const ScanOperands<T>& s = d[k];
        o.u = s.u; o.ldu = E; o.delta = s.delta; o.lddelta = E; o.A = s.A;
        o.Bm = s.Bm; o.ldB = N; o.Cm = s.Cm; o.ldC = N; o.D = s.D; o.delta_bias = s.delta_bias;
      }
      f.z = z; f.ldz = E; f.delta_softplus = softplus; f.y = y.data; f.ldy = E;
      selective_scan_bidir_f32(f);
    } else {
      selective_scan_f64(d[0], false, y.data, E);
      selective_scan_f64(d[1], true, y.data, E);
    }
  });
}
Napi::Value TrainScanBidir(const Napi::CallbackInfo& info) {
  TrainArgs a(info, "trainScanBidir", 21);
  if (a.is_f64(4, "u0")) scan_bidir_impl<double>(a);
  else scan_bidir_impl<float>(a);
  return info.Env().Undefined();
}

// Gradient outputs of the scan backward: the named arrays must not overlap the inputs nor each other.
template <typename T>
struct NamedArray {
  const char* name;
  const T* p;
  int64_t n;
};
template <typename T>
void check_outputs(const Args& a, std::initializer_list<NamedArray<T>> inputs, std::initializer_list<NamedArray<T>> outputs) {
  for (const auto& o : outputs) {
    for (const auto& in : inputs) check_disjoint(a, o.name, o.p, o.n, in.name, in.p, in.n);
    for (const auto& o2 : outputs)
      if (&o2 != &o) check_disjoint(a, o.name, o.p, o.n, o2.name, o2.p, o2.n);
  }
}

// trainScanBackward(B, L, E, N, u, delta, A, B, C, D|null, z|null, deltaBias|null, softplus, reverse,
//                   outScale, dy, du|null, ddelta|null, dB|null, dC|null, dz|null, accumulate)
template <typename T>
void scan_backward_impl(const TrainArgs& a) {
  const ScanArgsT<T> r = scan_args<T>(a);
  const ScanOperands<T>& s = r.s;
  ScanGrads<T> g;
  g.dy = a.floats<T>(15, "dy", r.n_be).data;
  g.du = a.floats<T>(16, "du", r.n_be, true).data;
  g.ddelta = a.floats<T>(17, "ddelta", r.n_be, true).data;
  g.dB = a.floats<T>(18, "dB", r.n_bn, true).data;
  g.dC = a.floats<T>(19, "dC", r.n_bn, true).data;
  g.dz = a.floats<T>(20, "dz", r.n_be, true).data;
  const bool acc = a.boolean(21, "accumulate");
  if (g.dz && !s.z) a.fail("'dz' given but 'z' is null");
  g.lddy = g.lddu = g.ldddelta = g.lddz = s.E;
  g.lddB = g.lddC = s.N;
  check_outputs<T>(a,
                   {{"u", s.u, r.n_be}, {"delta", s.delta, r.n_be}, {"B", s.Bm, r.n_bn}, {"C", s.Cm, r.n_bn},
                    {"z", s.z, r.n_be}, {"dy", g.dy, r.n_be}},
                   {{"du", g.du, r.n_be}, {"ddelta", g.ddelta, r.n_be}, {"dB", g.dB, r.n_bn}, {"dC", g.dC, r.n_bn},
                    {"dz", g.dz, r.n_be}});
  run_kernel(a, [&] { selective_scan_backward<T>(&s, &g, 1, acc); });
}
Napi::Value TrainScanBackward(const Napi::CallbackInfo& info) {
  TrainArgs a(info, "trainScanBackward", 22);
  if (a.is_f64(4, "u")) scan_backward_impl<double>(a);
  else scan_backward_impl<float>(a);
  return info.Env().Undefined();
}

// trainScanBidirBackward(B, L, E, N, u0, delta0, A0, B0, C0, D0|null, deltaBias0|null, u1, delta1, A1, B1, C1,
//                        D1|null, deltaBias1|null, z|null, softplus, outScale, dy, du0|null, ddelta0|null, dB0|null,
//                        dC0|null, du1|null, ddelta1|null, dB1|null, dC1|null, dz|null, accumulate)
// Gradients of y = outScale · (scan_0 + scan_1) · [silu(z)], direction 0 forward in time, 1 reversed.
template <typename T>
void scan_bidir_backward_impl(const TrainArgs& a) {
  ScanOperands<T> d[2];
  ScanGrads<T> g[2];
  const int64_t B = a.integer(0, "B", 0, kMaxDim), L = a.integer(1, "L", 0, kMaxDim);
  const int64_t E = a.integer(2, "E", 0, kMaxDim), N = a.integer(3, "N", 0, kMaxDim);
  const int64_t rows = checked_mul(a, B, L), n_be = checked_mul(a, rows, E), n_bn = checked_mul(a, rows, N);
  checked_mul(a, checked_mul(a, checked_add(a, L, 1), checked_add(a, N, 1)), 1024);  // the item workspace
  static const char* const kNames[2][7] = {{"u0", "delta0", "A0", "B0", "C0", "D0", "deltaBias0"},
                                           {"u1", "delta1", "A1", "B1", "C1", "D1", "deltaBias1"}};
  static const char* const kGradNames[2][4] = {{"du0", "ddelta0", "dB0", "dC0"}, {"du1", "ddelta1", "dB1", "dC1"}};
  const T* z = a.floats<T>(18, "z", n_be, true).data;
  const bool softplus = a.boolean(19, "softplus");
  const T out_scale = static_cast<T>(a.number(20, "outScale"));
  const T* dy = a.floats<T>(21, "dy", n_be).data;
  T* dz = a.floats<T>(30, "dz", n_be, true).data;
  const bool acc = a.boolean(31, "accumulate");
  if (dz && !z) a.fail("'dz' given but 'z' is null");
  for (int k = 0; k < 2; ++k) {
    const size_t i = 4 + 7 * size_t(k);
    ScanOperands<T>& s = d[k];
    s.B = B; s.L = L; s.E = E; s.N = N;
    s.u = a.floats<T>(i, kNames[k][0], n_be).data;
    s.delta = a.floats<T>(i + 1, kNames[k][1], n_be).data;
    s.A = a.floats<T>(i + 2, kNames[k][2], checked_mul(a, E, N)).data;
    s.Bm = a.floats<T>(i + 3, kNames[k][3], n_bn).data;
    s.Cm = a.floats<T>(i + 4, kNames[k][4], n_bn).data;
    s.D = a.floats<T>(i + 5, kNames[k][5], E, true).data;
    s.delta_bias = a.floats<T>(i + 6, kNames[k][6], E, true).data;
    s.z = z;
    s.ldu = s.lddelta = s.ldz = E;
    s.ldB = s.ldC = N;
    s.delta_softplus = softplus;
    s.reverse = k == 1;
    s.out_scale = out_scale;
    const size_t j = 22 + 4 * size_t(k);
    ScanGrads<T>& gk = g[k];
    gk.dy = dy;
    gk.du = a.floats<T>(j, kGradNames[k][0], n_be, true).data;
    gk.ddelta = a.floats<T>(j + 1, kGradNames[k][1], n_be, true).data;
    gk.dB = a.floats<T>(j + 2, kGradNames[k][2], n_bn, true).data;
    gk.dC = a.floats<T>(j + 3, kGradNames[k][3], n_bn, true).data;
    gk.dz = k == 0 ? dz : nullptr;
    gk.lddy = gk.lddu = gk.ldddelta = gk.lddz = E;
    gk.lddB = gk.lddC = N;
  }
  check_outputs<T>(a,
                   {{"u0", d[0].u, n_be}, {"delta0", d[0].delta, n_be}, {"B0", d[0].Bm, n_bn}, {"C0", d[0].Cm, n_bn},
                    {"u1", d[1].u, n_be}, {"delta1", d[1].delta, n_be}, {"B1", d[1].Bm, n_bn}, {"C1", d[1].Cm, n_bn},
                    {"z", z, n_be}, {"dy", dy, n_be}},
                   {{"du0", g[0].du, n_be}, {"ddelta0", g[0].ddelta, n_be}, {"dB0", g[0].dB, n_bn},
                    {"dC0", g[0].dC, n_bn}, {"du1", g[1].du, n_be}, {"ddelta1", g[1].ddelta, n_be},
                    {"dB1", g[1].dB, n_bn}, {"dC1", g[1].dC, n_bn}, {"dz", dz, n_be}});
  run_kernel(a, [&] { selective_scan_backward<T>(d, g, 2, acc); });
}
Napi::Value TrainScanBidirBackward(const Napi::CallbackInfo& info) {
  TrainArgs a(info, "trainScanBidirBackward", 32);
  if (a.is_f64(4, "u0")) scan_bidir_backward_impl<double>(a);
  else scan_bidir_backward_impl<float>(a);
  return info.Env().Undefined();
}

// ---- Activation fake quantizer: prefix (rows, cols, period, reversePeriod, x, smooth|null, scale, zero, qmax) ----
template <typename T>
ActQuant<T> act_args(const TrainArgs& a, Span<T>* smooth_out) {
  ActQuant<T> q;
  q.rows = a.integer(0, "rows", 0, kMaxDim);
  q.cols = a.integer(1, "cols", 0, kMaxDim);
  q.period = a.integer(2, "period", 1, kMaxDim);
  q.reverse_period = a.boolean(3, "reversePeriod");
  q.x = a.floats<T>(4, "x", checked_mul(a, q.rows, q.cols)).data;
  q.ldx = q.cols;
  auto smooth = a.floats<T>(5, "smooth", q.cols, true);
  auto scale = a.floats<T>(6, "scale", q.period);
  auto zero = a.i32(7, "zero", q.period);
  q.qmax = static_cast<int>(a.integer(8, "qmax", 1, kMaxQmaxAct));
  a.require_positive(smooth, q.cols, "smooth");
  a.require_positive(scale, q.period, "scale");
  for (int64_t p = 0; p < q.period; ++p) {
    if (zero.data[p] < 0 || zero.data[p] > q.qmax) {
      a.fail("'zero'[" + std::to_string(p) + "] = " + std::to_string(zero.data[p]) + " is outside [0, qmax]");
    }
  }
  q.smooth = smooth.data;
  q.scale = scale.data;
  q.zero = zero.data;
  *smooth_out = smooth;
  return q;
}

// trainFakeQuantAct(rows, cols, period, reversePeriod, x, smooth|null, scale, zero, qmax, out, levels|null)
// levels: Uint8Array [rows, cols] receiving the integer levels (qmax ≤ 255), the u8 operand of trainGemmInt8.
template <typename T>
void act_impl(const TrainArgs& a) {
  Span<T> smooth;
  const ActQuant<T> q = act_args<T>(a, &smooth);
  const int64_t n = q.rows * q.cols;
  auto out = a.floats<T>(9, "out", n);
  uint8_t* levels = nullptr;
  if (!a.is_null(10)) {
    if (q.qmax > 255) a.fail("'levels' needs qmax ≤ 255, got " + std::to_string(q.qmax));
    levels = a.u8(10, "levels", n).data;
  }
  check_disjoint(a, "out", out.data, n, "x", q.x, n);
  check_disjoint(a, "levels", levels, n, "x", q.x, n);
  check_disjoint(a, "levels", levels, n, "out", out.data, n);
  run_kernel(a, [&] { fake_quant_act_forward<T>(q, out.data, q.cols, levels, q.cols); });
}
Napi::Value TrainFakeQuantAct(const Napi::CallbackInfo& info) {
  TrainArgs a(info, "trainFakeQuantAct", 11);
  if (a.is_f64(4, "x")) act_impl<double>(a);
  else act_impl<float>(a);
  return info.Env().Undefined();
}

// trainFakeQuantActBackward(rows, cols, period, reversePeriod, x, smooth|null, scale, zero, qmax,
//                           dout, dx|null, dsmooth|null, dscale|null, accumulateDx)
template <typename T>
void act_backward_impl(const TrainArgs& a) {
  Span<T> smooth;
  const ActQuant<T> q = act_args<T>(a, &smooth);
  const int64_t n = q.rows * q.cols;
  auto dout = a.floats<T>(9, "dout", n);
  auto dx = a.floats<T>(10, "dx", n, true);
  auto dsmooth = a.floats<T>(11, "dsmooth", q.cols, true);
  auto dscale = a.floats<T>(12, "dscale", q.period, true);
  const bool acc_dx = a.boolean(13, "accumulateDx");
  if (dsmooth.data && !q.smooth) a.fail("'dsmooth' given but 'smooth' is null");
  check_disjoint(a, "dx", dx.data, n, "x", q.x, n);
  check_disjoint(a, "dx", dx.data, n, "dout", dout.data, n);
  check_disjoint(a, "dsmooth", dsmooth.data, q.cols, "smooth", q.smooth, q.cols);
  check_disjoint(a, "dscale", dscale.data, q.period, "scale", q.scale, q.period);
  check_disjoint(a, "dsmooth", dsmooth.data, q.cols, "dscale", dscale.data, q.period);
  run_kernel(a, [&] {
    fake_quant_act_backward<T>(q, dout.data, q.cols, dx.data, q.cols, dsmooth.data, dscale.data, acc_dx);
  });
}
Napi::Value TrainFakeQuantActBackward(const Napi::CallbackInfo& info) {
  TrainArgs a(info, "trainFakeQuantActBackward", 14);
  if (a.is_f64(4, "x")) act_backward_impl<double>(a);
  else act_backward_impl<float>(a);
  return info.Env().Undefined();
}

// ---- Weight fake quantizer: prefix (rows, cols, w, smooth|null, scale, qmax) ----
template <typename T>
WeightQuant<T> weight_args(const TrainArgs& a) {
  WeightQuant<T> q;
  q.rows = a.integer(0, "rows", 0, kMaxDim);
  q.cols = a.integer(1, "cols", 0, kMaxDim);
  q.w = a.floats<T>(2, "w", checked_mul(a, q.rows, q.cols)).data;
  q.ldw = q.cols;
  auto smooth = a.floats<T>(3, "smooth", q.cols, true);
  auto scale = a.floats<T>(4, "scale", q.rows);
  q.qmax = static_cast<int>(a.integer(5, "qmax", 1, kMaxQmaxWeight));
  a.require_positive(smooth, q.cols, "smooth");
  a.require_positive(scale, q.rows, "scale");
  q.smooth = smooth.data;
  q.scale = scale.data;
  return q;
}

// trainFakeQuantWeight(rows, cols, w, smooth|null, scale, qmax, out)
template <typename T>
void weight_impl(const TrainArgs& a) {
  const WeightQuant<T> q = weight_args<T>(a);
  const int64_t n = q.rows * q.cols;
  auto out = a.floats<T>(6, "out", n);
  check_disjoint(a, "out", out.data, n, "w", q.w, n);
  run_kernel(a, [&] { fake_quant_weight_forward<T>(q, out.data, q.cols); });
}
Napi::Value TrainFakeQuantWeight(const Napi::CallbackInfo& info) {
  TrainArgs a(info, "trainFakeQuantWeight", 7);
  if (a.is_f64(2, "w")) weight_impl<double>(a);
  else weight_impl<float>(a);
  return info.Env().Undefined();
}

// trainFakeQuantWeightBackward(rows, cols, w, smooth|null, scale, qmax, dout, dw|null, dsmooth|null, dscale|null)
template <typename T>
void weight_backward_impl(const TrainArgs& a) {
  const WeightQuant<T> q = weight_args<T>(a);
  const int64_t n = q.rows * q.cols;
  auto dout = a.floats<T>(6, "dout", n);
  auto dw = a.floats<T>(7, "dw", n, true);
  auto dsmooth = a.floats<T>(8, "dsmooth", q.cols, true);
  auto dscale = a.floats<T>(9, "dscale", q.rows, true);
  if (dsmooth.data && !q.smooth) a.fail("'dsmooth' given but 'smooth' is null");
  check_disjoint(a, "dw", dw.data, n, "w", q.w, n);
  check_disjoint(a, "dw", dw.data, n, "dout", dout.data, n);
  check_disjoint(a, "dsmooth", dsmooth.data, q.cols, "smooth", q.smooth, q.cols);
  check_disjoint(a, "dscale", dscale.data, q.rows, "scale", q.scale, q.rows);
  check_disjoint(a, "dsmooth", dsmooth.data, q.cols, "dscale", dscale.data, q.rows);
  run_kernel(a, [&] { fake_quant_weight_backward<T>(q, dout.data, q.cols, dw.data, q.cols, dsmooth.data, dscale.data); });
}
Napi::Value TrainFakeQuantWeightBackward(const Napi::CallbackInfo& info) {
  TrainArgs a(info, "trainFakeQuantWeightBackward", 10);
  if (a.is_f64(2, "w")) weight_backward_impl<double>(a);
  else weight_backward_impl<float>(a);
  return info.Env().Undefined();
}

// trainWeightLevels(rows, cols, w, smooth|null, scale, qmax, levels: Int8Array)
Napi::Value TrainWeightLevels(const Napi::CallbackInfo& info) {
  TrainArgs a(info, "trainWeightLevels", 7);
  const WeightQuant<float> q = weight_args<float>(a);
  auto levels = a.i8(6, "levels", q.rows * q.cols);
  run_kernel(a, [&] { quantize_weight_levels_f32(q, levels.data, q.cols); });
  return info.Env().Undefined();
}

// ---- INT8 product of fake-quantized operands ----

// trainGemmInt8(M, N, K, aLevels: Uint8Array [M,K], wLevels: Int8Array [N,K], period, reversePeriod, aScale [period],
//               aZero: Int32Array [period], wScale [N], out [M,N], accumulate): out (+)= the gemm_int8.h product with the
// dequantizing epilogue, row m using activation parameters p = m % period (reversed: period − 1 − p) — equal to
// the float product of the fake-quantized operands up to rounding, and exactly what the INT8 model computes.
Napi::Value TrainGemmInt8(const Napi::CallbackInfo& info) {
  TrainArgs a(info, "trainGemmInt8", 12);
  const int64_t M = a.integer(0, "M", 0, kMaxDim), N = a.integer(1, "N", 0, kMaxDim), K = a.integer(2, "K", 0, 32768);
  auto al = a.u8(3, "aLevels", checked_mul(a, M, K));
  auto wl = a.i8(4, "wLevels", checked_mul(a, N, K));
  const int64_t period = a.integer(5, "period", 1, kMaxDim);
  const bool reverse = a.boolean(6, "reversePeriod");
  auto as = a.f32(7, "aScale", period);
  auto az = a.i32(8, "aZero", period);
  auto ws = a.f32(9, "wScale", N);
  auto out = a.f32(10, "out", checked_mul(a, M, N));
  const bool acc = a.boolean(11, "accumulate");
  for (int64_t p = 0; p < period; ++p) {
    if (az.data[p] < 0 || az.data[p] > 255) a.fail("'aZero'[" + std::to_string(p) + "] is outside [0, 255]");
  }
  check_disjoint(a, "out", out.data, M * N, "aScale", as.data, period);
  check_disjoint(a, "out", out.data, M * N, "wScale", ws.data, N);
  run_kernel(a, [&] {
    std::vector<float> scale_rev;
    std::vector<int32_t> zero_rev;
    Int8Epilogue ep;
    ep.period = period;
    ep.a_scale = as.data;
    ep.a_zero = az.data;
    if (reverse) {
      scale_rev.assign(as.data, as.data + period);
      zero_rev.assign(az.data, az.data + period);
      std::reverse(scale_rev.begin(), scale_rev.end());
      std::reverse(zero_rev.begin(), zero_rev.end());
      ep.a_scale = scale_rev.data();
      ep.a_zero = zero_rev.data();
    }
    ep.w_scale = ws.data;
    ep.accumulate = acc;
    if (M == 0 || N == 0) return;
    const PackedInt8WeightsPtr packed = pack_int8_weights(N, K, wl.data);
    gemm_u8s8_f32(M, N, K, al.data, K, *packed, ep, out.data, N);
  });
  return info.Env().Undefined();
}

// ---- Dense helpers ----

// trainCopyCols(rows, cols, src, ldSrc, srcCol, dst, ldDst, dstCol, accumulate):
// dst[r, dstCol + j] (+)= src[r, srcCol + j] for r < rows, j < cols.
template <typename T>
void copy_cols_impl(const TrainArgs& a) {
  const int64_t rows = a.integer(0, "rows", 0, kMaxDim), cols = a.integer(1, "cols", 0, kMaxDim);
  const int64_t lds = a.integer(3, "ldSrc", 0, kMaxDim), sc = a.integer(4, "srcCol", 0, kMaxDim);
  const int64_t ldd = a.integer(6, "ldDst", 0, kMaxDim), dc = a.integer(7, "dstCol", 0, kMaxDim);
  const int64_t ns = strided_extent(a, "src", rows, checked_add(a, sc, cols), lds);
  const int64_t nd = strided_extent(a, "dst", rows, checked_add(a, dc, cols), ldd);
  auto src = a.floats<T>(2, "src", ns);
  auto dst = a.floats<T>(5, "dst", nd);
  const bool acc = a.boolean(8, "accumulate");
  check_disjoint(a, "dst", dst.data, nd, "src", src.data, ns);
  run_kernel(a, [&] { copy_cols<T>(rows, cols, src.data + sc, lds, dst.data + dc, ldd, acc); });
}
Napi::Value TrainCopyCols(const Napi::CallbackInfo& info) {
  TrainArgs a(info, "trainCopyCols", 9);
  if (a.is_f64(2, "src")) copy_cols_impl<double>(a);
  else copy_cols_impl<float>(a);
  return info.Env().Undefined();
}

// trainCosineLoss(rows, cols, out, target, eps, stats: Float64Array[3·rows]) → loss
template <typename T>
double cosine_impl(const TrainArgs& a) {
  const int64_t rows = a.integer(0, "rows", 1, kMaxDim), cols = a.integer(1, "cols", 0, kMaxDim);
  const int64_t n = checked_mul(a, rows, cols);
  auto out = a.floats<T>(2, "out", n);
  auto target = a.floats<T>(3, "target", n);
  const double eps = a.number(4, "eps");
  if (!(eps > 0)) a.fail("'eps' must be positive");
  auto stats = a.floats<double>(5, "stats", checked_mul(a, rows, 3));
  check_disjoint(a, "stats", stats.data, 3 * rows, "out", out.data, n);
  check_disjoint(a, "stats", stats.data, 3 * rows, "target", target.data, n);
  double loss = 0;
  run_kernel(a, [&] { loss = cosine_loss<T>(rows, cols, out.data, target.data, eps, stats.data); });
  return loss;
}
Napi::Value TrainCosineLoss(const Napi::CallbackInfo& info) {
  TrainArgs a(info, "trainCosineLoss", 6);
  const double loss = a.is_f64(2, "out") ? cosine_impl<double>(a) : cosine_impl<float>(a);
  return Napi::Number::New(info.Env(), loss);
}

// trainCosineLossBackward(rows, cols, out, target, eps, stats, g, dout, accumulate): dout (+)= g·∂loss/∂out
template <typename T>
void cosine_backward_impl(const TrainArgs& a) {
  const int64_t rows = a.integer(0, "rows", 1, kMaxDim), cols = a.integer(1, "cols", 0, kMaxDim);
  const int64_t n = checked_mul(a, rows, cols);
  auto out = a.floats<T>(2, "out", n);
  auto target = a.floats<T>(3, "target", n);
  const double eps = a.number(4, "eps");
  if (!(eps > 0)) a.fail("'eps' must be positive");
  auto stats = a.floats<double>(5, "stats", checked_mul(a, rows, 3));
  const double g = a.number(6, "g");
  auto dout = a.floats<T>(7, "dout", n);
  const bool acc = a.boolean(8, "accumulate");
  check_disjoint(a, "dout", dout.data, n, "out", out.data, n);
  check_disjoint(a, "dout", dout.data, n, "target", target.data, n);
  check_disjoint(a, "dout", dout.data, n, "stats", stats.data, 3 * rows);
  run_kernel(a, [&] { cosine_loss_backward<T>(rows, cols, out.data, target.data, eps, stats.data, g, dout.data, acc); });
}
Napi::Value TrainCosineLossBackward(const Napi::CallbackInfo& info) {
  TrainArgs a(info, "trainCosineLossBackward", 9);
  if (a.is_f64(2, "out")) cosine_backward_impl<double>(a);
  else cosine_backward_impl<float>(a);
  return info.Env().Undefined();
}

void Register(Napi::Env env, Napi::Object exports) {
  const std::pair<const char*, Napi::Value (*)(const Napi::CallbackInfo&)> fns[] = {
      {"trainGemm", TrainGemm},
      {"trainGemmInt8", TrainGemmInt8},
      {"trainConv1d", TrainConv1d},
      {"trainConv1dBackward", TrainConv1dBackward},
      {"trainScan", TrainScan},
      {"trainScanBidir", TrainScanBidir},
      {"trainScanBackward", TrainScanBackward},
      {"trainScanBidirBackward", TrainScanBidirBackward},
      {"trainFakeQuantAct", TrainFakeQuantAct},
      {"trainFakeQuantActBackward", TrainFakeQuantActBackward},
      {"trainFakeQuantWeight", TrainFakeQuantWeight},
      {"trainFakeQuantWeightBackward", TrainFakeQuantWeightBackward},
      {"trainWeightLevels", TrainWeightLevels},
      {"trainCopyCols", TrainCopyCols},
      {"trainCosineLoss", TrainCosineLoss},
      {"trainCosineLossBackward", TrainCosineLossBackward},
  };
  for (const auto& [name, fn] : fns) exports.Set(name, Napi::Function::New(env, fn, name));
}

BindingRegistrar registrar("train", &Register);

}  // namespace
}  // namespace ptq4vm::binding
