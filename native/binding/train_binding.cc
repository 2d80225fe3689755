// Bindings of the JLSS autograd kernels (train.h) for lib/autograd. Every function takes either
// Float32Array (the fast path: the FP32 forward kernels of gemm.h / conv1d.h / scan.h and the
// float backward) or Float64Array (double forwards and backward, for gradient checks) operands,
// all of one type, chosen by the first array argument. Matrices are contiguous token-major
// [rows, cols]. Backward functions ADD into their gradient outputs; a null gradient is skipped.
// Synchronous: calibration runs them back to back from one caller.
#include <cmath>
#include <limits>
#include <new>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>

#include "args.h"
#include "ptq4vm/conv1d.h"
#include "ptq4vm/gemm.h"
#include "ptq4vm/scan.h"
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

// Fails unless the n_out elements at out and the n_in elements at in are disjoint.
template <typename T, typename U>
void check_disjoint(const Args& a, const char* out_name, const T* out, int64_t n_out, const char* in_name, const U* in,
                    int64_t n_in) {
  if (!out || !in || n_out == 0 || n_in == 0) return;
  const auto o0 = reinterpret_cast<uintptr_t>(out), o1 = o0 + uintptr_t(n_out) * sizeof(T);
  const auto i0 = reinterpret_cast<uintptr_t>(in), i1 = i0 + uintptr_t(n_in) * sizeof(U);
  if (o0 < i1 && i0 < o1) a.fail(std::string("'") + out_name + "' must not overlap '" + in_name + "'");
}

template <typename F>
void run_kernel(const Args& a, F&& kernel) {
  try {
    kernel();
  } catch (const std::bad_alloc&) {
    a.fail("out of memory");
  } catch (const std::exception& e) {
    a.fail(e.what());
  }
}

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

// trainConv1dBackward(B, L, E, K, x, weight, bias|null, reverse, silu, dout, dx)
template <typename T>
void conv_backward_impl(const TrainArgs& a) {
  const ConvArgs<T> c = conv_args<T>(a);
  auto dout = a.floats<T>(9, "dout", c.n);
  auto dx = a.floats<T>(10, "dx", c.n);
  check_disjoint(a, "dx", dx.data, c.n, "x", c.x.data, c.n);
  check_disjoint(a, "dx", dx.data, c.n, "dout", dout.data, c.n);
  run_kernel(a, [&] {
    causal_conv1d_backward<T>(c.B, c.L, c.E, c.K, c.x.data, c.E, c.w.data, c.bias.data, c.reverse, c.silu, dout.data,
                              c.E, dx.data, c.E);
  });
}
Napi::Value TrainConv1dBackward(const Napi::CallbackInfo& info) {
  TrainArgs a(info, "trainConv1dBackward", 11);
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
  // The backward's per-thread workspace, (4·L·N + 3·L + 2·N)·lanes elements, must not overflow.
  checked_mul(a, checked_mul(a, checked_add(a, s.L, 1), checked_add(a, s.N, 1)), 64);
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

// trainScanBackward(B, L, E, N, u, delta, A, B, C, D|null, z|null, deltaBias|null, softplus, reverse,
//                   outScale, dy, du|null, ddelta|null, dB|null, dC|null, dz|null)
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
  if (g.dz && !s.z) a.fail("'dz' given but 'z' is null");
  g.lddy = g.lddu = g.ldddelta = g.lddz = s.E;
  g.lddB = g.lddC = s.N;
  const struct { const char* name; const T* p; int64_t n; } inputs[] = {
      {"u", s.u, r.n_be}, {"delta", s.delta, r.n_be}, {"B", s.Bm, r.n_bn}, {"C", s.Cm, r.n_bn},
      {"z", s.z, r.n_be}, {"dy", g.dy, r.n_be}};
  const struct { const char* name; T* p; int64_t n; } outputs[] = {
      {"du", g.du, r.n_be}, {"ddelta", g.ddelta, r.n_be}, {"dB", g.dB, r.n_bn}, {"dC", g.dC, r.n_bn},
      {"dz", g.dz, r.n_be}};
  for (const auto& o : outputs) {
    for (const auto& in : inputs) check_disjoint(a, o.name, o.p, o.n, in.name, in.p, in.n);
    for (const auto& o2 : outputs)
      if (&o2 != &o) check_disjoint(a, o.name, o.p, o.n, o2.name, o2.p, o2.n);
  }
  run_kernel(a, [&] { selective_scan_backward<T>(s, g); });
}
Napi::Value TrainScanBackward(const Napi::CallbackInfo& info) {
  TrainArgs a(info, "trainScanBackward", 21);
  if (a.is_f64(4, "u")) scan_backward_impl<double>(a);
  else scan_backward_impl<float>(a);
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

// trainFakeQuantAct(rows, cols, period, reversePeriod, x, smooth|null, scale, zero, qmax, out)
template <typename T>
void act_impl(const TrainArgs& a) {
  Span<T> smooth;
  const ActQuant<T> q = act_args<T>(a, &smooth);
  const int64_t n = q.rows * q.cols;
  auto out = a.floats<T>(9, "out", n);
  check_disjoint(a, "out", out.data, n, "x", q.x, n);
  run_kernel(a, [&] { fake_quant_act_forward<T>(q, out.data, q.cols); });
}
Napi::Value TrainFakeQuantAct(const Napi::CallbackInfo& info) {
  TrainArgs a(info, "trainFakeQuantAct", 10);
  if (a.is_f64(4, "x")) act_impl<double>(a);
  else act_impl<float>(a);
  return info.Env().Undefined();
}

// trainFakeQuantActBackward(rows, cols, period, reversePeriod, x, smooth|null, scale, zero, qmax,
//                           dout, dx|null, dsmooth|null, dscale|null)
template <typename T>
void act_backward_impl(const TrainArgs& a) {
  Span<T> smooth;
  const ActQuant<T> q = act_args<T>(a, &smooth);
  const int64_t n = q.rows * q.cols;
  auto dout = a.floats<T>(9, "dout", n);
  auto dx = a.floats<T>(10, "dx", n, true);
  auto dsmooth = a.floats<T>(11, "dsmooth", q.cols, true);
  auto dscale = a.floats<T>(12, "dscale", q.period, true);
  if (dsmooth.data && !q.smooth) a.fail("'dsmooth' given but 'smooth' is null");
  check_disjoint(a, "dx", dx.data, n, "x", q.x, n);
  check_disjoint(a, "dx", dx.data, n, "dout", dout.data, n);
  check_disjoint(a, "dsmooth", dsmooth.data, q.cols, "smooth", q.smooth, q.cols);
  check_disjoint(a, "dscale", dscale.data, q.period, "scale", q.scale, q.period);
  check_disjoint(a, "dsmooth", dsmooth.data, q.cols, "dscale", dscale.data, q.period);
  run_kernel(a, [&] { fake_quant_act_backward<T>(q, dout.data, q.cols, dx.data, q.cols, dsmooth.data, dscale.data); });
}
Napi::Value TrainFakeQuantActBackward(const Napi::CallbackInfo& info) {
  TrainArgs a(info, "trainFakeQuantActBackward", 13);
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

void Register(Napi::Env env, Napi::Object exports) {
  const std::pair<const char*, Napi::Value (*)(const Napi::CallbackInfo&)> fns[] = {
      {"trainGemm", TrainGemm},
      {"trainConv1d", TrainConv1d},
      {"trainConv1dBackward", TrainConv1dBackward},
      {"trainScan", TrainScan},
      {"trainScanBackward", TrainScanBackward},
      {"trainFakeQuantAct", TrainFakeQuantAct},
      {"trainFakeQuantActBackward", TrainFakeQuantActBackward},
      {"trainFakeQuantWeight", TrainFakeQuantWeight},
      {"trainFakeQuantWeightBackward", TrainFakeQuantWeightBackward},
      {"trainWeightLevels", TrainWeightLevels},
  };
  for (const auto& [name, fn] : fns) exports.Set(name, Napi::Function::New(env, fn, name));
}

BindingRegistrar registrar("train", &Register);

}  // namespace
}  // namespace ptq4vm::binding
