// Bindings of the calibration-time searches (native/include/ptq4vm/calib_search.h).
#include "args.h"
#include "ptq4vm/calib_search.h"
#include "registry.h"

namespace ptq4vm::binding {
namespace {

constexpr int64_t kMaxDim = int64_t(1) << 31;

// searchWeightScales(rows, n, w, qmax, steps, p, scale)
Napi::Value SearchWeightScales(const Napi::CallbackInfo& info) {
  Args a(info, "searchWeightScales", 7);
  const int64_t rows = a.integer(0, "rows", 0, kMaxDim);
  const int64_t n = a.integer(1, "n", 0, kMaxDim);
  auto w = a.f32(2, "w", checked_mul(a, rows, n));
  const int qmax = static_cast<int>(a.integer(3, "qmax", 1, 127));
  const int steps = static_cast<int>(a.integer(4, "steps", 1, 100000));
  const double p = a.number(5, "p");
  if (!(p > 0 && p <= 8)) a.fail("'p' must be in (0, 8]");
  auto scale = a.f32(6, "scale", rows);
  search_weight_scales(rows, n, w.data, qmax, steps, static_cast<float>(p), scale.data);
  return info.Env().Undefined();
}

// searchActivationParams(groups, n, values, groupMin|null, groupMax|null, qmax, steps, p, scale, zero)
Napi::Value SearchActivationParams(const Napi::CallbackInfo& info) {
  Args a(info, "searchActivationParams", 10);
  const int64_t groups = a.integer(0, "groups", 0, kMaxDim);
  const int64_t n = a.integer(1, "n", 0, kMaxDim);
  auto values = a.f32(2, "values", checked_mul(a, groups, n));
  auto gmin = a.f32_or_null(3, "groupMin", groups);
  auto gmax = a.f32_or_null(4, "groupMax", groups);
  if ((gmin.data == nullptr) != (gmax.data == nullptr)) a.fail("'groupMin' and 'groupMax' must both be given or both be null");
  const int qmax = static_cast<int>(a.integer(5, "qmax", 1, 255));
  const int steps = static_cast<int>(a.integer(6, "steps", 1, 100000));
  const double p = a.number(7, "p");
  if (!(p > 0 && p <= 8)) a.fail("'p' must be in (0, 8]");
  auto scale = a.f32(8, "scale", groups);
  auto zero = a.i32(9, "zero", groups);
  search_activation_params(groups, n, values.data, gmin.data, gmax.data, qmax, steps, static_cast<float>(p),
                           scale.data, zero.data);
  return info.Env().Undefined();
}

void Register(Napi::Env env, Napi::Object exports) {
  exports.Set("searchWeightScales", Napi::Function::New(env, SearchWeightScales, "searchWeightScales"));
  exports.Set("searchActivationParams", Napi::Function::New(env, SearchActivationParams, "searchActivationParams"));
}

BindingRegistrar registrar("calib_search", &Register);

}  // namespace
}  // namespace ptq4vm::binding
