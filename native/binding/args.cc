#include "args.h"

#include <cmath>

namespace ptq4vm::binding {

Args::Args(const Napi::CallbackInfo& info, const char* fn, size_t expected_count)
    : info_(info), fn_(fn) {
  if (info.Length() != expected_count) {
    throw Napi::TypeError::New(info.Env(), std::string(fn) + ": expected " +
                                               std::to_string(expected_count) + " arguments, got " +
                                               std::to_string(info.Length()));
  }
}

void Args::fail(const std::string& message) const {
  throw Napi::RangeError::New(info_.Env(), std::string(fn_) + ": " + message);
}

bool Args::is_null(size_t i) const { return info_[i].IsNull() || info_[i].IsUndefined(); }

double Args::number(size_t i, const char* name) const {
  if (!info_[i].IsNumber()) {
    throw Napi::TypeError::New(env(), std::string(fn_) + ": '" + name + "' must be a number");
  }
  double v = info_[i].As<Napi::Number>().DoubleValue();
  if (!std::isfinite(v)) fail(std::string("'") + name + "' must be finite");
  return v;
}

int64_t Args::integer(size_t i, const char* name, int64_t lo, int64_t hi) const {
  double v = number(i, name);
  if (v != std::floor(v)) fail(std::string("'") + name + "' must be an integer");
  if (v < static_cast<double>(lo) || v > static_cast<double>(hi)) {
    fail(std::string("'") + name + "' = " + std::to_string(static_cast<long long>(v)) +
         " is outside [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
  }
  return static_cast<int64_t>(v);
}

bool Args::boolean(size_t i, const char* name) const {
  if (!info_[i].IsBoolean()) {
    throw Napi::TypeError::New(env(), std::string(fn_) + ": '" + name + "' must be a boolean");
  }
  return info_[i].As<Napi::Boolean>().Value();
}

size_t Args::choice(size_t i, const char* name, std::initializer_list<const char*> choices) const {
  std::string list;
  for (const char* c : choices) list += std::string(list.empty() ? "" : " | ") + "'" + c + "'";
  if (!info_[i].IsString()) {
    throw Napi::TypeError::New(env(), std::string(fn_) + ": '" + name + "' must be " + list);
  }
  const std::string got = info_[i].As<Napi::String>().Utf8Value();
  size_t k = 0;
  for (const char* c : choices) {
    if (got == c) return k;
    ++k;
  }
  fail(std::string("'") + name + "' must be " + list);
}

template <typename T>
Span<T> Args::typed(size_t i, const char* name, int64_t min_length, napi_typedarray_type type,
                    const char* type_name, bool allow_null) const {
  if (allow_null && is_null(i)) return {};
  if (!info_[i].IsTypedArray() || info_[i].As<Napi::TypedArray>().TypedArrayType() != type) {
    throw Napi::TypeError::New(env(), std::string(fn_) + ": '" + name + "' must be a " +
                                          type_name + (allow_null ? " or null" : ""));
  }
  auto arr = info_[i].As<Napi::TypedArray>();
  int64_t len = static_cast<int64_t>(arr.ElementLength());
  if (len < min_length) {
    fail(std::string("'") + name + "' has " + std::to_string(len) + " elements, needs " +
         std::to_string(min_length));
  }
  auto* base = static_cast<uint8_t*>(arr.ArrayBuffer().Data()) + arr.ByteOffset();
  if (reinterpret_cast<uintptr_t>(base) % alignof(T) != 0) {
    fail(std::string("'") + name + "' is not aligned to its element size");
  }
  return {reinterpret_cast<T*>(base), len};
}

Span<float> Args::f32(size_t i, const char* name, int64_t n) const {
  return typed<float>(i, name, n, napi_float32_array, "Float32Array", false);
}
Span<float> Args::f32_or_null(size_t i, const char* name, int64_t n) const {
  return typed<float>(i, name, n, napi_float32_array, "Float32Array", true);
}
Span<uint8_t> Args::u8(size_t i, const char* name, int64_t n) const {
  return typed<uint8_t>(i, name, n, napi_uint8_array, "Uint8Array", false);
}
Span<int8_t> Args::i8(size_t i, const char* name, int64_t n) const {
  return typed<int8_t>(i, name, n, napi_int8_array, "Int8Array", false);
}
Span<int32_t> Args::i32(size_t i, const char* name, int64_t n) const {
  return typed<int32_t>(i, name, n, napi_int32_array, "Int32Array", false);
}
Span<int32_t> Args::i32_or_null(size_t i, const char* name, int64_t n) const {
  return typed<int32_t>(i, name, n, napi_int32_array, "Int32Array", true);
}
Span<uint16_t> Args::u16(size_t i, const char* name, int64_t n) const {
  return typed<uint16_t>(i, name, n, napi_uint16_array, "Uint16Array", false);
}

int64_t checked_mul(const Args& a, int64_t x, int64_t y) {
  int64_t r;
  if (__builtin_mul_overflow(x, y, &r)) a.fail("size overflow");
  return r;
}
int64_t checked_add(const Args& a, int64_t x, int64_t y) {
  int64_t r;
  if (__builtin_add_overflow(x, y, &r)) a.fail("size overflow");
  return r;
}
int64_t strided_extent(const Args& a, const char* name, int64_t rows, int64_t cols, int64_t ld) {
  if (ld < cols) {
    a.fail(std::string("row stride of '") + name + "' (" + std::to_string(ld) +
           ") is smaller than its row length (" + std::to_string(cols) + ")");
  }
  if (rows == 0 || cols == 0) return 0;
  return checked_add(a, checked_mul(a, rows - 1, ld), cols);
}

}  // namespace ptq4vm::binding
