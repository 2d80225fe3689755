// Bindings of the CPU kernels: FP32 (gemm.h, norm.h, conv1d.h, scan.h, patch_embed.h),
// quantization (quantize.h), INT8 GEMM with packed weights (gemm_int8.h) and the fused
// quantizing ops (norm_quant.h, conv1d_quant.h, scan_bidir.h), each also as a *Ref variant
// running the scalar reference. Synchronous: they take typed arrays and integers (the scans an
// options object); every length, stride, dimension and zero point is checked here (kernels
// trust their input). Aliasing allowed: residualOut may be residualIn (or x) and out may be x
// (or residualIn) in the RMSNorm ops. Any other output overlapping an input is refused.
#include <cmath>
#include <initializer_list>
#include <limits>
#include <new>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "args.h"
#include "ptq4vm/conv1d.h"
#include "ptq4vm/conv1d_quant.h"
#include "ptq4vm/gemm.h"
#include "ptq4vm/gemm_int8.h"
#include "ptq4vm/norm.h"
#include "ptq4vm/norm_quant.h"
#include "ptq4vm/patch_embed.h"
#include "ptq4vm/quantize.h"
#include "ptq4vm/scan.h"
#include "ptq4vm/scan_bidir.h"
#include "registry.h"

namespace ptq4vm::binding {
namespace {

// Dimensions up to 2^31 − 1; products are overflow-checked separately.
constexpr int64_t kMaxDim = std::numeric_limits<int32_t>::max();
// Scratch a single kernel call may ask for (elements), so absurd shapes fail cleanly.
constexpr int64_t kMaxScratchElems = int64_t(1) << 31;

// gemmF32(transA, transB, M, N, K, A, lda, B, ldb, bias|null, accumulate, C, ldc)
template <bool kRef>
Napi::Value GemmF32(const Napi::CallbackInfo& info) {
  Args a(info, kRef ? "gemmF32Ref" : "gemmF32", 13);
  const bool ta = a.boolean(0, "transA"), tb = a.boolean(1, "transB");
  const int64_t M = a.integer(2, "M", 0, kMaxDim), N = a.integer(3, "N", 0, kMaxDim);
  const int64_t K = a.integer(4, "K", 0, kMaxDim);
  const int64_t lda = a.integer(6, "lda", 0, kMaxDim), ldb = a.integer(8, "ldb", 0, kMaxDim);
  const int64_t ldc = a.integer(12, "ldc", 0, kMaxDim);
  const int64_t a_len = ta ? strided_extent(a, "A", K, M, lda) : strided_extent(a, "A", M, K, lda);
  const int64_t b_len = tb ? strided_extent(a, "B", N, K, ldb) : strided_extent(a, "B", K, N, ldb);
  const int64_t c_len = strided_extent(a, "C", M, N, ldc);
  auto A = a.f32(5, "A", a_len);
  auto B = a.f32(7, "B", b_len);
  auto bias = a.f32_or_null(9, "bias", N);
  const bool accumulate = a.boolean(10, "accumulate");
  auto C = a.f32(11, "C", c_len);
  check_disjoint(a, "C", C.data, c_len, "A", A.data, a_len);
  check_disjoint(a, "C", C.data, c_len, "B", B.data, b_len);
  check_disjoint(a, "C", C.data, c_len, "bias", bias.data, bias.data ? N : 0);
  run_kernel(a, [&] {
    (kRef ? gemm_f32_ref : gemm_f32)(ta, tb, M, N, K, A.data, lda, B.data, ldb, bias.data, accumulate,
                                     C.data, ldc);
  });
  return info.Env().Undefined();
}

// addRmsNormF32(rows, D, x, residualIn|null, residualOut, weight, eps, out)
template <bool kRef>
Napi::Value AddRmsNormF32(const Napi::CallbackInfo& info) {
  Args a(info, kRef ? "addRmsNormF32Ref" : "addRmsNormF32", 8);
  const int64_t rows = a.integer(0, "rows", 0, kMaxDim);
  const int64_t D = a.integer(1, "D", 1, kMaxDim);
  const int64_t n = checked_mul(a, rows, D);
  auto x = a.f32(2, "x", n);
  auto rin = a.f32_or_null(3, "residualIn", n);
  auto rout = a.f32(4, "residualOut", n);
  auto w = a.f32(5, "weight", D);
  const double eps = a.number(6, "eps");
  if (!(eps >= 0 && eps <= 1)) a.fail("'eps' must be in [0, 1]");
  auto out = a.f32(7, "out", n);
  // residualOut may be exactly residualIn or x (read before written, element by element);
  // out may be x or residualIn; out never overlaps residualOut (the second pass reads it).
  check_disjoint(a, "out", out.data, n, "residualOut", rout.data, n);
  check_disjoint(a, "out", out.data, n, "weight", w.data, D);
  check_disjoint(a, "residualOut", rout.data, n, "weight", w.data, D);
  if (rout.data != rin.data) check_disjoint(a, "residualOut", rout.data, n, "residualIn", rin.data, rin.data ? n : 0);
  if (rout.data != x.data) check_disjoint(a, "residualOut", rout.data, n, "x", x.data, n);
  if (out.data != x.data) check_disjoint(a, "out", out.data, n, "x", x.data, n);
  if (out.data != rin.data) check_disjoint(a, "out", out.data, n, "residualIn", rin.data, rin.data ? n : 0);
  run_kernel(a, [&] {
    (kRef ? add_rmsnorm_f32_ref : add_rmsnorm_f32)(rows, D, x.data, rin.data, rout.data, w.data,
                                                   float(eps), out.data);
  });
  return info.Env().Undefined();
}

// causalConv1dF32(B, L, E, K, x, ldx, weight, bias|null, reverse, applySilu, out, ldo, siluMath)
//   siluMath: 'exact' | 'fast' (MathMode); the reference always computes exactly (in double).
template <bool kRef>
Napi::Value CausalConv1dF32(const Napi::CallbackInfo& info) {
  Args a(info, kRef ? "causalConv1dF32Ref" : "causalConv1dF32", 13);
  const int64_t B = a.integer(0, "B", 0, kMaxDim), L = a.integer(1, "L", 0, kMaxDim);
  const int64_t E = a.integer(2, "E", 0, kMaxDim), K = a.integer(3, "K", 1, 1024);
  const int64_t ldx = a.integer(5, "ldx", 0, kMaxDim), ldo = a.integer(11, "ldo", 0, kMaxDim);
  const int64_t tokens = checked_mul(a, B, L);
  const int64_t x_len = strided_extent(a, "x", tokens, E, ldx);
  const int64_t o_len = strided_extent(a, "out", tokens, E, ldo);
  auto x = a.f32(4, "x", x_len);
  auto w = a.f32(6, "weight", checked_mul(a, E, K));
  auto bias = a.f32_or_null(7, "bias", E);
  const bool reverse = a.boolean(8, "reverse"), silu = a.boolean(9, "applySilu");
  auto out = a.f32(10, "out", o_len);
  const MathMode silu_math = a.choice(12, "siluMath", {"exact", "fast"}) == 1 ? MathMode::fast : MathMode::exact;
  check_disjoint(a, "out", out.data, o_len, "x", x.data, x_len);
  check_disjoint(a, "out", out.data, o_len, "weight", w.data, E * K);
  check_disjoint(a, "out", out.data, o_len, "bias", bias.data, bias.data ? E : 0);
  run_kernel(a, [&] {
    if (kRef) causal_conv1d_f32_ref(B, L, E, K, x.data, ldx, w.data, bias.data, reverse, silu, out.data, ldo);
    else causal_conv1d_f32(B, L, E, K, x.data, ldx, w.data, bias.data, reverse, silu, out.data, ldo, silu_math);
  });
  return info.Env().Undefined();
}

// Reads the properties of an options-object argument with Args' error style; `prefix` names
// nested objects in messages ("fwd.u").
class ObjectArgs {
 public:
  ObjectArgs(const Args& args, const char* fn, Napi::Object obj, std::string prefix = "")
      : args_(args), fn_(fn), obj_(obj), prefix_(std::move(prefix)) {}

  Napi::Value get(const char* name) const { return obj_.Get(name); }
  static bool absent(const Napi::Value& v) { return v.IsNull() || v.IsUndefined(); }
  bool has(const char* name) const { return !absent(get(name)); }

  int64_t integer(const char* name, int64_t lo, int64_t hi) const {
    Napi::Value v = get(name);
    if (!v.IsNumber()) type_error(name, "an integer");
    const double d = v.As<Napi::Number>().DoubleValue();
    if (!(d == static_cast<double>(static_cast<int64_t>(d))) || d < double(lo) || d > double(hi)) {
      args_.fail("'" + prefix_ + name + "' must be an integer in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
    }
    return static_cast<int64_t>(d);
  }
  bool boolean(const char* name, bool fallback) const {
    Napi::Value v = get(name);
    if (v.IsUndefined()) return fallback;
    if (!v.IsBoolean()) type_error(name, "a boolean");
    return v.As<Napi::Boolean>().Value();
  }
  // A string that must be one of `choices` (absent: `fallback`); returns its index.
  size_t choice(const char* name, std::initializer_list<const char*> choices, size_t fallback) const {
    Napi::Value v = get(name);
    if (v.IsUndefined()) return fallback;
    std::string list;
    for (const char* c : choices) list += std::string(list.empty() ? "" : " | ") + "'" + c + "'";
    if (!v.IsString()) type_error(name, list.c_str());
    const std::string got = v.As<Napi::String>().Utf8Value();
    size_t i = 0;
    for (const char* c : choices) {
      if (got == c) return i;
      ++i;
    }
    args_.fail("'" + prefix_ + name + "' must be " + list);
  }
  double number(const char* name, double fallback) const {
    Napi::Value v = get(name);
    if (v.IsUndefined()) return fallback;
    if (!v.IsNumber()) type_error(name, "a number");
    const double d = v.As<Napi::Number>().DoubleValue();
    if (!std::isfinite(d)) args_.fail("'" + prefix_ + name + "' must be finite");
    return d;
  }
  template <typename T, typename ArrayT>
  Span<T> typed(const char* name, int64_t min_length, bool optional, napi_typedarray_type type,
                const char* type_name) const {
    Napi::Value v = get(name);
    if (optional && absent(v)) return {};
    if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != type)
      type_error(name, (std::string("a ") + type_name + (optional ? " or null" : "")).c_str());
    auto arr = v.As<ArrayT>();
    const int64_t len = int64_t(arr.ElementLength());
    if (len < min_length) {
      args_.fail("'" + prefix_ + name + "' has " + std::to_string(len) + " elements, needs " + std::to_string(min_length));
    }
    return {arr.Data(), len};
  }
  Span<float> f32(const char* name, int64_t min_length, bool optional = false) const {
    return typed<float, Napi::Float32Array>(name, min_length, optional, napi_float32_array, "Float32Array");
  }
  Span<uint8_t> u8(const char* name, int64_t min_length, bool optional = false) const {
    return typed<uint8_t, Napi::Uint8Array>(name, min_length, optional, napi_uint8_array, "Uint8Array");
  }
  Span<int32_t> i32(const char* name, int64_t min_length, bool optional = false) const {
    return typed<int32_t, Napi::Int32Array>(name, min_length, optional, napi_int32_array, "Int32Array");
  }
  Span<int8_t> i8(const char* name, int64_t min_length, bool optional = false) const {
    return typed<int8_t, Napi::Int8Array>(name, min_length, optional, napi_int8_array, "Int8Array");
  }
  // A nested options object (required).
  ObjectArgs object(const char* name) const {
    Napi::Value v = get(name);
    if (!v.IsObject() || v.IsTypedArray() || v.IsArray()) type_error(name, "an object");
    return ObjectArgs(args_, fn_, v.As<Napi::Object>(), prefix_ + name + ".");
  }

 private:
  [[noreturn]] void type_error(const char* name, const char* what) const {
    throw Napi::TypeError::New(args_.env(), std::string(fn_) + ": '" + prefix_ + name + "' must be " + what);
  }
  const Args& args_;
  const char* fn_;
  Napi::Object obj_;
  std::string prefix_;
};

// The single options-object argument of a binding.
ObjectArgs options_object(const Args& a, const Napi::CallbackInfo& info, const char* fn) {
  if (!info[0].IsObject() || info[0].IsTypedArray() || info[0].IsArray()) {
    throw Napi::TypeError::New(info.Env(), std::string(fn) + ": expected one options object");
  }
  return ObjectArgs(a, fn, info[0].As<Napi::Object>());
}

// Zero points must lie in [0, qmax] (the kernels' integer ranges assume it).
void check_zero_points(const Args& a, const char* name, const int32_t* zero, int64_t n, int qmax) {
  for (int64_t i = 0; i < n; ++i) {
    if (zero[i] < 0 || zero[i] > qmax) {
      a.fail("'" + std::string(name) + "'[" + std::to_string(i) + "] = " + std::to_string(zero[i]) +
             " is outside [0, " + std::to_string(qmax) + "]");
    }
  }
}

// An input operand's bytes, for the output-overlap checks.
struct Extent {
  const void* p;
  int64_t bytes;
  const char* name;
};

// dt_proj computed inside a scan (scan.h): the options object's 'dtProj' {R, q, ldq, period,
// aScale, aZero, qweight, wScale} or 'dtProjF32' {R, x, ldx, weight} (at most one) over `tokens`
// rows and E channels, into p or pf; their operands are added to `inputs`. Returns whether one
// was given (Δ is then computed and 'delta' not read).
bool parse_dt_proj(const Args& a, const ObjectArgs& o, const std::string& where, int64_t tokens, int64_t E,
                   ScanDtProjInt8& p, ScanDtProjF32& pf, const ScanDtProjInt8*& p_out,
                   const ScanDtProjF32*& pf_out, std::vector<Extent>& inputs) {
  const bool int8_dt = o.has("dtProj"), f32_dt = o.has("dtProjF32");
  if (int8_dt && f32_dt) a.fail(where + " has both 'dtProj' and 'dtProjF32'; give one");
  if (int8_dt) {
    ObjectArgs d = o.object("dtProj");
    p.R = d.integer("R", 1, 512);  // 512·255·127 < 2^24: exact float sums
    p.ldq = d.integer("ldq", 0, kMaxDim);
    const int64_t q_len = strided_extent(a, "dtProj.q", tokens, p.R, p.ldq);
    p.q = d.u8("q", q_len).data;
    p.period = d.integer("period", 1, kMaxDim);
    p.a_scale = d.f32("aScale", p.period).data;
    auto zero = d.i32("aZero", p.period);
    check_zero_points(a, "dtProj.aZero", zero.data, p.period, 255);
    p.a_zero = zero.data;
    p.qw = d.i8("qweight", checked_mul(a, E, p.R)).data;
    p.w_scale = d.f32("wScale", E).data;
    p_out = &p;
    inputs.push_back({p.q, q_len, "dtProj.q"});
    inputs.push_back({p.a_scale, p.period * 4, "dtProj.aScale"});
    inputs.push_back({p.a_zero, p.period * 4, "dtProj.aZero"});
    inputs.push_back({p.qw, E * p.R, "dtProj.qweight"});
    inputs.push_back({p.w_scale, E * 4, "dtProj.wScale"});
  } else if (f32_dt) {
    ObjectArgs d = o.object("dtProjF32");
    pf.R = d.integer("R", 1, 512);
    pf.ldx = d.integer("ldx", 0, kMaxDim);
    const int64_t x_len = strided_extent(a, "dtProjF32.x", tokens, pf.R, pf.ldx);
    pf.x = d.f32("x", x_len).data;
    pf.w = d.f32("weight", checked_mul(a, E, pf.R)).data;
    pf_out = &pf;
    inputs.push_back({pf.x, x_len * 4, "dtProjF32.x"});
    inputs.push_back({pf.w, E * pf.R * 4, "dtProjF32.weight"});
  }
  return int8_dt || f32_dt;
}

// selectiveScanF32({B, L, E, N, u, ldu, delta, lddelta, A, Bm, ldB, Cm, ldC, D?, z?, ldz?,
//                   deltaBias?, deltaSoftplus = true, reverse = false, accumulate = false,
//                   outScale = 1, y, ldy, math = 'exact', dtProj? | dtProjF32?})
//   math: 'exact' | 'fast' (MathMode); the reference always computes exactly (in double).
//   dtProj / dtProjF32 (as selectiveScanBidirF32's directions take them): Δ computed in the
//   scan; delta and lddelta are then not read.
template <bool kRef>
Napi::Value SelectiveScanF32(const Napi::CallbackInfo& info) {
  const char* fn = kRef ? "selectiveScanF32Ref" : "selectiveScanF32";
  Args a(info, fn, 1);
  ObjectArgs o = options_object(a, info, fn);
  ScanArgs s;
  s.B = o.integer("B", 0, kMaxDim);
  s.L = o.integer("L", 0, kMaxDim);
  s.E = o.integer("E", 0, kMaxDim);
  s.N = o.integer("N", 1, 4096);
  const int64_t tokens = checked_mul(a, s.B, s.L);
  std::vector<Extent> dt_inputs;
  ScanDtProjInt8 dt_proj;
  ScanDtProjF32 dt_proj_f32;
  const bool computed_delta = parse_dt_proj(a, o, "the options", tokens, s.E, dt_proj, dt_proj_f32, s.dt_proj,
                                            s.dt_proj_f32, dt_inputs);
  s.ldu = o.integer("ldu", 0, kMaxDim);
  s.lddelta = computed_delta && !o.has("lddelta") ? 0 : o.integer("lddelta", 0, kMaxDim);
  s.ldB = o.integer("ldB", 0, kMaxDim);
  s.ldC = o.integer("ldC", 0, kMaxDim);
  s.ldy = o.integer("ldy", 0, kMaxDim);
  const int64_t u_len = strided_extent(a, "u", tokens, s.E, s.ldu);
  const int64_t d_len = computed_delta ? 0 : strided_extent(a, "delta", tokens, s.E, s.lddelta);
  const int64_t b_len = strided_extent(a, "Bm", tokens, s.N, s.ldB);
  const int64_t c_len = strided_extent(a, "Cm", tokens, s.N, s.ldC);
  const int64_t y_len = strided_extent(a, "y", tokens, s.E, s.ldy);
  const int64_t a_len = checked_mul(a, s.E, s.N);
  auto u = o.f32("u", u_len);
  Span<float> delta;
  if (!computed_delta) delta = o.f32("delta", d_len);
  auto A = o.f32("A", a_len);
  auto Bm = o.f32("Bm", b_len);
  auto Cm = o.f32("Cm", c_len);
  auto D = o.f32("D", s.E, true);
  Span<float> z;
  int64_t z_len = 0;
  if (o.has("z")) {
    s.ldz = o.integer("ldz", 0, kMaxDim);
    z_len = strided_extent(a, "z", tokens, s.E, s.ldz);
    z = o.f32("z", z_len);
  }
  auto dbias = o.f32("deltaBias", s.E, true);
  s.delta_softplus = o.boolean("deltaSoftplus", true);
  s.reverse = o.boolean("reverse", false);
  s.accumulate = o.boolean("accumulate", false);
  s.out_scale = float(o.number("outScale", 1.0));
  s.math = o.choice("math", {"exact", "fast"}, 0) == 1 ? MathMode::fast : MathMode::exact;
  auto y = o.f32("y", y_len);
  check_disjoint(a, "y", y.data, y_len, "u", u.data, u_len);
  check_disjoint(a, "y", y.data, y_len, "delta", delta.data, d_len);
  check_disjoint(a, "y", y.data, y_len, "A", A.data, a_len);
  check_disjoint(a, "y", y.data, y_len, "Bm", Bm.data, b_len);
  check_disjoint(a, "y", y.data, y_len, "Cm", Cm.data, c_len);
  check_disjoint(a, "y", y.data, y_len, "D", D.data, D.data ? s.E : 0);
  check_disjoint(a, "y", y.data, y_len, "z", z.data, z_len);
  check_disjoint(a, "y", y.data, y_len, "deltaBias", dbias.data, dbias.data ? s.E : 0);
  for (const Extent& in : dt_inputs) {
    check_disjoint(a, "y", static_cast<const uint8_t*>(static_cast<const void*>(y.data)), y_len * 4, in.name,
                   static_cast<const uint8_t*>(in.p), in.bytes);
  }
  s.u = u.data;
  s.delta = delta.data;
  s.A = A.data;
  s.Bm = Bm.data;
  s.Cm = Cm.data;
  s.D = D.data;
  s.z = z.data;
  s.delta_bias = dbias.data;
  s.y = y.data;
  run_kernel(a, [&] { (kRef ? selective_scan_f32_ref : selective_scan_f32)(s); });
  return info.Env().Undefined();
}

// patchEmbedF32(B, C, H, W, P, S, img, weight, bias|null, D, out)
template <bool kRef>
Napi::Value PatchEmbedF32(const Napi::CallbackInfo& info) {
  Args a(info, kRef ? "patchEmbedF32Ref" : "patchEmbedF32", 11);
  const int64_t B = a.integer(0, "B", 0, kMaxDim), C = a.integer(1, "C", 1, kMaxDim);
  const int64_t H = a.integer(2, "H", 1, kMaxDim), W = a.integer(3, "W", 1, kMaxDim);
  const int64_t P = a.integer(4, "P", 1, 4096), S = a.integer(5, "S", 1, 4096);
  const int64_t D = a.integer(9, "D", 1, kMaxDim);
  if (P > H || P > W) a.fail("patch size 'P' exceeds the image (" + std::to_string(H) + "×" + std::to_string(W) + ")");
  const int64_t G = checked_mul(a, (H - P) / S + 1, (W - P) / S + 1);
  const int64_t patch = checked_mul(a, C, checked_mul(a, P, P));
  if (checked_mul(a, checked_mul(a, B, G), patch) > kMaxScratchElems)
    a.fail("the patch matrix (B·patches × C·P·P) would exceed 2^31 elements");
  const int64_t img_len = checked_mul(a, checked_mul(a, B, C), checked_mul(a, H, W));
  const int64_t out_len = checked_mul(a, checked_mul(a, B, G), D);
  auto img = a.f32(6, "img", img_len);
  auto w = a.f32(7, "weight", checked_mul(a, D, patch));
  auto bias = a.f32_or_null(8, "bias", D);
  auto out = a.f32(10, "out", out_len);
  check_disjoint(a, "out", out.data, out_len, "img", img.data, img_len);
  check_disjoint(a, "out", out.data, out_len, "weight", w.data, D * patch);
  check_disjoint(a, "out", out.data, out_len, "bias", bias.data, bias.data ? D : 0);
  run_kernel(a, [&] {
    (kRef ? patch_embed_f32_ref : patch_embed_f32)(B, C, H, W, P, S, img.data, w.data, bias.data, D,
                                                   out.data);
  });
  return info.Env().Undefined();
}

// quantizeU8(rows, cols, period, x, ldx, invSmooth|null, invScale, zero, qmax, q, ldq)
template <bool kRef>
Napi::Value QuantizeU8(const Napi::CallbackInfo& info) {
  Args a(info, kRef ? "quantizeU8Ref" : "quantizeU8", 11);
  const int64_t rows = a.integer(0, "rows", 0, kMaxDim), cols = a.integer(1, "cols", 0, kMaxDim);
  const int64_t period = a.integer(2, "period", 1, kMaxDim);
  const int64_t ldx = a.integer(4, "ldx", 0, kMaxDim), ldq = a.integer(10, "ldq", 0, kMaxDim);
  const int64_t x_len = strided_extent(a, "x", rows, cols, ldx);
  const int64_t q_len = strided_extent(a, "q", rows, cols, ldq);
  auto x = a.f32(3, "x", x_len);
  auto ism = a.f32_or_null(5, "invSmooth", cols);
  auto inv_scale = a.f32(6, "invScale", period);
  auto zero = a.i32(7, "zero", period);
  const int qmax = static_cast<int>(a.integer(8, "qmax", 1, 255));
  auto q = a.u8(9, "q", q_len);
  check_disjoint(a, "q", q.data, q_len, "x", x.data, x_len);
  run_kernel(a, [&] {
    (kRef ? quantize_u8_ref : quantize_u8)(rows, cols, period, x.data, ldx, ism.data, inv_scale.data,
                                           zero.data, qmax, q.data, ldq);
  });
  return info.Env().Undefined();
}

// quantizeParamsDynamic(rows, cols, x, ldx, invSmooth|null, qmax, scale, invScale, zero)
template <bool kRef>
Napi::Value QuantizeParamsDynamic(const Napi::CallbackInfo& info) {
  Args a(info, kRef ? "quantizeParamsDynamicRef" : "quantizeParamsDynamic", 9);
  const int64_t rows = a.integer(0, "rows", 0, kMaxDim), cols = a.integer(1, "cols", 0, kMaxDim);
  const int64_t ldx = a.integer(3, "ldx", 0, kMaxDim);
  const int64_t x_len = strided_extent(a, "x", rows, cols, ldx);
  auto x = a.f32(2, "x", x_len);
  auto ism = a.f32_or_null(4, "invSmooth", cols);
  const int qmax = static_cast<int>(a.integer(5, "qmax", 1, 255));
  auto scale = a.f32(6, "scale", rows);
  auto inv_scale = a.f32(7, "invScale", rows);
  auto zero = a.i32(8, "zero", rows);
  check_disjoint(a, "scale", scale.data, rows, "x", x.data, x_len);
  check_disjoint(a, "invScale", inv_scale.data, rows, "x", x.data, x_len);
  check_disjoint(a, "scale", scale.data, rows, "invScale", inv_scale.data, rows);
  check_disjoint(a, "zero", zero.data, rows, "x", x.data, x_len);
  run_kernel(a, [&] {
    (kRef ? quantize_params_dynamic_ref : quantize_params_dynamic)(rows, cols, x.data, ldx, ism.data, qmax,
                                                                   scale.data, inv_scale.data, zero.data);
  });
  return info.Env().Undefined();
}

// ---- INT8 GEMM: packed weights travel as an External tagged with this type tag, so a
// foreign object can never be taken for one.
constexpr napi_type_tag kPackedInt8Tag = {0x7074713476d8a51bULL, 0x2c8e5f0ab9e3d417ULL};
constexpr int64_t kMaxInt8Depth = 32768;  // keeps accumulators and zero-point terms in int32

void finalize_packed(Napi::Env env, PackedInt8Weights* w) {
  const int64_t bytes = packed_int8_n(*w) * packed_int8_k(*w);
  PackedInt8WeightsDeleter()(w);
  Napi::MemoryManagement::AdjustExternalMemory(env, -bytes);
}

// packInt8Weights(N, K, qw: Int8Array [N, K]) → handle
Napi::Value PackInt8Weights(const Napi::CallbackInfo& info) {
  Args a(info, "packInt8Weights", 3);
  const int64_t N = a.integer(0, "N", 1, kMaxDim), K = a.integer(1, "K", 1, kMaxInt8Depth);
  auto qw = a.i8(2, "qw", checked_mul(a, N, K));
  PackedInt8WeightsPtr packed;
  run_kernel(a, [&] { packed = pack_int8_weights(N, K, qw.data); });
  auto handle = Napi::External<PackedInt8Weights>::New(info.Env(), packed.release(), finalize_packed);
  if (napi_type_tag_object(info.Env(), handle, &kPackedInt8Tag) != napi_ok) a.fail("cannot tag the packed weights");
  Napi::MemoryManagement::AdjustExternalMemory(info.Env(), N * K);
  return handle;
}

const PackedInt8Weights& unwrap_packed(const Args& a, const Napi::CallbackInfo& info, const char* fn, size_t i,
                                       int64_t N, int64_t K) {
  bool tagged = false;
  if (info[i].IsExternal()) napi_check_object_type_tag(info.Env(), info[i], &kPackedInt8Tag, &tagged);
  if (!tagged) {
    throw Napi::TypeError::New(info.Env(), std::string(fn) + ": 'W' must be packed INT8 weights (from packInt8Weights)");
  }
  const PackedInt8Weights& w = *info[i].As<Napi::External<PackedInt8Weights>>().Data();
  if (packed_int8_n(w) != N || packed_int8_k(w) != K) {
    a.fail("the packed weights are " + std::to_string(packed_int8_n(w)) + "×" + std::to_string(packed_int8_k(w)) +
           ", not N×K = " + std::to_string(N) + "×" + std::to_string(K));
  }
  return w;
}

// packedInt8Shape(handle) → {N, K}
Napi::Value PackedInt8Shape(const Napi::CallbackInfo& info) {
  Args a(info, "packedInt8Shape", 1);
  bool tagged = false;
  if (info[0].IsExternal()) napi_check_object_type_tag(info.Env(), info[0], &kPackedInt8Tag, &tagged);
  if (!tagged) throw Napi::TypeError::New(info.Env(), "packedInt8Shape: expected packed INT8 weights");
  const PackedInt8Weights& w = *info[0].As<Napi::External<PackedInt8Weights>>().Data();
  auto out = Napi::Object::New(info.Env());
  out.Set("N", double(packed_int8_n(w)));
  out.Set("K", double(packed_int8_k(w)));
  return out;
}

// Arguments 0..4 of the INT8 GEMMs: M, N, K, A, lda → A's extent.
struct Int8Operands {
  int64_t M, N, K, lda, a_len;
  Span<uint8_t> A;
};
Int8Operands int8_operands(const Args& a) {
  Int8Operands o;
  o.M = a.integer(0, "M", 0, kMaxDim);
  o.N = a.integer(1, "N", 1, kMaxDim);
  o.K = a.integer(2, "K", 1, kMaxInt8Depth);
  o.lda = a.integer(4, "lda", 0, kMaxDim);
  o.a_len = strided_extent(a, "A", o.M, o.K, o.lda);
  o.A = a.u8(3, "A", o.a_len);
  return o;
}

// Epilogue arguments at i0..i0+5: aScale, aZero, period, wScale, bias|null, accumulate.
Int8Epilogue int8_epilogue(const Args& a, size_t i0, int64_t N) {
  Int8Epilogue ep;
  ep.period = a.integer(i0 + 2, "period", 1, kMaxDim);
  ep.a_scale = a.f32(i0, "aScale", ep.period).data;
  auto zero = a.i32(i0 + 1, "aZero", ep.period);
  check_zero_points(a, "aZero", zero.data, ep.period, 255);
  ep.a_zero = zero.data;
  ep.w_scale = a.f32(i0 + 3, "wScale", N).data;
  ep.bias = a.f32_or_null(i0 + 4, "bias", N).data;
  ep.accumulate = a.boolean(i0 + 5, "accumulate");
  return ep;
}

// gemmU8S8F32(M, N, K, A, lda, W, aScale, aZero, period, wScale, bias|null, accumulate, C, ldc)
Napi::Value GemmU8S8F32(const Napi::CallbackInfo& info) {
  Args a(info, "gemmU8S8F32", 14);
  const Int8Operands o = int8_operands(a);
  const PackedInt8Weights& W = unwrap_packed(a, info, "gemmU8S8F32", 5, o.N, o.K);
  const Int8Epilogue ep = int8_epilogue(a, 6, o.N);
  const int64_t ldc = a.integer(13, "ldc", 0, kMaxDim);
  const int64_t c_len = strided_extent(a, "C", o.M, o.N, ldc);
  auto C = a.f32(12, "C", c_len);
  check_disjoint(a, "C", C.data, c_len, "A", o.A.data, o.a_len);
  check_disjoint(a, "C", C.data, c_len, "aScale", ep.a_scale, ep.period);
  check_disjoint(a, "C", C.data, c_len, "wScale", ep.w_scale, o.N);
  check_disjoint(a, "C", C.data, c_len, "bias", ep.bias, ep.bias ? o.N : 0);
  run_kernel(a, [&] { gemm_u8s8_f32(o.M, o.N, o.K, o.A.data, o.lda, W, ep, C.data, ldc); });
  return info.Env().Undefined();
}

// gemmU8S8F32Ref(M, N, K, A, lda, qw: Int8Array [N, K], aScale, aZero, period, wScale, bias|null, accumulate, C, ldc)
Napi::Value GemmU8S8F32Ref(const Napi::CallbackInfo& info) {
  Args a(info, "gemmU8S8F32Ref", 14);
  const Int8Operands o = int8_operands(a);
  auto qw = a.i8(5, "qw", checked_mul(a, o.N, o.K));
  const Int8Epilogue ep = int8_epilogue(a, 6, o.N);
  const int64_t ldc = a.integer(13, "ldc", 0, kMaxDim);
  const int64_t c_len = strided_extent(a, "C", o.M, o.N, ldc);
  auto C = a.f32(12, "C", c_len);
  check_disjoint(a, "C", C.data, c_len, "A", o.A.data, o.a_len);
  check_disjoint(a, "C", C.data, c_len, "qw", qw.data, o.N * o.K);
  check_disjoint(a, "C", C.data, c_len, "aScale", ep.a_scale, ep.period);
  check_disjoint(a, "C", C.data, c_len, "wScale", ep.w_scale, o.N);
  check_disjoint(a, "C", C.data, c_len, "bias", ep.bias, ep.bias ? o.N : 0);
  run_kernel(a, [&] { gemm_u8s8_f32_ref(o.M, o.N, o.K, o.A.data, o.lda, qw.data, ep, C.data, ldc); });
  return info.Env().Undefined();
}

// gemmU8S8S32(M, N, K, A, lda, W, C: Int32Array, ldc)
Napi::Value GemmU8S8S32(const Napi::CallbackInfo& info) {
  Args a(info, "gemmU8S8S32", 8);
  const Int8Operands o = int8_operands(a);
  const PackedInt8Weights& W = unwrap_packed(a, info, "gemmU8S8S32", 5, o.N, o.K);
  const int64_t ldc = a.integer(7, "ldc", 0, kMaxDim);
  const int64_t c_len = strided_extent(a, "C", o.M, o.N, ldc);
  auto C = a.i32(6, "C", c_len);
  check_disjoint(a, "C", C.data, c_len, "A", o.A.data, o.a_len);
  run_kernel(a, [&] { gemm_u8s8_s32(o.M, o.N, o.K, o.A.data, o.lda, W, C.data, ldc); });
  return info.Env().Undefined();
}

// gemmU8S8S32Ref(M, N, K, A, lda, qw: Int8Array [N, K], C: Int32Array, ldc)
Napi::Value GemmU8S8S32Ref(const Napi::CallbackInfo& info) {
  Args a(info, "gemmU8S8S32Ref", 8);
  const Int8Operands o = int8_operands(a);
  auto qw = a.i8(5, "qw", checked_mul(a, o.N, o.K));
  const int64_t ldc = a.integer(7, "ldc", 0, kMaxDim);
  const int64_t c_len = strided_extent(a, "C", o.M, o.N, ldc);
  auto C = a.i32(6, "C", c_len);
  check_disjoint(a, "C", C.data, c_len, "A", o.A.data, o.a_len);
  check_disjoint(a, "C", C.data, c_len, "qw", qw.data, o.N * o.K);
  run_kernel(a, [&] { gemm_u8s8_s32_ref(o.M, o.N, o.K, o.A.data, o.lda, qw.data, C.data, ldc); });
  return info.Env().Undefined();
}

// ---- Fused quantizing ops. A quantizer is (period, invSmooth|null, invScale, zero, qmax).

// Positional quantizer at i0..i0+4 for rows of `cols` columns.
TokenQuantizer positional_quantizer(const Args& a, size_t i0, int64_t cols) {
  TokenQuantizer q;
  q.period = a.integer(i0, "period", 1, kMaxDim);
  q.inv_smooth = a.f32_or_null(i0 + 1, "invSmooth", cols).data;
  q.inv_scale = a.f32(i0 + 2, "invScale", q.period).data;
  auto zero = a.i32(i0 + 3, "zero", q.period);
  q.qmax = static_cast<int>(a.integer(i0 + 4, "qmax", 1, 255));
  check_zero_points(a, "zero", zero.data, q.period, q.qmax);
  q.zero = zero.data;
  return q;
}

TokenQuantizer object_quantizer(const Args& a, const ObjectArgs& o, int64_t cols) {
  TokenQuantizer q;
  q.period = o.integer("period", 1, kMaxDim);
  q.inv_smooth = o.f32("invSmooth", cols, true).data;
  q.inv_scale = o.f32("invScale", q.period).data;
  auto zero = o.i32("zero", q.period);
  q.qmax = static_cast<int>(o.integer("qmax", 1, 255));
  check_zero_points(a, "quant.zero", zero.data, q.period, q.qmax);
  q.zero = zero.data;
  return q;
}

// addRmsNormQuantizeF32(rows, D, x, residualIn|null, residualOut, weight, eps, out|null,
//                       period, invSmooth|null, invScale, zero, qmax, q, ldq)
template <bool kRef>
Napi::Value AddRmsNormQuantizeF32(const Napi::CallbackInfo& info) {
  Args a(info, kRef ? "addRmsNormQuantizeF32Ref" : "addRmsNormQuantizeF32", 15);
  const int64_t rows = a.integer(0, "rows", 0, kMaxDim);
  const int64_t D = a.integer(1, "D", 1, kMaxDim);
  const int64_t n = checked_mul(a, rows, D);
  auto x = a.f32(2, "x", n);
  auto rin = a.f32_or_null(3, "residualIn", n);
  auto rout = a.f32(4, "residualOut", n);
  auto w = a.f32(5, "weight", D);
  const double eps = a.number(6, "eps");
  if (!(eps >= 0 && eps <= 1)) a.fail("'eps' must be in [0, 1]");
  auto out = a.f32_or_null(7, "out", n);
  const TokenQuantizer quant = positional_quantizer(a, 8, D);
  const int64_t ldq = a.integer(14, "ldq", 0, kMaxDim);
  const int64_t q_len = strided_extent(a, "q", rows, D, ldq);
  auto q = a.u8(13, "q", q_len);
  if (kRef && !out.data) a.fail("the reference needs 'out'");
  check_disjoint(a, "out", out.data, out.data ? n : 0, "residualOut", rout.data, n);
  check_disjoint(a, "out", out.data, out.data ? n : 0, "weight", w.data, D);
  check_disjoint(a, "residualOut", rout.data, n, "weight", w.data, D);
  if (rout.data != rin.data) check_disjoint(a, "residualOut", rout.data, n, "residualIn", rin.data, rin.data ? n : 0);
  if (rout.data != x.data) check_disjoint(a, "residualOut", rout.data, n, "x", x.data, n);
  if (out.data != x.data) check_disjoint(a, "out", out.data, out.data ? n : 0, "x", x.data, n);
  if (out.data != rin.data) check_disjoint(a, "out", out.data, out.data ? n : 0, "residualIn", rin.data, rin.data ? n : 0);
  check_disjoint(a, "q", q.data, q_len, "x", x.data, n);
  check_disjoint(a, "q", q.data, q_len, "residualOut", rout.data, n);
  check_disjoint(a, "q", q.data, q_len, "out", out.data, out.data ? n : 0);
  run_kernel(a, [&] {
    (kRef ? add_rmsnorm_quantize_f32_ref : add_rmsnorm_quantize_f32)(rows, D, x.data, rin.data, rout.data, w.data,
                                                                     float(eps), out.data, quant, q.data, ldq);
  });
  return info.Env().Undefined();
}

// causalConv1dSiluQuantizeF32(B, L, E, K, x, ldx, weight, bias|null, reverse, out, ldo,
//                             period, invSmooth|null, invScale, zero, qmax, q, ldq, siluMath)
template <bool kRef>
Napi::Value CausalConv1dSiluQuantizeF32(const Napi::CallbackInfo& info) {
  Args a(info, kRef ? "causalConv1dSiluQuantizeF32Ref" : "causalConv1dSiluQuantizeF32", 19);
  const int64_t B = a.integer(0, "B", 0, kMaxDim), L = a.integer(1, "L", 0, kMaxDim);
  const int64_t E = a.integer(2, "E", 0, kMaxDim), K = a.integer(3, "K", 1, 1024);
  const int64_t ldx = a.integer(5, "ldx", 0, kMaxDim), ldo = a.integer(10, "ldo", 0, kMaxDim);
  const int64_t tokens = checked_mul(a, B, L);
  const int64_t x_len = strided_extent(a, "x", tokens, E, ldx);
  const int64_t o_len = strided_extent(a, "out", tokens, E, ldo);
  auto x = a.f32(4, "x", x_len);
  auto w = a.f32(6, "weight", checked_mul(a, E, K));
  auto bias = a.f32_or_null(7, "bias", E);
  const bool reverse = a.boolean(8, "reverse");
  auto out = a.f32(9, "out", o_len);
  const TokenQuantizer quant = positional_quantizer(a, 11, E);
  const int64_t ldq = a.integer(17, "ldq", 0, kMaxDim);
  const int64_t q_len = strided_extent(a, "q", tokens, E, ldq);
  auto q = a.u8(16, "q", q_len);
  const MathMode silu_math = a.choice(18, "siluMath", {"exact", "fast"}) == 1 ? MathMode::fast : MathMode::exact;
  check_disjoint(a, "out", out.data, o_len, "x", x.data, x_len);
  check_disjoint(a, "out", out.data, o_len, "weight", w.data, E * K);
  check_disjoint(a, "out", out.data, o_len, "bias", bias.data, bias.data ? E : 0);
  check_disjoint(a, "q", q.data, q_len, "x", x.data, x_len);
  check_disjoint(a, "q", q.data, q_len, "out", out.data, o_len);
  run_kernel(a, [&] {
    if (kRef)
      causal_conv1d_silu_quantize_f32_ref(B, L, E, K, x.data, ldx, w.data, bias.data, reverse, out.data, ldo, quant,
                                          q.data, ldq);
    else
      causal_conv1d_silu_quantize_f32(B, L, E, K, x.data, ldx, w.data, bias.data, reverse, out.data, ldo, quant,
                                      q.data, ldq, silu_math);
  });
  return info.Env().Undefined();
}

// selectiveScanBidirF32({B, L, E, N, fwd: Dir, bwd: Dir, z, ldz, deltaSoftplus = true,
//                        y?, ldy?, q?, ldq?, quant?, math = 'exact'})
//   Dir = {u, ldu, delta, lddelta, A, Bm, ldB, Cm, ldC, D?, deltaBias?, dtProj?}; y and/or q
//   required; quant = {period, invSmooth?, invScale, zero, qmax} required with q.
//   dtProj = {R, q: Uint8Array, ldq, period, aScale, aZero: Int32Array (0..255), qweight:
//   Int8Array [E·R], wScale [E]}: Δ computed in the kernel as the INT8 dt_proj (ScanDtProjInt8);
//   dtProjF32 = {R, x: Float32Array, ldx, weight: Float32Array [E·R]}: Δ computed in the kernel as
//   the FP32 dt_proj (ScanDtProjF32). With either, delta and lddelta are not read (may be
//   omitted); a direction takes at most one of the two.
//   math: 'exact' | 'fast' (MathMode); the reference always computes exactly (in double).
template <bool kRef>
Napi::Value SelectiveScanBidirF32(const Napi::CallbackInfo& info) {
  const char* fn = kRef ? "selectiveScanBidirF32Ref" : "selectiveScanBidirF32";
  Args a(info, fn, 1);
  ObjectArgs o = options_object(a, info, fn);
  BiScanArgs s;
  s.B = o.integer("B", 0, kMaxDim);
  s.L = o.integer("L", 0, kMaxDim);
  s.E = o.integer("E", 0, kMaxDim);
  s.N = o.integer("N", 1, 4096);
  const int64_t tokens = checked_mul(a, s.B, s.L);
  std::vector<Extent> inputs;
  ScanDtProjInt8 dt_proj[2];
  ScanDtProjF32 dt_proj_f32[2];
  const char* dir_names[2] = {"fwd", "bwd"};
  for (int k = 0; k < 2; ++k) {
    ObjectArgs d = o.object(dir_names[k]);
    ScanDirectionArgs& sd = s.dir[k];
    const bool computed_delta = parse_dt_proj(a, d, std::string("'") + dir_names[k] + "'", tokens, s.E, dt_proj[k],
                                              dt_proj_f32[k], sd.dt_proj, sd.dt_proj_f32, inputs);
    sd.ldu = d.integer("ldu", 0, kMaxDim);
    sd.lddelta = computed_delta && !d.has("lddelta") ? 0 : d.integer("lddelta", 0, kMaxDim);
    sd.ldB = d.integer("ldB", 0, kMaxDim);
    sd.ldC = d.integer("ldC", 0, kMaxDim);
    const int64_t u_len = strided_extent(a, "u", tokens, s.E, sd.ldu);
    const int64_t d_len = computed_delta ? 0 : strided_extent(a, "delta", tokens, s.E, sd.lddelta);
    const int64_t b_len = strided_extent(a, "Bm", tokens, s.N, sd.ldB);
    const int64_t c_len = strided_extent(a, "Cm", tokens, s.N, sd.ldC);
    sd.u = d.f32("u", u_len).data;
    if (!computed_delta) {
      sd.delta = d.f32("delta", d_len).data;
      inputs.push_back({sd.delta, d_len * 4, "delta"});
    }
    sd.A = d.f32("A", checked_mul(a, s.E, s.N)).data;
    sd.Bm = d.f32("Bm", b_len).data;
    sd.Cm = d.f32("Cm", c_len).data;
    sd.D = d.f32("D", s.E, true).data;
    sd.delta_bias = d.f32("deltaBias", s.E, true).data;
    inputs.push_back({sd.u, u_len * 4, "u"});
    inputs.push_back({sd.A, s.E * s.N * 4, "A"});
    inputs.push_back({sd.Bm, b_len * 4, "Bm"});
    inputs.push_back({sd.Cm, c_len * 4, "Cm"});
    inputs.push_back({sd.D, sd.D ? s.E * 4 : 0, "D"});
    inputs.push_back({sd.delta_bias, sd.delta_bias ? s.E * 4 : 0, "deltaBias"});
  }
  s.ldz = o.integer("ldz", 0, kMaxDim);
  const int64_t z_len = strided_extent(a, "z", tokens, s.E, s.ldz);
  s.z = o.f32("z", z_len).data;
  inputs.push_back({s.z, z_len * 4, "z"});
  s.delta_softplus = o.boolean("deltaSoftplus", true);
  s.math = o.choice("math", {"exact", "fast"}, 0) == 1 ? MathMode::fast : MathMode::exact;
  int64_t y_len = 0, q_len = 0;
  if (o.has("y")) {
    s.ldy = o.integer("ldy", 0, kMaxDim);
    y_len = strided_extent(a, "y", tokens, s.E, s.ldy);
    s.y = o.f32("y", y_len).data;
  }
  if (o.has("q")) {
    s.ldq = o.integer("ldq", 0, kMaxDim);
    q_len = strided_extent(a, "q", tokens, s.E, s.ldq);
    s.q = o.u8("q", q_len).data;
    s.quant = object_quantizer(a, o.object("quant"), s.E);
    inputs.push_back({s.quant.inv_smooth, s.quant.inv_smooth ? s.E * 4 : 0, "quant.invSmooth"});
  }
  if (!s.y && !s.q) a.fail("give 'y', 'q' or both");
  if (kRef && s.q && !s.y) a.fail("the reference needs 'y' with 'q'");
  for (const Extent& in : inputs) {
    check_disjoint(a, "y", static_cast<const uint8_t*>(static_cast<const void*>(s.y)), y_len * 4, in.name,
                   static_cast<const uint8_t*>(in.p), in.bytes);
    check_disjoint(a, "q", s.q, q_len, in.name, static_cast<const uint8_t*>(in.p), in.bytes);
  }
  check_disjoint(a, "q", s.q, q_len, "y", static_cast<const uint8_t*>(static_cast<const void*>(s.y)), y_len * 4);
  run_kernel(a, [&] { (kRef ? selective_scan_bidir_f32_ref : selective_scan_bidir_f32)(s); });
  return info.Env().Undefined();
}

void Register(Napi::Env env, Napi::Object exports) {
  auto add = [&](const char* name, Napi::Value (*fn)(const Napi::CallbackInfo&)) {
    exports.Set(name, Napi::Function::New(env, fn, name));
  };
  add("gemmF32", GemmF32<false>);
  add("gemmF32Ref", GemmF32<true>);
  add("addRmsNormF32", AddRmsNormF32<false>);
  add("addRmsNormF32Ref", AddRmsNormF32<true>);
  add("causalConv1dF32", CausalConv1dF32<false>);
  add("causalConv1dF32Ref", CausalConv1dF32<true>);
  add("selectiveScanF32", SelectiveScanF32<false>);
  add("selectiveScanF32Ref", SelectiveScanF32<true>);
  add("patchEmbedF32", PatchEmbedF32<false>);
  add("patchEmbedF32Ref", PatchEmbedF32<true>);
  add("quantizeU8", QuantizeU8<false>);
  add("quantizeU8Ref", QuantizeU8<true>);
  add("quantizeParamsDynamic", QuantizeParamsDynamic<false>);
  add("quantizeParamsDynamicRef", QuantizeParamsDynamic<true>);
  add("packInt8Weights", PackInt8Weights);
  add("packedInt8Shape", PackedInt8Shape);
  add("gemmU8S8F32", GemmU8S8F32);
  add("gemmU8S8F32Ref", GemmU8S8F32Ref);
  add("gemmU8S8S32", GemmU8S8S32);
  add("gemmU8S8S32Ref", GemmU8S8S32Ref);
  add("addRmsNormQuantizeF32", AddRmsNormQuantizeF32<false>);
  add("addRmsNormQuantizeF32Ref", AddRmsNormQuantizeF32<true>);
  add("causalConv1dSiluQuantizeF32", CausalConv1dSiluQuantizeF32<false>);
  add("causalConv1dSiluQuantizeF32Ref", CausalConv1dSiluQuantizeF32<true>);
  add("selectiveScanBidirF32", SelectiveScanBidirF32<false>);
  add("selectiveScanBidirF32Ref", SelectiveScanBidirF32<true>);
}

BindingRegistrar registrar("cpu_kernels", &Register);

}  // namespace
}  // namespace ptq4vm::binding
