// Bindings of the backbone kernels (token_permute.h, layer_norm.h, conv2d.h, pointwise.h), each
// also as a *Ref variant running the scalar reference. Synchronous; every dimension, stride,
// length and index is checked here (kernels trust their input): gather indices must lie in
// [-1, srcLen), scatter indices in [-1, dstLen) and be distinct, position tables must cover the
// sequence. Outputs may be exactly an input (same array and stride) where the header allows it;
// any other overlap of an output with an input is refused.
#include <cstdint>
#include <limits>
#include <new>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "args.h"
#include "ptq4vm/conv2d.h"
#include "ptq4vm/layer_norm.h"
#include "ptq4vm/pointwise.h"
#include "ptq4vm/token_permute.h"
#include "registry.h"

namespace ptq4vm::binding {
namespace {

constexpr int64_t kMaxDim = std::numeric_limits<int32_t>::max();

// An output that may be exactly the input (same start and stride) but must not overlap it otherwise.
void check_same_or_disjoint(const Args& args, const char* out_name, const float* out, int64_t out_len,
                            int64_t ldo, const char* in_name, const float* in, int64_t in_len, int64_t ldi) {
  if (out == in && ldo == ldi) return;
  check_disjoint(args, out_name, out, out_len, in_name, in, in_len);
}

// Every entry in [-1, limit); with `distinct`, no non-negative value twice.
void check_index(const Args& args, const char* name, const int32_t* index, int64_t n, int64_t limit, bool distinct) {
  std::vector<bool> seen(distinct ? size_t(limit) : 0);
  for (int64_t i = 0; i < n; ++i) {
    const int64_t v = index[i];
    if (v < -1 || v >= limit) {
      args.fail(std::string("'") + name + "'[" + std::to_string(i) + "] = " + std::to_string(v) +
                " is outside [-1, " + std::to_string(limit) + ")");
    }
    if (distinct && v >= 0) {
      if (seen[size_t(v)]) args.fail(std::string("'") + name + "' names row " + std::to_string(v) + " twice");
      seen[size_t(v)] = true;
    }
  }
}

// gatherTokensF32(B, srcLen, steps, C, x, ldx, index, out, ldo)
template <bool kRef>
Napi::Value GatherTokensF32(const Napi::CallbackInfo& info) {
  Args a(info, kRef ? "gatherTokensF32Ref" : "gatherTokensF32", 9);
  const int64_t B = a.integer(0, "B", 0, kMaxDim), src_len = a.integer(1, "srcLen", 0, kMaxDim);
  const int64_t steps = a.integer(2, "steps", 0, kMaxDim), C = a.integer(3, "C", 0, kMaxDim);
  const int64_t ldx = a.integer(5, "ldx", 0, kMaxDim), ldo = a.integer(8, "ldo", 0, kMaxDim);
  const int64_t x_len = strided_extent(a, "x", checked_mul(a, B, src_len), C, ldx);
  const int64_t o_len = strided_extent(a, "out", checked_mul(a, B, steps), C, ldo);
  auto x = a.f32(4, "x", x_len);
  auto index = a.i32(6, "index", steps);
  auto out = a.f32(7, "out", o_len);
  if (B > 0 && C > 0) check_index(a, "index", index.data, steps, src_len, false);
  check_disjoint(a, "out", out.data, o_len, "x", x.data, x_len);
  check_disjoint(a, "out", out.data, o_len, "index", index.data, steps);
  run_kernel(a, [&] {
    (kRef ? gather_tokens_f32_ref : gather_tokens_f32)(B, src_len, steps, C, x.data, ldx, index.data, out.data, ldo);
  });
  return info.Env().Undefined();
}

// scatterTokensF32(B, steps, dstLen, C, y, ldy, index, gate|null, accumulate, out, ldo)
template <bool kRef>
Napi::Value ScatterTokensF32(const Napi::CallbackInfo& info) {
  Args a(info, kRef ? "scatterTokensF32Ref" : "scatterTokensF32", 11);
  const int64_t B = a.integer(0, "B", 0, kMaxDim), steps = a.integer(1, "steps", 0, kMaxDim);
  const int64_t dst_len = a.integer(2, "dstLen", 0, kMaxDim), C = a.integer(3, "C", 0, kMaxDim);
  const int64_t ldy = a.integer(5, "ldy", 0, kMaxDim), ldo = a.integer(10, "ldo", 0, kMaxDim);
  const int64_t y_len = strided_extent(a, "y", checked_mul(a, B, steps), C, ldy);
  const int64_t o_len = strided_extent(a, "out", checked_mul(a, B, dst_len), C, ldo);
  auto y = a.f32(4, "y", y_len);
  auto index = a.i32(6, "index", steps);
  auto gate = a.f32_or_null(7, "gate", checked_mul(a, B, C));
  const bool accumulate = a.boolean(8, "accumulate");
  auto out = a.f32(9, "out", o_len);
  if (B > 0 && C > 0) check_index(a, "index", index.data, steps, dst_len, true);
  check_disjoint(a, "out", out.data, o_len, "y", y.data, y_len);
  check_disjoint(a, "out", out.data, o_len, "gate", gate.data, gate.data ? B * C : 0);
  check_disjoint(a, "out", out.data, o_len, "index", index.data, steps);
  run_kernel(a, [&] {
    (kRef ? scatter_tokens_f32_ref : scatter_tokens_f32)(B, steps, dst_len, C, y.data, ldy, index.data,
                                                         gate.data, accumulate, out.data, ldo);
  });
  return info.Env().Undefined();
}

// patchMergeF32(B, H, W, C, x, out)
template <bool kRef>
Napi::Value PatchMergeF32(const Napi::CallbackInfo& info) {
  Args a(info, kRef ? "patchMergeF32Ref" : "patchMergeF32", 6);
  const int64_t B = a.integer(0, "B", 0, kMaxDim), H = a.integer(1, "H", 1, kMaxDim);
  const int64_t W = a.integer(2, "W", 1, kMaxDim), C = a.integer(3, "C", 0, kMaxDim);
  const int64_t x_len = checked_mul(a, checked_mul(a, B, checked_mul(a, H, W)), C);
  const int64_t o_len = checked_mul(a, checked_mul(a, B, checked_mul(a, (H + 1) / 2, (W + 1) / 2)), 4 * C);
  auto x = a.f32(4, "x", x_len);
  auto out = a.f32(5, "out", o_len);
  check_disjoint(a, "out", out.data, o_len, "x", x.data, x_len);
  run_kernel(a, [&] { (kRef ? patch_merge_f32_ref : patch_merge_f32)(B, H, W, C, x.data, out.data); });
  return info.Env().Undefined();
}

// layerNormF32(rows, D, x, ldx, weight|null, bias|null, eps, out, ldo)
template <bool kRef>
Napi::Value LayerNormF32(const Napi::CallbackInfo& info) {
  Args a(info, kRef ? "layerNormF32Ref" : "layerNormF32", 9);
  const int64_t rows = a.integer(0, "rows", 0, kMaxDim), D = a.integer(1, "D", 1, kMaxDim);
  const int64_t ldx = a.integer(3, "ldx", 0, kMaxDim), ldo = a.integer(8, "ldo", 0, kMaxDim);
  const int64_t x_len = strided_extent(a, "x", rows, D, ldx), o_len = strided_extent(a, "out", rows, D, ldo);
  auto x = a.f32(2, "x", x_len);
  auto w = a.f32_or_null(4, "weight", D);
  auto bias = a.f32_or_null(5, "bias", D);
  const double eps = a.number(6, "eps");
  if (!(eps >= 0 && eps <= 1)) a.fail("'eps' must be in [0, 1]");
  auto out = a.f32(7, "out", o_len);
  check_same_or_disjoint(a, "out", out.data, o_len, ldo, "x", x.data, x_len, ldx);
  check_disjoint(a, "out", out.data, o_len, "weight", w.data, w.data ? D : 0);
  check_disjoint(a, "out", out.data, o_len, "bias", bias.data, bias.data ? D : 0);
  run_kernel(a, [&] {
    (kRef ? layer_norm_f32_ref : layer_norm_f32)(rows, D, x.data, ldx, w.data, bias.data, float(eps), out.data, ldo);
  });
  return info.Env().Undefined();
}

// layerNormTokenMeanF32(B, L, D, x, ldx, select|null, weight|null, bias|null, eps, out)
template <bool kRef>
Napi::Value LayerNormTokenMeanF32(const Napi::CallbackInfo& info) {
  Args a(info, kRef ? "layerNormTokenMeanF32Ref" : "layerNormTokenMeanF32", 10);
  const int64_t B = a.integer(0, "B", 0, kMaxDim), L = a.integer(1, "L", 1, kMaxDim);
  const int64_t D = a.integer(2, "D", 1, kMaxDim), ldx = a.integer(4, "ldx", 0, kMaxDim);
  const int64_t x_len = strided_extent(a, "x", checked_mul(a, B, L), D, ldx);
  auto x = a.f32(3, "x", x_len);
  auto select = a.i32_or_null(5, "select", L);
  auto w = a.f32_or_null(6, "weight", D);
  auto bias = a.f32_or_null(7, "bias", D);
  const double eps = a.number(8, "eps");
  if (!(eps >= 0 && eps <= 1)) a.fail("'eps' must be in [0, 1]");
  const int64_t o_len = checked_mul(a, B, D);
  auto out = a.f32(9, "out", o_len);
  if (select.data) {
    bool any = false;
    for (int64_t t = 0; t < L && !any; ++t) any = select.data[t] >= 0;
    if (!any) a.fail("'select' selects no row");
  }
  check_disjoint(a, "out", out.data, o_len, "x", x.data, x_len);
  check_disjoint(a, "out", out.data, o_len, "weight", w.data, w.data ? D : 0);
  check_disjoint(a, "out", out.data, o_len, "bias", bias.data, bias.data ? D : 0);
  run_kernel(a, [&] {
    (kRef ? layer_norm_token_mean_f32_ref : layer_norm_token_mean_f32)(B, L, D, x.data, ldx, select.data, w.data,
                                                                       bias.data, float(eps), out.data);
  });
  return info.Env().Undefined();
}

// conv2dF32(B, Cin, H, W, channelsFirst, x, Cout, K, S, P, weight, bias|null, out)
template <bool kRef>
Napi::Value Conv2dF32(const Napi::CallbackInfo& info) {
  Args a(info, kRef ? "conv2dF32Ref" : "conv2dF32", 13);
  const int64_t B = a.integer(0, "B", 0, kMaxDim), Cin = a.integer(1, "Cin", 1, kMaxDim);
  const int64_t H = a.integer(2, "H", 1, kMaxDim), W = a.integer(3, "W", 1, kMaxDim);
  const bool channels_first = a.boolean(4, "channelsFirst");
  const int64_t Cout = a.integer(6, "Cout", 1, kMaxDim), K = a.integer(7, "K", 1, 64);
  const int64_t S = a.integer(8, "S", 1, 64), P = a.integer(9, "P", 0, 64);
  if (H + 2 * P < K || W + 2 * P < K) a.fail("the kernel is larger than the padded input");
  const int64_t Ho = (H + 2 * P - K) / S + 1, Wo = (W + 2 * P - K) / S + 1;
  const int64_t x_len = checked_mul(a, checked_mul(a, B, Cin), checked_mul(a, H, W));
  const int64_t w_len = checked_mul(a, checked_mul(a, Cout, Cin), K * K);
  const int64_t o_len = checked_mul(a, checked_mul(a, B, checked_mul(a, Ho, Wo)), Cout);
  auto x = a.f32(5, "x", x_len);
  auto w = a.f32(10, "weight", w_len);
  auto bias = a.f32_or_null(11, "bias", Cout);
  auto out = a.f32(12, "out", o_len);
  check_disjoint(a, "out", out.data, o_len, "x", x.data, x_len);
  check_disjoint(a, "out", out.data, o_len, "weight", w.data, w_len);
  check_disjoint(a, "out", out.data, o_len, "bias", bias.data, bias.data ? Cout : 0);
  run_kernel(a, [&] {
    (kRef ? conv2d_f32_ref : conv2d_f32)(B, Cin, H, W, channels_first, x.data, Cout, K, S, P, w.data, bias.data, out.data);
  });
  return info.Env().Undefined();
}

// depthwiseConv2dF32(B, H, W, C, x, ldx, K, weight, bias|null, applySilu, out, ldo)
template <bool kRef>
Napi::Value DepthwiseConv2dF32(const Napi::CallbackInfo& info) {
  Args a(info, kRef ? "depthwiseConv2dF32Ref" : "depthwiseConv2dF32", 12);
  const int64_t B = a.integer(0, "B", 0, kMaxDim), H = a.integer(1, "H", 1, kMaxDim);
  const int64_t W = a.integer(2, "W", 1, kMaxDim), C = a.integer(3, "C", 0, kMaxDim);
  const int64_t ldx = a.integer(5, "ldx", 0, kMaxDim), K = a.integer(6, "K", 1, 31);
  if (K % 2 == 0) a.fail("'K' must be odd (same padding)");
  const int64_t ldo = a.integer(11, "ldo", 0, kMaxDim);
  const int64_t tokens = checked_mul(a, B, checked_mul(a, H, W));
  const int64_t x_len = strided_extent(a, "x", tokens, C, ldx), o_len = strided_extent(a, "out", tokens, C, ldo);
  auto x = a.f32(4, "x", x_len);
  auto w = a.f32(7, "weight", checked_mul(a, C, K * K));
  auto bias = a.f32_or_null(8, "bias", C);
  const bool silu = a.boolean(9, "applySilu");
  auto out = a.f32(10, "out", o_len);
  check_disjoint(a, "out", out.data, o_len, "x", x.data, x_len);
  check_disjoint(a, "out", out.data, o_len, "weight", w.data, C * K * K);
  check_disjoint(a, "out", out.data, o_len, "bias", bias.data, bias.data ? C : 0);
  run_kernel(a, [&] {
    (kRef ? depthwise_conv2d_f32_ref : depthwise_conv2d_f32)(B, H, W, C, x.data, ldx, K, w.data, bias.data, silu,
                                                             out.data, ldo);
  });
  return info.Env().Undefined();
}

// unaryF32(rows, cols, x, ldx, out, ldo): gelu, sigmoid.
using UnaryFn = void (*)(int64_t, int64_t, const float*, int64_t, float*, int64_t);
template <UnaryFn kFn>
Napi::Value UnaryF32(const Napi::CallbackInfo& info, const char* name) {
  Args a(info, name, 6);
  const int64_t rows = a.integer(0, "rows", 0, kMaxDim), cols = a.integer(1, "cols", 0, kMaxDim);
  const int64_t ldx = a.integer(3, "ldx", 0, kMaxDim), ldo = a.integer(5, "ldo", 0, kMaxDim);
  const int64_t x_len = strided_extent(a, "x", rows, cols, ldx), o_len = strided_extent(a, "out", rows, cols, ldo);
  auto x = a.f32(2, "x", x_len);
  auto out = a.f32(4, "out", o_len);
  check_same_or_disjoint(a, "out", out.data, o_len, ldo, "x", x.data, x_len, ldx);
  run_kernel(a, [&] { kFn(rows, cols, x.data, ldx, out.data, ldo); });
  return info.Env().Undefined();
}

// binaryF32(rows, cols, a, lda, b, ldb, out, ldo): mulSilu (a · silu(b)), add.
using BinaryFn = void (*)(int64_t, int64_t, const float*, int64_t, const float*, int64_t, float*, int64_t);
template <BinaryFn kFn>
Napi::Value BinaryF32(const Napi::CallbackInfo& info, const char* name, const char* a_name, const char* b_name) {
  Args a(info, name, 8);
  const int64_t rows = a.integer(0, "rows", 0, kMaxDim), cols = a.integer(1, "cols", 0, kMaxDim);
  const int64_t lda = a.integer(3, (std::string("ld") + a_name).c_str(), 0, kMaxDim);
  const int64_t ldb = a.integer(5, (std::string("ld") + b_name).c_str(), 0, kMaxDim);
  const int64_t ldo = a.integer(7, "ldo", 0, kMaxDim);
  const int64_t a_len = strided_extent(a, a_name, rows, cols, lda), b_len = strided_extent(a, b_name, rows, cols, ldb);
  const int64_t o_len = strided_extent(a, "out", rows, cols, ldo);
  auto x = a.f32(2, a_name, a_len);
  auto y = a.f32(4, b_name, b_len);
  auto out = a.f32(6, "out", o_len);
  check_same_or_disjoint(a, "out", out.data, o_len, ldo, a_name, x.data, a_len, lda);
  check_same_or_disjoint(a, "out", out.data, o_len, ldo, b_name, y.data, b_len, ldb);
  run_kernel(a, [&] { kFn(rows, cols, x.data, lda, y.data, ldb, out.data, ldo); });
  return info.Env().Undefined();
}

// addPositionsF32(B, L, C, x, ldx, table, out, ldo) / ropeF32(B, L, C, x, ldx, cos, sin, out, ldo)
template <bool kRope, bool kRef>
Napi::Value PositionsF32(const Napi::CallbackInfo& info) {
  const char* name = kRope ? (kRef ? "ropeF32Ref" : "ropeF32") : (kRef ? "addPositionsF32Ref" : "addPositionsF32");
  Args a(info, name, kRope ? 9 : 8);
  const int64_t B = a.integer(0, "B", 0, kMaxDim), L = a.integer(1, "L", 0, kMaxDim);
  const int64_t C = a.integer(2, "C", 0, kMaxDim), ldx = a.integer(4, "ldx", 0, kMaxDim);
  if (kRope && C % 2 != 0) a.fail("'C' must be even (rotations act on channel pairs)");
  const size_t out_arg = kRope ? 7 : 6;
  const int64_t ldo = a.integer(out_arg + 1, "ldo", 0, kMaxDim);
  const int64_t rows = checked_mul(a, B, L);
  const int64_t x_len = strided_extent(a, "x", rows, C, ldx), o_len = strided_extent(a, "out", rows, C, ldo);
  const int64_t t_len = checked_mul(a, L, C);
  auto x = a.f32(3, "x", x_len);
  auto t0 = a.f32(5, kRope ? "cos" : "table", t_len);
  Span<float> t1;
  if (kRope) t1 = a.f32(6, "sin", t_len);
  auto out = a.f32(out_arg, "out", o_len);
  check_same_or_disjoint(a, "out", out.data, o_len, ldo, "x", x.data, x_len, ldx);
  check_disjoint(a, "out", out.data, o_len, kRope ? "cos" : "table", t0.data, t_len);
  if (kRope) check_disjoint(a, "out", out.data, o_len, "sin", t1.data, t_len);
  run_kernel(a, [&] {
    if constexpr (kRope) (kRef ? rope_f32_ref : rope_f32)(B, L, C, x.data, ldx, t0.data, t1.data, out.data, ldo);
    else (kRef ? add_positions_f32_ref : add_positions_f32)(B, L, C, x.data, ldx, t0.data, out.data, ldo);
  });
  return info.Env().Undefined();
}

// tokenMeanF32(B, L, C, x, ldx, out)
template <bool kRef>
Napi::Value TokenMeanF32(const Napi::CallbackInfo& info) {
  Args a(info, kRef ? "tokenMeanF32Ref" : "tokenMeanF32", 6);
  const int64_t B = a.integer(0, "B", 0, kMaxDim), L = a.integer(1, "L", 1, kMaxDim);
  const int64_t C = a.integer(2, "C", 0, kMaxDim), ldx = a.integer(4, "ldx", 0, kMaxDim);
  const int64_t x_len = strided_extent(a, "x", checked_mul(a, B, L), C, ldx), o_len = checked_mul(a, B, C);
  auto x = a.f32(3, "x", x_len);
  auto out = a.f32(5, "out", o_len);
  check_disjoint(a, "out", out.data, o_len, "x", x.data, x_len);
  run_kernel(a, [&] { (kRef ? token_mean_f32_ref : token_mean_f32)(B, L, C, x.data, ldx, out.data); });
  return info.Env().Undefined();
}

void Register(Napi::Env env, Napi::Object exports) {
  const std::pair<const char*, Napi::Value (*)(const Napi::CallbackInfo&)> fns[] = {
      {"gatherTokensF32", GatherTokensF32<false>},
      {"gatherTokensF32Ref", GatherTokensF32<true>},
      {"scatterTokensF32", ScatterTokensF32<false>},
      {"scatterTokensF32Ref", ScatterTokensF32<true>},
      {"patchMergeF32", PatchMergeF32<false>},
      {"patchMergeF32Ref", PatchMergeF32<true>},
      {"layerNormF32", LayerNormF32<false>},
      {"layerNormF32Ref", LayerNormF32<true>},
      {"layerNormTokenMeanF32", LayerNormTokenMeanF32<false>},
      {"layerNormTokenMeanF32Ref", LayerNormTokenMeanF32<true>},
      {"conv2dF32", Conv2dF32<false>},
      {"conv2dF32Ref", Conv2dF32<true>},
      {"depthwiseConv2dF32", DepthwiseConv2dF32<false>},
      {"depthwiseConv2dF32Ref", DepthwiseConv2dF32<true>},
      {"geluF32", [](const Napi::CallbackInfo& i) { return UnaryF32<gelu_f32>(i, "geluF32"); }},
      {"geluF32Ref", [](const Napi::CallbackInfo& i) { return UnaryF32<gelu_f32_ref>(i, "geluF32Ref"); }},
      {"sigmoidF32", [](const Napi::CallbackInfo& i) { return UnaryF32<sigmoid_f32>(i, "sigmoidF32"); }},
      {"sigmoidF32Ref", [](const Napi::CallbackInfo& i) { return UnaryF32<sigmoid_f32_ref>(i, "sigmoidF32Ref"); }},
      {"mulSiluF32", [](const Napi::CallbackInfo& i) { return BinaryF32<mul_silu_f32>(i, "mulSiluF32", "x", "z"); }},
      {"mulSiluF32Ref", [](const Napi::CallbackInfo& i) { return BinaryF32<mul_silu_f32_ref>(i, "mulSiluF32Ref", "x", "z"); }},
      {"addF32", [](const Napi::CallbackInfo& i) { return BinaryF32<add_f32>(i, "addF32", "a", "b"); }},
      {"addF32Ref", [](const Napi::CallbackInfo& i) { return BinaryF32<add_f32_ref>(i, "addF32Ref", "a", "b"); }},
      {"addPositionsF32", PositionsF32<false, false>},
      {"addPositionsF32Ref", PositionsF32<false, true>},
      {"ropeF32", PositionsF32<true, false>},
      {"ropeF32Ref", PositionsF32<true, true>},
      {"tokenMeanF32", TokenMeanF32<false>},
      {"tokenMeanF32Ref", TokenMeanF32<true>},
  };
  for (const auto& [name, fn] : fns) exports.Set(name, Napi::Function::New(env, fn, name));
}

BindingRegistrar registrar("backbone_kernels", &Register);

}  // namespace
}  // namespace ptq4vm::binding
