// Argument checking for every binding: the one place native code meets untrusted values.
// Each accessor throws a JS TypeError/RangeError naming the function and the argument, so a
// kernel is only ever called with lengths, strides and sizes that fit the buffers it gets.
#pragma once
#include <napi.h>

#include <cstdint>
#include <exception>
#include <initializer_list>
#include <limits>
#include <new>
#include <string>

namespace ptq4vm::binding {

template <typename T>
struct Span {
  T* data = nullptr;
  int64_t length = 0;  // elements
};

class Args {
 public:
  Args(const Napi::CallbackInfo& info, const char* fn, size_t expected_count);

  Napi::Env env() const { return info_.Env(); }

  // Integer in [lo, hi].
  int64_t integer(size_t i, const char* name, int64_t lo = 0,
                  int64_t hi = std::numeric_limits<int32_t>::max()) const;
  double number(size_t i, const char* name) const;  // finite
  bool boolean(size_t i, const char* name) const;
  // A string that must be one of `choices`; returns its index.
  size_t choice(size_t i, const char* name, std::initializer_list<const char*> choices) const;
  bool is_null(size_t i) const;  // null or undefined

  // Typed arrays of exactly the element type; min_length elements at least.
  Span<float> f32(size_t i, const char* name, int64_t min_length) const;
  Span<float> f32_or_null(size_t i, const char* name, int64_t min_length) const;
  Span<uint8_t> u8(size_t i, const char* name, int64_t min_length) const;
  Span<int8_t> i8(size_t i, const char* name, int64_t min_length) const;
  Span<int32_t> i32(size_t i, const char* name, int64_t min_length) const;
  Span<int32_t> i32_or_null(size_t i, const char* name, int64_t min_length) const;
  Span<uint16_t> u16(size_t i, const char* name, int64_t min_length) const;

  [[noreturn]] void fail(const std::string& message) const;  // RangeError "fn: message"

 private:
  template <typename T>
  Span<T> typed(size_t i, const char* name, int64_t min_length, napi_typedarray_type type,
                const char* type_name, bool allow_null) const;
  const Napi::CallbackInfo& info_;
  const char* fn_;
};

// Overflow-checked arithmetic for extents; fail() on overflow.
int64_t checked_mul(const Args& a, int64_t x, int64_t y);
int64_t checked_add(const Args& a, int64_t x, int64_t y);
// Elements a strided matrix [rows, cols] with row stride ld needs (0 if rows or cols is 0);
// fails unless ld >= cols.
int64_t strided_extent(const Args& a, const char* name, int64_t rows, int64_t cols, int64_t ld);

// Fails unless the `an` elements at a and the `bn` elements at b are disjoint memory.
template <typename T, typename U>
void check_disjoint(const Args& args, const char* a_name, const T* a, int64_t an, const char* b_name, const U* b,
                    int64_t bn) {
  if (!a || !b || an == 0 || bn == 0) return;
  const auto a0 = reinterpret_cast<uintptr_t>(a), a1 = a0 + uintptr_t(an) * sizeof(T);
  const auto b0 = reinterpret_cast<uintptr_t>(b), b1 = b0 + uintptr_t(bn) * sizeof(U);
  if (a0 < b1 && b0 < a1) args.fail(std::string("'") + a_name + "' must not overlap '" + b_name + "'");
}

// Runs a kernel, turning C++ exceptions (allocation failure) into a JS error.
template <typename F>
void run_kernel(const Args& args, F&& kernel) {
  try {
    kernel();
  } catch (const std::bad_alloc&) {
    args.fail("out of memory");
  } catch (const std::exception& e) {
    args.fail(e.what());
  }
}

}  // namespace ptq4vm::binding
