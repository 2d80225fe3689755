// Bindings of the differentiable backbone ops (train_backbone.h) for lib/autograd's tape. Every
// function takes either Float32Array (the JLSS path) or Float64Array (gradient checks) operands,
// all of one type, chosen by the first float array argument; matrices are dense token-major.
// Checked here: dimensions, lengths, that gather/scatter indices lie in [-1, rows) (scatter's
// distinct), that a token-mean selection keeps at least one row, odd conv kernels, positive eps,
// and that no output overlaps an input. Synchronous, like the other autograd kernels.
#include <cmath>
#include <cstdint>
#include <limits>
#include <new>
#include <stdexcept>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "args.h"
#include "ptq4vm/train_backbone.h"
#include "registry.h"

namespace ptq4vm::binding {
namespace {

constexpr int64_t kMaxDim = std::numeric_limits<int32_t>::max();

template <typename T>
constexpr napi_typedarray_type kTypedArray = std::is_same_v<T, float> ? napi_float32_array : napi_float64_array;
template <typename T>
constexpr const char* kTypedArrayName = std::is_same_v<T, float> ? "Float32Array" : "Float64Array";

// Args plus float arrays of either precision.
class FloatArgs : public Args {
 public:
  FloatArgs(const Napi::CallbackInfo& info, const char* fn, size_t count) : Args(info, fn, count), info_(info), fn_(fn) {}

  // True for a Float64Array, false for a Float32Array; anything else is a TypeError.
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
    if (!info_[i].IsTypedArray() || info_[i].As<Napi::TypedArray>().TypedArrayType() != kTypedArray<T>) {
      throw Napi::TypeError::New(env(), std::string(fn_) + ": '" + name + "' must be a " + kTypedArrayName<T> +
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

  double eps(size_t i) const {
    const double e = number(i, "eps");
    if (!(e > 0)) fail("'eps' must be positive");
    return e;
  }

 private:
  const Napi::CallbackInfo& info_;
  const char* fn_;
};

// Every entry in [-1, limit); with `distinct`, no non-negative value twice.
void check_index(const Args& a, const char* name, const int32_t* index, int64_t n, int64_t limit, bool distinct) {
  std::vector<bool> seen(distinct ? size_t(limit) : 0);
  for (int64_t i = 0; i < n; ++i) {
    const int64_t v = index[i];
    if (v < -1 || v >= limit) {
      a.fail(std::string("'") + name + "'[" + std::to_string(i) + "] = " + std::to_string(v) + " is outside [-1, " +
             std::to_string(limit) + ")");
    }
    if (distinct && v >= 0) {
      if (seen[size_t(v)]) a.fail(std::string("'") + name + "' names row " + std::to_string(v) + " twice");
      seen[size_t(v)] = true;
    }
  }
}

// Dispatches on the precision of the float array at `probe`.
template <template <typename> class Impl>
Napi::Value dispatch(const Napi::CallbackInfo& info, const char* fn, size_t count, size_t probe, const char* probe_name) {
  FloatArgs a(info, fn, count);
  if (a.is_f64(probe, probe_name)) Impl<double>::run(a);
  else Impl<float>::run(a);
  return info.Env().Undefined();
}

// ---- trainLayerNorm(rows, cols, x, weight|null, bias|null, eps, out) ----
template <typename T>
struct LayerNormImpl {
  static void run(const FloatArgs& a) {
    const int64_t rows = a.integer(0, "rows", 0, kMaxDim), cols = a.integer(1, "cols", 1, kMaxDim);
    const int64_t n = checked_mul(a, rows, cols);
    auto x = a.floats<T>(2, "x", n);
    auto w = a.floats<T>(3, "weight", cols, true);
    auto b = a.floats<T>(4, "bias", cols, true);
    const double eps = a.eps(5);
    auto out = a.floats<T>(6, "out", n);
    check_disjoint(a, "out", out.data, n, "x", x.data, n);
    check_disjoint(a, "out", out.data, n, "weight", w.data, cols);
    check_disjoint(a, "out", out.data, n, "bias", b.data, cols);
    run_kernel(a, [&] { train_layer_norm<T>(rows, cols, x.data, w.data, b.data, eps, out.data); });
  }
};

// ---- trainLayerNormBackward(rows, cols, x, weight|null, eps, dout, dx, accumulate) ----
template <typename T>
struct LayerNormBackwardImpl {
  static void run(const FloatArgs& a) {
    const int64_t rows = a.integer(0, "rows", 0, kMaxDim), cols = a.integer(1, "cols", 1, kMaxDim);
    const int64_t n = checked_mul(a, rows, cols);
    auto x = a.floats<T>(2, "x", n);
    auto w = a.floats<T>(3, "weight", cols, true);
    const double eps = a.eps(4);
    auto dout = a.floats<T>(5, "dout", n);
    auto dx = a.floats<T>(6, "dx", n);
    const bool acc = a.boolean(7, "accumulate");
    check_disjoint(a, "dx", dx.data, n, "x", x.data, n);
    check_disjoint(a, "dx", dx.data, n, "dout", dout.data, n);
    check_disjoint(a, "dx", dx.data, n, "weight", w.data, cols);
    run_kernel(a, [&] { train_layer_norm_backward<T>(rows, cols, x.data, w.data, eps, dout.data, dx.data, acc); });
  }
};

// The token-mean selection: null, or [L] with at least one entry ≥ 0.
Span<int32_t> selection(const FloatArgs& a, size_t i, int64_t L) {
  auto s = a.i32_or_null(i, "select", L);
  if (s.data) {
    bool any = false;
    for (int64_t t = 0; t < L && !any; ++t) any = s.data[t] >= 0;
    if (!any && L > 0) a.fail("'select' keeps no row");
  }
  return s;
}

// ---- trainLayerNormTokenMean(B, L, C, x, select|null, weight|null, bias|null, eps, out) ----
template <typename T>
struct TokenMeanImpl {
  static void run(const FloatArgs& a) {
    const int64_t B = a.integer(0, "B", 0, kMaxDim), L = a.integer(1, "L", 1, kMaxDim), C = a.integer(2, "C", 1, kMaxDim);
    const int64_t n = checked_mul(a, checked_mul(a, B, L), C), no = checked_mul(a, B, C);
    auto x = a.floats<T>(3, "x", n);
    auto sel = selection(a, 4, L);
    auto w = a.floats<T>(5, "weight", C, true);
    auto b = a.floats<T>(6, "bias", C, true);
    const double eps = a.eps(7);
    auto out = a.floats<T>(8, "out", no);
    check_disjoint(a, "out", out.data, no, "x", x.data, n);
    check_disjoint(a, "out", out.data, no, "weight", w.data, C);
    check_disjoint(a, "out", out.data, no, "bias", b.data, C);
    run_kernel(a, [&] { train_layer_norm_token_mean<T>(B, L, C, x.data, sel.data, w.data, b.data, eps, out.data); });
  }
};

// ---- trainLayerNormTokenMeanBackward(B, L, C, x, select|null, weight|null, eps, dout, dx, accumulate) ----
template <typename T>
struct TokenMeanBackwardImpl {
  static void run(const FloatArgs& a) {
    const int64_t B = a.integer(0, "B", 0, kMaxDim), L = a.integer(1, "L", 1, kMaxDim), C = a.integer(2, "C", 1, kMaxDim);
    const int64_t n = checked_mul(a, checked_mul(a, B, L), C), no = checked_mul(a, B, C);
    auto x = a.floats<T>(3, "x", n);
    auto sel = selection(a, 4, L);
    auto w = a.floats<T>(5, "weight", C, true);
    const double eps = a.eps(6);
    auto dout = a.floats<T>(7, "dout", no);
    auto dx = a.floats<T>(8, "dx", n);
    const bool acc = a.boolean(9, "accumulate");
    check_disjoint(a, "dx", dx.data, n, "x", x.data, n);
    check_disjoint(a, "dx", dx.data, n, "dout", dout.data, no);
    check_disjoint(a, "dx", dx.data, n, "weight", w.data, C);
    run_kernel(a, [&] {
      train_layer_norm_token_mean_backward<T>(B, L, C, x.data, sel.data, w.data, eps, dout.data, dx.data, acc);
    });
  }
};

// ---- trainGelu(n, x, out) / trainSigmoid(n, x, out) ----
template <typename T, bool kGelu>
struct PointwiseImpl {
  static void run(const FloatArgs& a) {
    const int64_t n = a.integer(0, "n", 0, std::numeric_limits<int64_t>::max() / 16);
    auto x = a.floats<T>(1, "x", n);
    auto out = a.floats<T>(2, "out", n);
    check_disjoint(a, "out", out.data, n, "x", x.data, n);
    run_kernel(a, [&] {
      if constexpr (kGelu) train_gelu<T>(n, x.data, out.data);
      else train_sigmoid<T>(n, x.data, out.data);
    });
  }
};
template <typename T> using GeluImpl = PointwiseImpl<T, true>;
template <typename T> using SigmoidImpl = PointwiseImpl<T, false>;

// ---- trainGeluBackward(n, x, dout, dx, accumulate) / trainSigmoidBackward(n, y, dout, dx, accumulate) ----
template <typename T, bool kGelu>
struct PointwiseBackwardImpl {
  static void run(const FloatArgs& a) {
    const int64_t n = a.integer(0, "n", 0, std::numeric_limits<int64_t>::max() / 16);
    const char* in_name = kGelu ? "x" : "y";
    auto x = a.floats<T>(1, in_name, n);
    auto dout = a.floats<T>(2, "dout", n);
    auto dx = a.floats<T>(3, "dx", n);
    const bool acc = a.boolean(4, "accumulate");
    check_disjoint(a, "dx", dx.data, n, in_name, x.data, n);
    check_disjoint(a, "dx", dx.data, n, "dout", dout.data, n);
    run_kernel(a, [&] {
      if constexpr (kGelu) train_gelu_backward<T>(n, x.data, dout.data, dx.data, acc);
      else train_sigmoid_backward<T>(n, x.data, dout.data, dx.data, acc);
    });
  }
};
template <typename T> using GeluBackwardImpl = PointwiseBackwardImpl<T, true>;
template <typename T> using SigmoidBackwardImpl = PointwiseBackwardImpl<T, false>;

// ---- Depthwise conv2d: shared prefix (B, H, W, C, K, x, weight, bias|null, silu) ----
template <typename T>
struct DwArgs {
  int64_t B, H, W, C, K, n;
  Span<T> x, w, bias;
  bool silu;
};
template <typename T>
DwArgs<T> dw_args(const FloatArgs& a) {
  DwArgs<T> d;
  d.B = a.integer(0, "B", 0, kMaxDim);
  d.H = a.integer(1, "H", 1, kMaxDim);
  d.W = a.integer(2, "W", 1, kMaxDim);
  d.C = a.integer(3, "C", 1, kMaxDim);
  d.K = a.integer(4, "K", 1, 63);
  if (d.K % 2 == 0) a.fail("'K' must be odd (same padding)");
  d.n = checked_mul(a, checked_mul(a, checked_mul(a, d.B, d.H), d.W), d.C);
  d.x = a.floats<T>(5, "x", d.n);
  d.w = a.floats<T>(6, "weight", checked_mul(a, d.C, d.K * d.K));
  d.bias = a.floats<T>(7, "bias", d.C, true);
  d.silu = a.boolean(8, "silu");
  return d;
}

// trainDepthwiseConv2d(B, H, W, C, K, x, weight, bias|null, silu, out)
template <typename T>
struct DwImpl {
  static void run(const FloatArgs& a) {
    const DwArgs<T> d = dw_args<T>(a);
    auto out = a.floats<T>(9, "out", d.n);
    check_disjoint(a, "out", out.data, d.n, "x", d.x.data, d.n);
    check_disjoint(a, "out", out.data, d.n, "weight", d.w.data, d.C * d.K * d.K);
    run_kernel(a, [&] {
      train_depthwise_conv2d<T>(d.B, d.H, d.W, d.C, d.K, d.x.data, d.w.data, d.bias.data, d.silu, out.data);
    });
  }
};

// trainDepthwiseConv2dBackward(B, H, W, C, K, x, weight, bias|null, silu, dout, dx, accumulate)
template <typename T>
struct DwBackwardImpl {
  static void run(const FloatArgs& a) {
    const DwArgs<T> d = dw_args<T>(a);
    auto dout = a.floats<T>(9, "dout", d.n);
    auto dx = a.floats<T>(10, "dx", d.n);
    const bool acc = a.boolean(11, "accumulate");
    check_disjoint(a, "dx", dx.data, d.n, "x", d.x.data, d.n);
    check_disjoint(a, "dx", dx.data, d.n, "dout", dout.data, d.n);
    check_disjoint(a, "dx", dx.data, d.n, "weight", d.w.data, d.C * d.K * d.K);
    run_kernel(a, [&] {
      train_depthwise_conv2d_backward<T>(d.B, d.H, d.W, d.C, d.K, d.x.data, d.w.data, d.bias.data, d.silu, dout.data,
                                         dx.data, acc);
    });
  }
};

// ---- trainGatherTokens(B, rows, steps, C, x, gather, out) ----
template <typename T>
struct GatherImpl {
  static void run(const FloatArgs& a) {
    const int64_t B = a.integer(0, "B", 0, kMaxDim), rows = a.integer(1, "rows", 0, kMaxDim);
    const int64_t steps = a.integer(2, "steps", 0, kMaxDim), C = a.integer(3, "C", 0, kMaxDim);
    const int64_t nx = checked_mul(a, checked_mul(a, B, rows), C), no = checked_mul(a, checked_mul(a, B, steps), C);
    auto x = a.floats<T>(4, "x", nx);
    auto idx = a.i32(5, "gather", steps);
    check_index(a, "gather", idx.data, steps, rows, false);
    auto out = a.floats<T>(6, "out", no);
    check_disjoint(a, "out", out.data, no, "x", x.data, nx);
    run_kernel(a, [&] { train_gather_tokens<T>(B, rows, steps, C, x.data, idx.data, out.data); });
  }
};

// ---- trainGatherTokensBackward(B, rows, steps, C, gather, dout, dx, accumulate) ----
template <typename T>
struct GatherBackwardImpl {
  static void run(const FloatArgs& a) {
    const int64_t B = a.integer(0, "B", 0, kMaxDim), rows = a.integer(1, "rows", 0, kMaxDim);
    const int64_t steps = a.integer(2, "steps", 0, kMaxDim), C = a.integer(3, "C", 0, kMaxDim);
    const int64_t nx = checked_mul(a, checked_mul(a, B, rows), C), no = checked_mul(a, checked_mul(a, B, steps), C);
    auto idx = a.i32(4, "gather", steps);
    check_index(a, "gather", idx.data, steps, rows, false);
    auto dout = a.floats<T>(5, "dout", no);
    auto dx = a.floats<T>(6, "dx", nx);
    const bool acc = a.boolean(7, "accumulate");
    check_disjoint(a, "dx", dx.data, nx, "dout", dout.data, no);
    run_kernel(a, [&] { train_gather_tokens_backward<T>(B, rows, steps, C, idx.data, dout.data, dx.data, acc); });
  }
};

// ---- trainScatterTokens(B, steps, rows, C, y, scatter, gate|null, accumulate, out) ----
template <typename T>
struct ScatterImpl {
  static void run(const FloatArgs& a) {
    const int64_t B = a.integer(0, "B", 0, kMaxDim), steps = a.integer(1, "steps", 0, kMaxDim);
    const int64_t rows = a.integer(2, "rows", 0, kMaxDim), C = a.integer(3, "C", 0, kMaxDim);
    const int64_t ny = checked_mul(a, checked_mul(a, B, steps), C), no = checked_mul(a, checked_mul(a, B, rows), C);
    const int64_t ng = checked_mul(a, B, C);
    auto y = a.floats<T>(4, "y", ny);
    auto idx = a.i32(5, "scatter", steps);
    check_index(a, "scatter", idx.data, steps, rows, true);
    auto gate = a.floats<T>(6, "gate", ng, true);
    const bool acc = a.boolean(7, "accumulate");
    auto out = a.floats<T>(8, "out", no);
    check_disjoint(a, "out", out.data, no, "y", y.data, ny);
    check_disjoint(a, "out", out.data, no, "gate", gate.data, gate.data ? ng : 0);
    run_kernel(a, [&] { train_scatter_tokens<T>(B, steps, rows, C, y.data, idx.data, gate.data, acc, out.data); });
  }
};

// ---- trainScatterTokensBackward(B, steps, rows, C, y, scatter, gate|null, dout, dy|null, accumulateDy, dgate|null) ----
template <typename T>
struct ScatterBackwardImpl {
  static void run(const FloatArgs& a) {
    const int64_t B = a.integer(0, "B", 0, kMaxDim), steps = a.integer(1, "steps", 0, kMaxDim);
    const int64_t rows = a.integer(2, "rows", 0, kMaxDim), C = a.integer(3, "C", 0, kMaxDim);
    const int64_t ny = checked_mul(a, checked_mul(a, B, steps), C), no = checked_mul(a, checked_mul(a, B, rows), C);
    const int64_t ng = checked_mul(a, B, C);
    auto y = a.floats<T>(4, "y", ny);
    auto idx = a.i32(5, "scatter", steps);
    check_index(a, "scatter", idx.data, steps, rows, true);
    auto gate = a.floats<T>(6, "gate", ng, true);
    auto dout = a.floats<T>(7, "dout", no);
    auto dy = a.floats<T>(8, "dy", ny, true);
    const bool acc = a.boolean(9, "accumulateDy");
    auto dgate = a.floats<T>(10, "dgate", ng, true);
    if (dgate.data && !gate.data) a.fail("'dgate' needs a gate");
    const int64_t ndy = dy.data ? ny : 0, ndg = dgate.data ? ng : 0, ngate = gate.data ? ng : 0;
    check_disjoint(a, "dy", dy.data, ndy, "y", y.data, ny);
    check_disjoint(a, "dy", dy.data, ndy, "dout", dout.data, no);
    check_disjoint(a, "dy", dy.data, ndy, "gate", gate.data, ngate);
    check_disjoint(a, "dgate", dgate.data, ndg, "y", y.data, ny);
    check_disjoint(a, "dgate", dgate.data, ndg, "dout", dout.data, no);
    check_disjoint(a, "dgate", dgate.data, ndg, "gate", gate.data, ngate);
    check_disjoint(a, "dgate", dgate.data, dgate.data ? ng : 0, "dy", dy.data, dy.data ? ny : 0);
    run_kernel(a, [&] {
      train_scatter_tokens_backward<T>(B, steps, rows, C, y.data, idx.data, gate.data, dout.data, dy.data, acc,
                                       dgate.data);
    });
  }
};

void Register(Napi::Env env, Napi::Object exports) {
  const std::pair<const char*, Napi::Value (*)(const Napi::CallbackInfo&)> fns[] = {
      {"trainLayerNorm", [](const Napi::CallbackInfo& i) { return dispatch<LayerNormImpl>(i, "trainLayerNorm", 7, 2, "x"); }},
      {"trainLayerNormBackward",
       [](const Napi::CallbackInfo& i) { return dispatch<LayerNormBackwardImpl>(i, "trainLayerNormBackward", 8, 2, "x"); }},
      {"trainLayerNormTokenMean",
       [](const Napi::CallbackInfo& i) { return dispatch<TokenMeanImpl>(i, "trainLayerNormTokenMean", 9, 3, "x"); }},
      {"trainLayerNormTokenMeanBackward",
       [](const Napi::CallbackInfo& i) {
         return dispatch<TokenMeanBackwardImpl>(i, "trainLayerNormTokenMeanBackward", 10, 3, "x");
       }},
      {"trainGelu", [](const Napi::CallbackInfo& i) { return dispatch<GeluImpl>(i, "trainGelu", 3, 1, "x"); }},
      {"trainGeluBackward",
       [](const Napi::CallbackInfo& i) { return dispatch<GeluBackwardImpl>(i, "trainGeluBackward", 5, 1, "x"); }},
      {"trainSigmoid", [](const Napi::CallbackInfo& i) { return dispatch<SigmoidImpl>(i, "trainSigmoid", 3, 1, "x"); }},
      {"trainSigmoidBackward",
       [](const Napi::CallbackInfo& i) { return dispatch<SigmoidBackwardImpl>(i, "trainSigmoidBackward", 5, 1, "y"); }},
      {"trainDepthwiseConv2d",
       [](const Napi::CallbackInfo& i) { return dispatch<DwImpl>(i, "trainDepthwiseConv2d", 10, 5, "x"); }},
      {"trainDepthwiseConv2dBackward",
       [](const Napi::CallbackInfo& i) { return dispatch<DwBackwardImpl>(i, "trainDepthwiseConv2dBackward", 12, 5, "x"); }},
      {"trainGatherTokens",
       [](const Napi::CallbackInfo& i) { return dispatch<GatherImpl>(i, "trainGatherTokens", 7, 4, "x"); }},
      {"trainGatherTokensBackward",
       [](const Napi::CallbackInfo& i) { return dispatch<GatherBackwardImpl>(i, "trainGatherTokensBackward", 8, 5, "dout"); }},
      {"trainScatterTokens",
       [](const Napi::CallbackInfo& i) { return dispatch<ScatterImpl>(i, "trainScatterTokens", 9, 4, "y"); }},
      {"trainScatterTokensBackward",
       [](const Napi::CallbackInfo& i) {
         return dispatch<ScatterBackwardImpl>(i, "trainScatterTokensBackward", 11, 4, "y");
       }},
  };
  for (const auto& [name, fn] : fns) exports.Set(name, Napi::Function::New(env, fn, name));
}

BindingRegistrar registrar("train_backbone", &Register);

}  // namespace
}  // namespace ptq4vm::binding
