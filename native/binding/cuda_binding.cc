// Bindings of the CUDA runtime and kernels (native/include/ptq4vm/cuda/*.h) for the CUDA
// executor (lib/runtime/cuda-executor.ts; typed in lib/backend/cuda-kernels.ts).
//
// Device memory is owned by JS handles (type-tagged externals): a context (one stream and
// its caching allocator), buffers (f32 / f16 / u8 / i32 / i8 arrays, from the cache or
// persistent), uploaded GEMM weights, a linear's quantization parameters, CUDA graphs. Each
// is freed by cudaDispose(handle) or, failing that, by its finalizer; every handle keeps its
// context alive. Operands are (buffer, element offset[, row stride]); every size is checked
// against the buffer here, and outputs may not overlap inputs (except where noted), so a
// kernel only ever sees ranges inside its buffers. Kernel launches are asynchronous on the
// context's stream; cudaDownload and cudaSynchronize wait for it.
//
// Built without CUDA (nvcc absent), this file exports nothing (runtime-info.ts then reports
// "built without CUDA"); built with CUDA on a machine without a GPU, cudaInfo reports 0
// devices and the reason, and every other function throws "<fn>: no CUDA device (<reason>)".
#include "registry.h"

#ifdef PTQ4VM_WITH_CUDA

#include <cuda_fp16.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <new>
#include <string>
#include <utility>
#include <vector>

#include "args.h"
#include "ptq4vm/cuda/conv1d.h"
#include "ptq4vm/cuda/elementwise.h"
#include "ptq4vm/cuda/gemm.h"
#include "ptq4vm/cuda/gemm_int8.h"
#include "ptq4vm/cuda/norm.h"
#include "ptq4vm/cuda/patch_embed.h"
#include "ptq4vm/cuda/quantize.h"
#include "ptq4vm/cuda/runtime.h"
#include "ptq4vm/cuda/scan.h"

namespace ptq4vm::binding {
namespace {

namespace cu = ptq4vm::cuda;
using cu::DType;

constexpr int64_t kMaxDim = std::numeric_limits<int32_t>::max();

// ---- element types of buffers (the kernels' DType plus the integer arrays parameters need)

enum class Elem : int { F32, F16, U8, I32, I8 };
const char* elem_name(Elem e) {
  switch (e) {
    case Elem::F32: return "f32";
    case Elem::F16: return "f16";
    case Elem::U8: return "u8";
    case Elem::I32: return "i32";
    case Elem::I8: return "i8";
  }
  return "?";
}
size_t elem_size(Elem e) {
  switch (e) {
    case Elem::F32: case Elem::I32: return 4;
    case Elem::F16: return 2;
    default: return 1;
  }
}
DType kernel_type(Elem e) { return e == Elem::F16 ? DType::F16 : e == Elem::U8 ? DType::U8 : DType::F32; }

// ---- handles

struct ContextHandle {
  std::shared_ptr<cu::Context> ctx;
};
struct BufferHandle {
  std::shared_ptr<cu::Context> ctx;  // declared first: destroyed after the memory it owns
  cu::DeviceBuffer mem;
  Elem elem = Elem::F32;
  int64_t length = 0;
  bool disposed = false;
};
struct WeightsHandle {
  std::shared_ptr<cu::Context> ctx;
  bool int8 = true;
  cu::Int8Weights i8;
  cu::F16Weights f16;
  int64_t N = 0, K = 0;
  bool disposed = false;
};
// A linear's activation quantization: step sizes (and reciprocals), zero points, and the
// smoothing factors σ (and 1/σ) of its input channels, all on the device.
struct QuantHandle {
  std::shared_ptr<cu::Context> ctx;
  int64_t period = 1, cols = 0;
  int qmax = 255;
  cu::DeviceBuffer scale, inv_scale, zero, smooth, inv_smooth;
  bool disposed = false;
  cu::QuantParams quant() const {
    cu::QuantParams q;
    q.period = period;
    q.inv_smooth = cols ? inv_smooth.as<const float>() : nullptr;
    q.inv_scale = inv_scale.as<const float>();
    q.zero = zero.as<const int32_t>();
    q.qmax = qmax;
    return q;
  }
  cu::DequantParams dequant() const {
    cu::DequantParams d;
    d.period = period;
    d.scale = scale.as<const float>();
    d.zero = zero.as<const int32_t>();
    d.smooth = cols ? smooth.as<const float>() : nullptr;
    return d;
  }
};
struct GraphHandle {
  std::shared_ptr<cu::Context> ctx;
  std::unique_ptr<cu::Graph> graph;
};

// Type tags: a handle is accepted only where its own kind is expected.
constexpr napi_type_tag kContextTag = {0x7a3c1d2e9b8f4a01ULL, 0x8d2e6f1a3b4c5d01ULL};
constexpr napi_type_tag kBufferTag = {0x7a3c1d2e9b8f4a02ULL, 0x8d2e6f1a3b4c5d02ULL};
constexpr napi_type_tag kWeightsTag = {0x7a3c1d2e9b8f4a03ULL, 0x8d2e6f1a3b4c5d03ULL};
constexpr napi_type_tag kQuantTag = {0x7a3c1d2e9b8f4a04ULL, 0x8d2e6f1a3b4c5d04ULL};
constexpr napi_type_tag kGraphTag = {0x7a3c1d2e9b8f4a05ULL, 0x8d2e6f1a3b4c5d05ULL};

template <class T>
struct Tag;
template <> struct Tag<ContextHandle> { static constexpr const napi_type_tag* tag = &kContextTag; static constexpr const char* name = "a CUDA context"; };
template <> struct Tag<BufferHandle> { static constexpr const napi_type_tag* tag = &kBufferTag; static constexpr const char* name = "a CUDA buffer"; };
template <> struct Tag<WeightsHandle> { static constexpr const napi_type_tag* tag = &kWeightsTag; static constexpr const char* name = "CUDA weights"; };
template <> struct Tag<QuantHandle> { static constexpr const napi_type_tag* tag = &kQuantTag; static constexpr const char* name = "CUDA quantization parameters"; };
template <> struct Tag<GraphHandle> { static constexpr const napi_type_tag* tag = &kGraphTag; static constexpr const char* name = "a CUDA graph"; };

template <class T>
Napi::Value make_handle(Napi::Env env, std::unique_ptr<T> h) {
  auto ext = Napi::External<T>::New(env, h.get(), [](Napi::Env, T* p) { delete p; });
  h.release();
  ext.TypeTag(Tag<T>::tag);
  return ext;
}

// ---- the device query, once per process (a GPU does not appear while a process runs)

const cu::DeviceQuery& devices() {
  static const cu::DeviceQuery q = cu::query_devices();
  return q;
}

// Every binding but cudaInfo starts here: a clear error when there is no GPU.
void require_device(const Napi::Env& env, const char* fn) {
  const auto& q = devices();
  if (q.count == 0) throw Napi::Error::New(env, std::string(fn) + ": no CUDA device (" + q.reason + ")");
}

// Runs a launcher: its argument errors become RangeErrors, CUDA failures Errors, both naming fn.
template <class F>
void run_cuda(const Napi::Env& env, const char* fn, F&& body) {
  try {
    body();
  } catch (const cu::CudaArgError& e) {
    throw Napi::RangeError::New(env, std::string(fn) + ": " + e.what());
  } catch (const cu::CudaError& e) {
    throw Napi::Error::New(env, std::string(fn) + ": " + e.what());
  } catch (const std::bad_alloc&) {
    throw Napi::Error::New(env, std::string(fn) + ": out of host memory");
  }
}

// ---- argument access beyond args.h: handles, and the same checks on object fields

// Reads argument values either positionally (info[i]) or by name from an object, with the
// error messages of args.h ("fn: 'name' ...").
class Reader {
 public:
  Reader(const Napi::Env& env, std::string fn) : env_(env), fn_(std::move(fn)) {}
  const std::string& fn() const { return fn_; }
  [[noreturn]] void fail(const std::string& m) const { throw Napi::RangeError::New(env_, fn_ + ": " + m); }
  [[noreturn]] void type_fail(const std::string& name, const std::string& what) const {
    throw Napi::TypeError::New(env_, fn_ + ": '" + name + "' must be " + what);
  }
  static bool is_null(const Napi::Value& v) { return v.IsNull() || v.IsUndefined(); }

  int64_t integer(const Napi::Value& v, const std::string& name, int64_t lo = 0, int64_t hi = kMaxDim) const {
    if (!v.IsNumber()) type_fail(name, "a number");
    const double d = v.As<Napi::Number>().DoubleValue();
    if (!std::isfinite(d) || d != std::floor(d)) fail("'" + name + "' must be an integer");
    if (d < static_cast<double>(lo) || d > static_cast<double>(hi)) {
      fail("'" + name + "' = " + std::to_string(static_cast<long long>(d)) + " is outside [" + std::to_string(lo) +
           ", " + std::to_string(hi) + "]");
    }
    return static_cast<int64_t>(d);
  }
  double number(const Napi::Value& v, const std::string& name) const {
    if (!v.IsNumber()) type_fail(name, "a number");
    const double d = v.As<Napi::Number>().DoubleValue();
    if (!std::isfinite(d)) fail("'" + name + "' must be finite");
    return d;
  }
  bool boolean(const Napi::Value& v, const std::string& name) const {
    if (!v.IsBoolean()) type_fail(name, "a boolean");
    return v.As<Napi::Boolean>().Value();
  }
  template <class T>
  T* handle(const Napi::Value& v, const std::string& name, bool allow_null = false) const {
    if (allow_null && is_null(v)) return nullptr;
    if (!v.IsExternal() || !v.As<Napi::External<T>>().CheckTypeTag(Tag<T>::tag)) {
      type_fail(name, std::string(Tag<T>::name) + (allow_null ? " or null" : ""));
    }
    return v.As<Napi::External<T>>().Data();
  }
  Napi::Object object(const Napi::Value& v, const std::string& name) const {
    if (!v.IsObject()) type_fail(name, "an object");
    return v.As<Napi::Object>();
  }

 private:
  Napi::Env env_;
  std::string fn_;
};

// A view of a buffer checked for its element type, context and extent: [offset, offset+extent)
// elements. Records its byte range for the overlap checks.
struct Region {
  const BufferHandle* buf = nullptr;
  int64_t begin = 0, end = 0;  // bytes
  std::string name;
};

class Operands {
 public:
  explicit Operands(const Reader& r) : r_(r) {}
  void set_context(const ContextHandle* ctx) { ctx_ = ctx; }

  // Buffer operand of `elems` types covering rows × cols with row stride ld from offset.
  // Returns the device address of element `offset`; null only when allow_null and v is null.
  void* matrix(const Napi::Value& v, const Napi::Value& off_v, const std::string& name, int64_t rows, int64_t cols,
               int64_t ld, std::initializer_list<Elem> elems, bool output, bool allow_null = false,
               Elem* elem_out = nullptr) {
    BufferHandle* b = r_.handle<BufferHandle>(v, name, allow_null);
    if (!b) return nullptr;
    check_buffer(b, name, elems);
    const int64_t offset = (off_v.IsEmpty() || off_v.IsUndefined()) ? 0 : r_.integer(off_v, name + " offset", 0, std::numeric_limits<int64_t>::max() / 16);
    if (ld < cols) {
      r_.fail("row stride of '" + name + "' (" + std::to_string(ld) + ") is smaller than its row length (" +
              std::to_string(cols) + ")");
    }
    int64_t extent = 0;
    if (rows > 0 && cols > 0) {
      if (__builtin_mul_overflow(rows - 1, ld, &extent) || __builtin_add_overflow(extent, cols, &extent)) {
        r_.fail("size overflow in '" + name + "'");
      }
    }
    if (offset > b->length || extent > b->length - offset) {
      r_.fail("'" + name + "' needs " + std::to_string(extent) + " elements from offset " + std::to_string(offset) +
              ", the buffer has " + std::to_string(b->length));
    }
    if (elem_out) *elem_out = b->elem;
    const int64_t es = static_cast<int64_t>(elem_size(b->elem));
    Region reg{b, offset * es, (offset + extent) * es, name};
    if (extent > 0) (output ? outputs_ : inputs_).push_back(reg);
    return static_cast<char*>(b->mem.get()) + offset * es;
  }
  // A contiguous vector of n elements at offset 0.
  void* vector(const Napi::Value& v, const std::string& name, int64_t n, std::initializer_list<Elem> elems,
               bool allow_null = false) {
    return matrix(v, Napi::Value(), name, n > 0 ? 1 : 0, n, n, elems, false, allow_null);
  }
  const QuantHandle* quant(const Napi::Value& v, const std::string& name, bool allow_null) {
    QuantHandle* q = r_.handle<QuantHandle>(v, name, allow_null);
    if (!q) return nullptr;
    if (q->disposed) r_.fail("'" + name + "' was disposed");
    if (q->ctx != ctx_->ctx) r_.fail("'" + name + "' belongs to another CUDA context");
    return q;
  }
  const WeightsHandle* weights(const Napi::Value& v, const std::string& name, bool int8) {
    WeightsHandle* w = r_.handle<WeightsHandle>(v, name);
    if (w->disposed) r_.fail("'" + name + "' was disposed");
    if (w->ctx != ctx_->ctx) r_.fail("'" + name + "' belongs to another CUDA context");
    if (w->int8 != int8) r_.fail("'" + name + "' must be " + (int8 ? "INT8" : "FP16") + " weights");
    return w;
  }
  // Outputs may not overlap inputs or each other, except the pairs allowed (exact aliasing).
  void check_overlaps(std::initializer_list<std::pair<const char*, const char*>> allowed_exact = {}) const {
    auto overlap = [](const Region& a, const Region& b) { return a.buf == b.buf && a.begin < b.end && b.begin < a.end; };
    auto allowed = [&](const Region& a, const Region& b) {
      for (auto& [x, y] : allowed_exact)
        if ((a.name == x && b.name == y) || (a.name == y && b.name == x))
          return a.begin == b.begin && a.end == b.end;
      return false;
    };
    for (size_t i = 0; i < outputs_.size(); ++i) {
      for (const Region& in : inputs_)
        if (overlap(outputs_[i], in) && !allowed(outputs_[i], in))
          r_.fail("'" + outputs_[i].name + "' must not overlap '" + in.name + "'");
      for (size_t j = i + 1; j < outputs_.size(); ++j)
        if (overlap(outputs_[i], outputs_[j])) r_.fail("'" + outputs_[i].name + "' must not overlap '" + outputs_[j].name + "'");
    }
  }

 private:
  void check_buffer(const BufferHandle* b, const std::string& name, std::initializer_list<Elem> elems) const {
    if (b->disposed) r_.fail("'" + name + "' was disposed");
    if (b->ctx != ctx_->ctx) r_.fail("'" + name + "' belongs to another CUDA context");
    bool ok = false;
    std::string want;
    for (Elem e : elems) {
      ok = ok || e == b->elem;
      want += (want.empty() ? "" : " or ") + std::string(elem_name(e));
    }
    if (!ok) r_.fail("'" + name + "' is a " + elem_name(b->elem) + " buffer, expected " + want);
  }
  const Reader& r_;
  const ContextHandle* ctx_ = nullptr;
  std::vector<Region> inputs_, outputs_;
};

// Common prologue: the device check, then the context (argument 0).
struct Call {
  Napi::Env env;
  Reader r;
  ContextHandle* ctx;
  Operands ops;
  Call(const Napi::CallbackInfo& info, const char* fn, size_t count)
      : env(info.Env()), r(info.Env(), fn), ctx(nullptr), ops(r) {
    require_device(env, fn);
    if (info.Length() != count) {
      throw Napi::TypeError::New(env, std::string(fn) + ": expected " + std::to_string(count) + " arguments, got " +
                                          std::to_string(info.Length()));
    }
    ctx = r.handle<ContextHandle>(info[0], "ctx");
    if (!ctx->ctx) r.fail("the CUDA context was disposed");
    ops.set_context(ctx);
  }
  cudaStream_t stream() const { return ctx->ctx->stream(); }
  cu::Context& context() const { return *ctx->ctx; }
};

cu::GemmTile parse_tile(const Reader& r, const Napi::Value& v) {
  if (Reader::is_null(v)) return cu::GemmTile::Auto;
  if (!v.IsString()) r.type_fail("tile", "a string or null");
  const std::string s = v.As<Napi::String>().Utf8Value();
  if (s == "auto") return cu::GemmTile::Auto;
  if (s == "large") return cu::GemmTile::Large;
  if (s == "medium") return cu::GemmTile::Medium;
  if (s == "small") return cu::GemmTile::Small;
  if (s == "simple") return cu::GemmTile::Simple;
  r.fail("unknown tile '" + s + "' (expected auto, large, medium, small or simple)");
}

Elem parse_elem(const Reader& r, const Napi::Value& v) {
  if (!v.IsString()) r.type_fail("dtype", "a string");
  const std::string s = v.As<Napi::String>().Utf8Value();
  for (Elem e : {Elem::F32, Elem::F16, Elem::U8, Elem::I32, Elem::I8})
    if (s == elem_name(e)) return e;
  r.fail("unknown dtype '" + s + "' (expected f32, f16, u8, i32 or i8)");
}

// ---- runtime

// cudaInfo() → {devices: [{index, name, computeCapability, memoryBytes, smCount}], reason, kernelMode}
Napi::Value CudaInfo(const Napi::CallbackInfo& info) {
  Args a(info, "cudaInfo", 0);
  Napi::Env env = info.Env();
  auto out = Napi::Object::New(env);
  auto list = Napi::Array::New(env);
  const auto& q = devices();
  std::string reason = q.reason;
  for (int i = 0; i < q.count; ++i) {
    try {
      const cu::DeviceInfo& d = cu::device_info(i);
      auto o = Napi::Object::New(env);
      o.Set("index", i);
      o.Set("name", d.name);
      o.Set("computeCapability", std::to_string(d.sm_major) + "." + std::to_string(d.sm_minor));
      o.Set("memoryBytes", static_cast<double>(d.global_mem));
      o.Set("smCount", d.sm_count);
      list.Set(list.Length(), o);
    } catch (const cu::CudaError& e) {
      reason = e.what();
    }
  }
  out.Set("devices", list);
  out.Set("reason", list.Length() > 0 ? env.Null() : Napi::String::New(env, reason.empty() ? "no usable CUDA device" : reason));
  out.Set("kernelMode", cu::kernel_mode_name(cu::kernel_mode()));
  return out;
}

// cudaSetKernelMode('fast' | 'simple') → the mode in effect (process-wide).
Napi::Value CudaSetKernelMode(const Napi::CallbackInfo& info) {
  require_device(info.Env(), "cudaSetKernelMode");
  Args a(info, "cudaSetKernelMode", 1);
  if (!info[0].IsString()) throw Napi::TypeError::New(info.Env(), "cudaSetKernelMode: 'mode' must be a string");
  const std::string m = info[0].As<Napi::String>().Utf8Value();
  if (m == "fast") cu::set_kernel_mode(cu::KernelMode::Fast);
  else if (m == "simple") cu::set_kernel_mode(cu::KernelMode::Simple);
  else a.fail("unknown mode '" + m + "' (expected fast or simple)");
  return Napi::String::New(info.Env(), cu::kernel_mode_name(cu::kernel_mode()));
}

// cudaCreateContext(device) → ctx
Napi::Value CudaCreateContext(const Napi::CallbackInfo& info) {
  const char* fn = "cudaCreateContext";
  require_device(info.Env(), fn);
  Args a(info, fn, 1);
  const int device = static_cast<int>(a.integer(0, "device", 0, devices().count - 1));
  auto h = std::make_unique<ContextHandle>();
  run_cuda(info.Env(), fn, [&] { h->ctx = std::make_shared<cu::Context>(device); });
  return make_handle(info.Env(), std::move(h));
}

// cudaDispose(handle): frees what the handle owns now (idempotent). A context is released
// when its last buffer, weights, parameters and graphs are gone too.
Napi::Value CudaDispose(const Napi::CallbackInfo& info) {
  require_device(info.Env(), "cudaDispose");
  Args a(info, "cudaDispose", 1);
  Napi::Value v = info[0];
  if (!v.IsExternal()) throw Napi::TypeError::New(info.Env(), "cudaDispose: 'handle' must be a CUDA handle");
  auto ext = v.As<Napi::External<void>>();
  if (ext.CheckTypeTag(&kBufferTag)) {
    auto* b = v.As<Napi::External<BufferHandle>>().Data();
    b->mem.reset();
    b->disposed = true;
  } else if (ext.CheckTypeTag(&kWeightsTag)) {
    auto* w = v.As<Napi::External<WeightsHandle>>().Data();
    w->i8 = cu::Int8Weights();
    w->f16 = cu::F16Weights();
    w->disposed = true;
  } else if (ext.CheckTypeTag(&kQuantTag)) {
    auto* q = v.As<Napi::External<QuantHandle>>().Data();
    for (auto* m : {&q->scale, &q->inv_scale, &q->zero, &q->smooth, &q->inv_smooth}) m->reset();
    q->disposed = true;
  } else if (ext.CheckTypeTag(&kGraphTag)) {
    v.As<Napi::External<GraphHandle>>().Data()->graph.reset();
  } else if (ext.CheckTypeTag(&kContextTag)) {
    v.As<Napi::External<ContextHandle>>().Data()->ctx.reset();
  } else {
    throw Napi::TypeError::New(info.Env(), "cudaDispose: 'handle' must be a CUDA handle");
  }
  return info.Env().Undefined();
}

// cudaSynchronize(ctx): waits for the context's stream.
Napi::Value CudaSynchronize(const Napi::CallbackInfo& info) {
  Call c(info, "cudaSynchronize", 1);
  run_cuda(c.env, "cudaSynchronize", [&] { c.context().synchronize(); });
  return c.env.Undefined();
}

// cudaStats(ctx) → the caching allocator's counters and the device's name.
Napi::Value CudaStats(const Napi::CallbackInfo& info) {
  Call c(info, "cudaStats", 1);
  const auto s = c.context().allocator().stats();
  auto o = Napi::Object::New(c.env);
  o.Set("deviceMallocs", static_cast<double>(s.device_mallocs));
  o.Set("deviceFrees", static_cast<double>(s.device_frees));
  o.Set("cacheHits", static_cast<double>(s.cache_hits));
  o.Set("reservedBytes", static_cast<double>(s.reserved_bytes));
  o.Set("inUseBytes", static_cast<double>(s.in_use_bytes));
  o.Set("device", c.context().device());
  o.Set("name", c.context().info().name);
  return o;
}

// cudaAlloc(ctx, dtype, length, persistent) → buffer (uninitialised). persistent: its own
// cudaMalloc (weights, parameters); otherwise from the context's cache (activations).
Napi::Value CudaAlloc(const Napi::CallbackInfo& info) {
  Call c(info, "cudaAlloc", 4);
  const Elem e = parse_elem(c.r, info[1]);
  const int64_t n = c.r.integer(info[2], "length", 0, int64_t(1) << 40);
  const bool persistent = c.r.boolean(info[3], "persistent");
  auto h = std::make_unique<BufferHandle>();
  h->ctx = c.ctx->ctx;
  h->elem = e;
  h->length = n;
  const size_t bytes = static_cast<size_t>(n) * elem_size(e);
  run_cuda(c.env, "cudaAlloc", [&] { h->mem = persistent ? cu::DeviceBuffer::persistent(bytes) : c.context().alloc(bytes); });
  return make_handle(c.env, std::move(h));
}

// cudaUpload(ctx, buffer, offset, data): f32 ← Float32Array; f16 ← Float32Array (rounded to
// nearest even) or Uint16Array (raw bits); u8 ← Uint8Array; i32 ← Int32Array; i8 ← Int8Array.
Napi::Value CudaUpload(const Napi::CallbackInfo& info) {
  const char* fn = "cudaUpload";
  Call c(info, fn, 4);
  if (!info[3].IsTypedArray()) c.r.type_fail("data", "a typed array");
  auto arr = info[3].As<Napi::TypedArray>();
  const int64_t n = static_cast<int64_t>(arr.ElementLength());
  BufferHandle* b = c.r.handle<BufferHandle>(info[1], "buffer");
  const napi_typedarray_type t = arr.TypedArrayType();
  const bool ok = (b->elem == Elem::F32 && t == napi_float32_array) ||
                  (b->elem == Elem::F16 && (t == napi_float32_array || t == napi_uint16_array)) ||
                  (b->elem == Elem::U8 && t == napi_uint8_array) || (b->elem == Elem::I32 && t == napi_int32_array) ||
                  (b->elem == Elem::I8 && t == napi_int8_array);
  if (!ok) c.r.fail(std::string("cannot upload this typed array into a ") + elem_name(b->elem) + " buffer");
  void* dst = c.ops.matrix(info[1], info[2], "buffer", n > 0 ? 1 : 0, n, n,
                           {Elem::F32, Elem::F16, Elem::U8, Elem::I32, Elem::I8}, true);
  const void* src = static_cast<const uint8_t*>(arr.ArrayBuffer().Data()) + arr.ByteOffset();
  run_cuda(c.env, fn, [&] {
    if (b->elem == Elem::F16 && t == napi_float32_array) {
      std::vector<__half> h(static_cast<size_t>(n));
      const float* f = static_cast<const float*>(src);
      for (int64_t i = 0; i < n; ++i) h[i] = __float2half_rn(f[i]);
      c.context().upload(dst, h.data(), h.size() * sizeof(__half));
    } else {
      c.context().upload(dst, src, static_cast<size_t>(n) * elem_size(b->elem));
    }
  });
  return c.env.Undefined();
}

// cudaDownload(ctx, buffer, offset, rows, cols, ld) → a dense [rows, cols] host copy:
// Float32Array for f32 and f16 (converted), Uint8Array, Int32Array or Int8Array. Waits for
// the stream (the end of a forward).
Napi::Value CudaDownload(const Napi::CallbackInfo& info) {
  const char* fn = "cudaDownload";
  Call c(info, fn, 6);
  const int64_t rows = c.r.integer(info[3], "rows"), cols = c.r.integer(info[4], "cols");
  const int64_t ld = c.r.integer(info[5], "ld");
  Elem e;
  const void* src = c.ops.matrix(info[1], info[2], "buffer", rows, cols, ld,
                                 {Elem::F32, Elem::F16, Elem::U8, Elem::I32, Elem::I8}, false, false, &e);
  const size_t n = static_cast<size_t>(rows) * static_cast<size_t>(cols);
  const size_t es = elem_size(e);
  std::vector<uint8_t> host(n * es);
  run_cuda(c.env, fn, [&] {
    if (ld == cols) c.context().download(host.data(), src, n * es);
    else c.context().download_2d(host.data(), cols * es, src, ld * es, cols * es, rows);
  });
  switch (e) {
    case Elem::F32:
    case Elem::F16: {
      auto out = Napi::Float32Array::New(c.env, n);
      if (e == Elem::F32) {
        if (n) std::memcpy(out.Data(), host.data(), n * 4);
      } else {
        const __half* h = reinterpret_cast<const __half*>(host.data());
        for (size_t i = 0; i < n; ++i) out[i] = __half2float(h[i]);
      }
      return out;
    }
    case Elem::U8: {
      auto out = Napi::Uint8Array::New(c.env, n);
      if (n) std::memcpy(out.Data(), host.data(), n);
      return out;
    }
    case Elem::I32: {
      auto out = Napi::Int32Array::New(c.env, n);
      if (n) std::memcpy(out.Data(), host.data(), n * 4);
      return out;
    }
    case Elem::I8: {
      auto out = Napi::Int8Array::New(c.env, n);
      if (n) std::memcpy(out.Data(), host.data(), n);
      return out;
    }
  }
  return c.env.Undefined();
}

// cudaUploadInt8Weights(ctx, N, K, qweight Int8Array [N, K]) → INT8 weights (padded, with Σ_k).
Napi::Value CudaUploadInt8Weights(const Napi::CallbackInfo& info) {
  const char* fn = "cudaUploadInt8Weights";
  Call c(info, fn, 4);
  Args a(info, fn, 4);
  const int64_t N = c.r.integer(info[1], "N", 1, int64_t(1) << 30), K = c.r.integer(info[2], "K", 1, 32768);
  auto qw = a.i8(3, "qweight", checked_mul(a, N, K));
  auto h = std::make_unique<WeightsHandle>();
  h->ctx = c.ctx->ctx;
  h->int8 = true;
  h->N = N;
  h->K = K;
  run_cuda(c.env, fn, [&] { h->i8 = cu::upload_int8_weights(c.context(), N, K, qw.data); });
  return make_handle(c.env, std::move(h));
}

// cudaUploadF16Weights(ctx, N, K, weight Float32Array [N, K]) → FP16 weights (rounded, padded).
Napi::Value CudaUploadF16Weights(const Napi::CallbackInfo& info) {
  const char* fn = "cudaUploadF16Weights";
  Call c(info, fn, 4);
  Args a(info, fn, 4);
  const int64_t N = c.r.integer(info[1], "N", 1, int64_t(1) << 30), K = c.r.integer(info[2], "K", 1, int64_t(1) << 30);
  auto w = a.f32(3, "weight", checked_mul(a, N, K));
  auto h = std::make_unique<WeightsHandle>();
  h->ctx = c.ctx->ctx;
  h->int8 = false;
  h->N = N;
  h->K = K;
  run_cuda(c.env, fn, [&] { h->f16 = cu::upload_f16_weights(c.context(), N, K, w.data); });
  return make_handle(c.env, std::move(h));
}

// cudaQuantParams(ctx, period, qmax, scale Float32Array [period], zero Int32Array [period],
// smooth Float32Array [cols] | null) → quantization parameters (reciprocals computed here, in
// double then rounded, as the CPU executor does).
Napi::Value CudaQuantParams(const Napi::CallbackInfo& info) {
  const char* fn = "cudaQuantParams";
  Call c(info, fn, 6);
  Args a(info, fn, 6);
  const int64_t period = c.r.integer(info[1], "period", 1, kMaxDim);
  const int qmax = static_cast<int>(c.r.integer(info[2], "qmax", 1, 255));
  auto scale = a.f32(3, "scale", period);
  auto zero = a.i32(4, "zero", period);
  auto smooth = a.f32_or_null(5, "smooth", 0);
  std::vector<float> inv_scale(period), inv_smooth(smooth.length);
  for (int64_t p = 0; p < period; ++p) {
    if (!(scale.data[p] > 0) || !std::isfinite(scale.data[p])) a.fail("scale[" + std::to_string(p) + "] must be positive and finite");
    if (zero.data[p] < 0 || zero.data[p] > qmax) a.fail("zero[" + std::to_string(p) + "] is outside [0, qmax]");
    inv_scale[p] = static_cast<float>(1.0 / static_cast<double>(scale.data[p]));
  }
  for (int64_t j = 0; j < smooth.length; ++j) {
    if (!(smooth.data[j] > 0) || !std::isfinite(smooth.data[j])) a.fail("smooth[" + std::to_string(j) + "] must be positive and finite");
    inv_smooth[j] = static_cast<float>(1.0 / static_cast<double>(smooth.data[j]));
  }
  auto h = std::make_unique<QuantHandle>();
  h->ctx = c.ctx->ctx;
  h->period = period;
  h->qmax = qmax;
  h->cols = smooth.length;
  run_cuda(c.env, fn, [&] {
    cu::Context& ctx = c.context();
    auto put = [&](cu::DeviceBuffer& dst, const void* src, size_t bytes) {
      dst = cu::DeviceBuffer::persistent(bytes);
      ctx.upload(dst.get(), src, bytes);
    };
    put(h->scale, scale.data, period * 4);
    put(h->inv_scale, inv_scale.data(), period * 4);
    put(h->zero, zero.data, period * 4);
    if (smooth.length) {
      put(h->smooth, smooth.data, smooth.length * 4);
      put(h->inv_smooth, inv_smooth.data(), smooth.length * 4);
    }
    ctx.synchronize();  // the host vectors above die with this call
  });
  return make_handle(c.env, std::move(h));
}

// cudaBeginCapture(ctx) / cudaEndCapture(ctx) → graph / cudaAbortCapture(ctx) /
// cudaLaunchGraph(ctx, graph): record the kernels queued on the stream once, replay them.
Napi::Value CudaBeginCapture(const Napi::CallbackInfo& info) {
  Call c(info, "cudaBeginCapture", 1);
  run_cuda(c.env, "cudaBeginCapture", [&] { c.context().begin_capture(); });
  return c.env.Undefined();
}
Napi::Value CudaEndCapture(const Napi::CallbackInfo& info) {
  Call c(info, "cudaEndCapture", 1);
  auto h = std::make_unique<GraphHandle>();
  h->ctx = c.ctx->ctx;
  run_cuda(c.env, "cudaEndCapture", [&] { h->graph = c.context().end_capture(); });
  return make_handle(c.env, std::move(h));
}
Napi::Value CudaAbortCapture(const Napi::CallbackInfo& info) {
  Call c(info, "cudaAbortCapture", 1);
  c.context().abort_capture();
  return c.env.Undefined();
}
Napi::Value CudaLaunchGraph(const Napi::CallbackInfo& info) {
  Call c(info, "cudaLaunchGraph", 2);
  GraphHandle* g = c.r.handle<GraphHandle>(info[1], "graph");
  if (!g->graph) c.r.fail("'graph' was disposed");
  if (g->ctx != c.ctx->ctx) c.r.fail("'graph' belongs to another CUDA context");
  run_cuda(c.env, "cudaLaunchGraph", [&] { g->graph->launch(); });
  return c.env.Undefined();
}

// ---- kernels

// Output extent of a patch embedding: grid cells per image.
int64_t patch_grid(const Reader& r, int64_t H, int64_t W, int64_t P, int64_t S) {
  if (P > H || P > W) r.fail("patch size " + std::to_string(P) + " exceeds the image");
  return ((H - P) / S + 1) * ((W - P) / S + 1);
}

// cudaPatchEmbedF32(ctx, B, C, H, W, P, S, img f32 [B,C,H,W], weight f32 [D,C,P,P], bias f32 [D] | null,
//                   D, out f32, outOffset): out [B·G, D].
Napi::Value CudaPatchEmbedF32(const Napi::CallbackInfo& info) {
  const char* fn = "cudaPatchEmbedF32";
  Call c(info, fn, 13);
  auto& r = c.r;
  const int64_t B = r.integer(info[1], "B"), C = r.integer(info[2], "C", 1), H = r.integer(info[3], "H", 1);
  const int64_t W = r.integer(info[4], "W", 1), P = r.integer(info[5], "P", 1), S = r.integer(info[6], "S", 1);
  const int64_t D = r.integer(info[10], "D", 1);
  const int64_t G = patch_grid(r, H, W, P, S);
  const float* img = static_cast<const float*>(c.ops.vector(info[7], "img", B * C * H * W, {Elem::F32}));
  const float* w = static_cast<const float*>(c.ops.vector(info[8], "weight", D * C * P * P, {Elem::F32}));
  const float* bias = static_cast<const float*>(c.ops.vector(info[9], "bias", D, {Elem::F32}, true));
  float* out = static_cast<float*>(c.ops.matrix(info[11], info[12], "out", B * G, D, D, {Elem::F32}, true));
  c.ops.check_overlaps();
  run_cuda(c.env, fn, [&] { cu::patch_embed_f32(B, C, H, W, P, S, img, w, bias, D, out, c.stream()); });
  return c.env.Undefined();
}

// cudaPatchEmbedF16(ctx, B, C, H, W, P, S, img f32, weights FP16 [D, C·P·P], bias f32 | null,
//                   out f16|f32, outOffset): im2col + tensor-core GEMM, out [B·G, D].
Napi::Value CudaPatchEmbedF16(const Napi::CallbackInfo& info) {
  const char* fn = "cudaPatchEmbedF16";
  Call c(info, fn, 12);
  auto& r = c.r;
  const int64_t B = r.integer(info[1], "B"), C = r.integer(info[2], "C", 1), H = r.integer(info[3], "H", 1);
  const int64_t W = r.integer(info[4], "W", 1), P = r.integer(info[5], "P", 1), S = r.integer(info[6], "S", 1);
  const int64_t G = patch_grid(r, H, W, P, S);
  const WeightsHandle* wt = c.ops.weights(info[8], "weights", false);
  if (wt->K != C * P * P) r.fail("'weights' has K = " + std::to_string(wt->K) + ", the patches have C·P·P = " + std::to_string(C * P * P));
  const int64_t D = wt->N;
  const float* img = static_cast<const float*>(c.ops.vector(info[7], "img", B * C * H * W, {Elem::F32}));
  const float* bias = static_cast<const float*>(c.ops.vector(info[9], "bias", D, {Elem::F32}, true));
  Elem oe;
  void* out = c.ops.matrix(info[10], info[11], "out", B * G, D, D, {Elem::F32, Elem::F16}, true, false, &oe);
  c.ops.check_overlaps();
  run_cuda(c.env, fn, [&] {
    cu::DeviceBuffer ws = c.context().alloc(cu::patch_embed_f16_workspace_bytes(B, C, H, W, P, S));
    cu::F16GemmOut o;
    if (oe == Elem::F16) {
      o.f16 = static_cast<__half*>(out);
      o.ld_f16 = D;
    } else {
      o.f32 = static_cast<float*>(out);
      o.ld_f32 = D;
    }
    cu::patch_embed_f16(B, C, H, W, P, S, img, wt->f16, bias, ws.get(), o, c.stream());
    // ws returns to the cache here; stream order keeps it from being reused too early.
  });
  return c.env.Undefined();
}

// cudaAssembleTokens(ctx, B, G, D, patches f32|f16, patchesOffset, cls f32 [D] | null, clsPos,
//                    pos f32 [L, D], out f32|f16, outOffset): out [B·L, D], L = G + (cls ? 1 : 0).
Napi::Value CudaAssembleTokens(const Napi::CallbackInfo& info) {
  const char* fn = "cudaAssembleTokens";
  Call c(info, fn, 11);
  auto& r = c.r;
  const int64_t B = r.integer(info[1], "B"), G = r.integer(info[2], "G", 1), D = r.integer(info[3], "D", 1);
  Elem pe, oe;
  const void* patches = c.ops.matrix(info[4], info[5], "patches", B * G, D, D, {Elem::F32, Elem::F16}, false, false, &pe);
  const float* cls = static_cast<const float*>(c.ops.vector(info[6], "cls", D, {Elem::F32}, true));
  const int64_t L = G + (cls ? 1 : 0);
  const int64_t cls_pos = r.integer(info[7], "clsPos", 0, G);
  const float* pos = static_cast<const float*>(c.ops.vector(info[8], "pos", L * D, {Elem::F32}));
  void* out = c.ops.matrix(info[9], info[10], "out", B * L, D, D, {Elem::F32, Elem::F16}, true, false, &oe);
  c.ops.check_overlaps();
  run_cuda(c.env, fn, [&] {
    cu::assemble_tokens(B, G, D, kernel_type(pe), patches, cls, cls_pos, pos, kernel_type(oe), out, c.stream());
  });
  return c.env.Undefined();
}

// cudaGatherToken(ctx, B, L, D, t, src, srcOffset, dst, dstOffset): dst[b] = src[b·L + t]
// (both contiguous, same type f32|f16).
Napi::Value CudaGatherToken(const Napi::CallbackInfo& info) {
  const char* fn = "cudaGatherToken";
  Call c(info, fn, 9);
  auto& r = c.r;
  const int64_t B = r.integer(info[1], "B"), L = r.integer(info[2], "L", 1), D = r.integer(info[3], "D", 1);
  const int64_t t = r.integer(info[4], "t", 0, L - 1);
  Elem se, de;
  const void* src = c.ops.matrix(info[5], info[6], "src", B * L, D, D, {Elem::F32, Elem::F16}, false, false, &se);
  void* dst = c.ops.matrix(info[7], info[8], "dst", B, D, D, {Elem::F32, Elem::F16}, true, false, &de);
  if (se != de) r.fail("'src' and 'dst' must have the same type");
  c.ops.check_overlaps();
  run_cuda(c.env, fn, [&] { cu::gather_token(B, L, D, t, kernel_type(se), src, dst, c.stream()); });
  return c.env.Undefined();
}

// cudaConvert(ctx, rows, cols, x f32|f16, xOffset, ldx, y f32|f16, yOffset, ldy)
Napi::Value CudaConvert(const Napi::CallbackInfo& info) {
  const char* fn = "cudaConvert";
  Call c(info, fn, 9);
  auto& r = c.r;
  const int64_t rows = r.integer(info[1], "rows"), cols = r.integer(info[2], "cols");
  const int64_t ldx = r.integer(info[5], "ldx"), ldy = r.integer(info[8], "ldy");
  Elem xe, ye;
  const void* x = c.ops.matrix(info[3], info[4], "x", rows, cols, ldx, {Elem::F32, Elem::F16}, false, false, &xe);
  void* y = c.ops.matrix(info[6], info[7], "y", rows, cols, ldy, {Elem::F32, Elem::F16}, true, false, &ye);
  c.ops.check_overlaps();
  run_cuda(c.env, fn, [&] { cu::convert(rows, cols, kernel_type(xe), x, ldx, kernel_type(ye), y, ldy, c.stream()); });
  return c.env.Undefined();
}

// cudaAddRmsNorm(ctx, rows, D, x f32|f16, xOffset, residualIn f32 | null, residualOut f32 | null,
//                weight f32 [D], eps, out f32|f16|u8, outOffset, quant | null)
// residualOut may be residualIn (in place); u8 out needs quant (of the consuming linear).
Napi::Value CudaAddRmsNorm(const Napi::CallbackInfo& info) {
  const char* fn = "cudaAddRmsNorm";
  Call c(info, fn, 12);
  auto& r = c.r;
  cu::AddRmsNormArgs a;
  a.rows = r.integer(info[1], "rows");
  a.D = r.integer(info[2], "D", 1, 1 << 20);
  Elem xe, oe;
  a.x = c.ops.matrix(info[3], info[4], "x", a.rows, a.D, a.D, {Elem::F32, Elem::F16}, false, false, &xe);
  a.x_type = kernel_type(xe);
  a.residual_in = static_cast<const float*>(c.ops.matrix(info[5], Napi::Value(), "residualIn", a.rows, a.D, a.D, {Elem::F32}, false, true));
  a.residual_out = static_cast<float*>(c.ops.matrix(info[6], Napi::Value(), "residualOut", a.rows, a.D, a.D, {Elem::F32}, true, true));
  a.weight = static_cast<const float*>(c.ops.vector(info[7], "weight", a.D, {Elem::F32}));
  a.eps = static_cast<float>(r.number(info[8], "eps"));
  if (!(a.eps > 0)) r.fail("'eps' must be positive");
  a.out = c.ops.matrix(info[9], info[10], "out", a.rows, a.D, a.D, {Elem::F32, Elem::F16, Elem::U8}, true, false, &oe);
  a.out_type = kernel_type(oe);
  const QuantHandle* q = c.ops.quant(info[11], "quant", true);
  if (oe == Elem::U8) {
    if (!q) r.fail("a u8 output needs 'quant'");
    if (q->cols && q->cols != a.D) r.fail("'quant' has " + std::to_string(q->cols) + " smoothing factors, the rows have " + std::to_string(a.D));
    a.quant = q->quant();
  }
  c.ops.check_overlaps({{"residualOut", "residualIn"}});
  run_cuda(c.env, fn, [&] { cu::add_rmsnorm(a, c.stream()); });
  return c.env.Undefined();
}

// cudaQuantize(ctx, rows, cols, x f32|f16, xOffset, ldx, quant, q u8, qOffset, ldq)
Napi::Value CudaQuantize(const Napi::CallbackInfo& info) {
  const char* fn = "cudaQuantize";
  Call c(info, fn, 10);
  auto& r = c.r;
  const int64_t rows = r.integer(info[1], "rows"), cols = r.integer(info[2], "cols");
  const int64_t ldx = r.integer(info[5], "ldx"), ldq = r.integer(info[9], "ldq");
  Elem xe;
  const void* x = c.ops.matrix(info[3], info[4], "x", rows, cols, ldx, {Elem::F32, Elem::F16}, false, false, &xe);
  const QuantHandle* q = c.ops.quant(info[6], "quant", false);
  if (q->cols && q->cols != cols) r.fail("'quant' has " + std::to_string(q->cols) + " smoothing factors, x has " + std::to_string(cols) + " columns");
  auto* out = static_cast<uint8_t*>(c.ops.matrix(info[7], info[8], "q", rows, cols, ldq, {Elem::U8}, true));
  c.ops.check_overlaps();
  run_cuda(c.env, fn, [&] { cu::quantize_u8(rows, cols, kernel_type(xe), x, ldx, q->quant(), out, ldq, c.stream()); });
  return c.env.Undefined();
}

// cudaDequantize(ctx, rows, cols, q u8, qOffset, ldq, quant, y f32|f16, yOffset, ldy)
Napi::Value CudaDequantize(const Napi::CallbackInfo& info) {
  const char* fn = "cudaDequantize";
  Call c(info, fn, 10);
  auto& r = c.r;
  const int64_t rows = r.integer(info[1], "rows"), cols = r.integer(info[2], "cols");
  const int64_t ldq = r.integer(info[5], "ldq"), ldy = r.integer(info[9], "ldy");
  const auto* q = static_cast<const uint8_t*>(c.ops.matrix(info[3], info[4], "q", rows, cols, ldq, {Elem::U8}, false));
  const QuantHandle* qp = c.ops.quant(info[6], "quant", false);
  if (qp->cols && qp->cols != cols) r.fail("'quant' has " + std::to_string(qp->cols) + " smoothing factors, q has " + std::to_string(cols) + " columns");
  Elem ye;
  void* y = c.ops.matrix(info[7], info[8], "y", rows, cols, ldy, {Elem::F32, Elem::F16}, true, false, &ye);
  c.ops.check_overlaps();
  run_cuda(c.env, fn, [&] { cu::dequantize_u8(rows, cols, q, ldq, qp->dequant(), kernel_type(ye), y, ldy, c.stream()); });
  return c.env.Undefined();
}

// cudaGemmF32(ctx, M, N, K, A f32, aOffset, lda, W f32 [N, K], wOffset, ldw, bias f32 [N] | null,
//             accumulate, C f32, cOffset, ldc): C = A·Wᵀ + bias (+ C).
Napi::Value CudaGemmF32(const Napi::CallbackInfo& info) {
  const char* fn = "cudaGemmF32";
  Call c(info, fn, 15);
  auto& r = c.r;
  const int64_t M = r.integer(info[1], "M"), N = r.integer(info[2], "N"), K = r.integer(info[3], "K");
  const int64_t lda = r.integer(info[6], "lda"), ldw = r.integer(info[9], "ldw"), ldc = r.integer(info[14], "ldc");
  const auto* A = static_cast<const float*>(c.ops.matrix(info[4], info[5], "A", M, K, lda, {Elem::F32}, false));
  const auto* W = static_cast<const float*>(c.ops.matrix(info[7], info[8], "W", N, K, ldw, {Elem::F32}, false));
  const auto* bias = static_cast<const float*>(c.ops.vector(info[10], "bias", N, {Elem::F32}, true));
  const bool acc = r.boolean(info[11], "accumulate");
  auto* C = static_cast<float*>(c.ops.matrix(info[12], info[13], "C", M, N, ldc, {Elem::F32}, true));
  c.ops.check_overlaps();
  run_cuda(c.env, fn, [&] { cu::gemm_f32_nt(M, N, K, A, lda, W, ldw, bias, acc, C, ldc, c.stream()); });
  return c.env.Undefined();
}

// cudaGemmF16(ctx, M, A f16, aOffset, lda, weights FP16 [N, K], bias f32 [N] | null,
//             out f16|f32, outOffset, ldo, accumulate (f32 only), tile)
Napi::Value CudaGemmF16(const Napi::CallbackInfo& info) {
  const char* fn = "cudaGemmF16";
  Call c(info, fn, 12);
  auto& r = c.r;
  const int64_t M = r.integer(info[1], "M");
  const WeightsHandle* w = c.ops.weights(info[5], "weights", false);
  const int64_t lda = r.integer(info[4], "lda"), ldo = r.integer(info[9], "ldo");
  const auto* A = static_cast<const __half*>(c.ops.matrix(info[2], info[3], "A", M, w->K, lda, {Elem::F16}, false));
  const auto* bias = static_cast<const float*>(c.ops.vector(info[6], "bias", w->N, {Elem::F32}, true));
  Elem oe;
  void* out = c.ops.matrix(info[7], info[8], "out", M, w->N, ldo, {Elem::F16, Elem::F32}, true, false, &oe);
  const bool acc = r.boolean(info[10], "accumulate");
  if (acc && oe != Elem::F32) r.fail("'accumulate' needs an f32 output");
  const cu::GemmTile tile = parse_tile(r, info[11]);
  c.ops.check_overlaps();
  cu::F16GemmOut o;
  if (oe == Elem::F16) {
    o.f16 = static_cast<__half*>(out);
    o.ld_f16 = ldo;
  } else {
    o.f32 = static_cast<float*>(out);
    o.ld_f32 = ldo;
    o.accumulate = acc;
  }
  run_cuda(c.env, fn, [&] { cu::gemm_f16(M, A, lda, w->f16, bias, o, c.stream(), tile); });
  return c.env.Undefined();
}

// cudaGemmU8S8(ctx, M, A u8, aOffset, lda, weights INT8 [N, K], aQuant, wScale f32 [N],
//              bias f32 [N] | null, out f32|f16 | null, outOffset, ldo, accumulate (f32 only),
//              q u8 | null, qOffset, ldq, qCols, qQuant | null, tile)
// y = (acc − zero[p]·Σw)·scale[p] fused with w_scale and bias (aQuant: A's parameters, p = m %
// period); out gets y, q gets columns [0, qCols) of y quantized with qQuant (the next linear's).
Napi::Value CudaGemmU8S8(const Napi::CallbackInfo& info) {
  const char* fn = "cudaGemmU8S8";
  Call c(info, fn, 19);
  auto& r = c.r;
  const int64_t M = r.integer(info[1], "M");
  const WeightsHandle* w = c.ops.weights(info[5], "weights", true);
  const int64_t lda = r.integer(info[4], "lda");
  const auto* A = static_cast<const uint8_t*>(c.ops.matrix(info[2], info[3], "A", M, w->K, lda, {Elem::U8}, false));
  const QuantHandle* aq = c.ops.quant(info[6], "aQuant", false);
  const auto* wscale = static_cast<const float*>(c.ops.vector(info[7], "wScale", w->N, {Elem::F32}));
  const auto* bias = static_cast<const float*>(c.ops.vector(info[8], "bias", w->N, {Elem::F32}, true));
  Elem oe = Elem::F32;
  void* out = Reader::is_null(info[9]) ? nullptr
      : c.ops.matrix(info[9], info[10], "out", M, w->N, r.integer(info[11], "ldo"), {Elem::F32, Elem::F16}, true, false, &oe);
  const bool acc = r.boolean(info[12], "accumulate");
  if (acc && (!out || oe != Elem::F32)) r.fail("'accumulate' needs an f32 output");
  cu::Int8GemmOut o;
  if (out) {
    if (oe == Elem::F32) {
      o.f32 = static_cast<float*>(out);
      o.ld_f32 = r.integer(info[11], "ldo");
    } else {
      o.f16 = static_cast<__half*>(out);
      o.ld_f16 = r.integer(info[11], "ldo");
    }
  }
  if (!Reader::is_null(info[13])) {
    o.u8_cols = r.integer(info[16], "qCols", 1, w->N);
    o.ld_u8 = r.integer(info[15], "ldq");
    o.u8 = static_cast<uint8_t*>(c.ops.matrix(info[13], info[14], "q", M, o.u8_cols, o.ld_u8, {Elem::U8}, true));
    const QuantHandle* qq = c.ops.quant(info[17], "qQuant", false);
    if (qq->cols && qq->cols != o.u8_cols) r.fail("'qQuant' has " + std::to_string(qq->cols) + " smoothing factors, qCols is " + std::to_string(o.u8_cols));
    o.quant = qq->quant();
  }
  if (!o.f32 && !o.f16 && !o.u8) r.fail("no output given (out and q are null)");
  const cu::GemmTile tile = parse_tile(r, info[18]);
  c.ops.check_overlaps();
  Int8Epilogue ep;
  ep.period = aq->period;
  ep.a_scale = aq->scale.as<const float>();
  ep.a_zero = aq->zero.as<const int32_t>();
  ep.w_scale = wscale;
  ep.bias = bias;
  ep.accumulate = acc;
  run_cuda(c.env, fn, [&] { cu::gemm_u8s8(M, A, lda, w->i8, ep, o, c.stream(), tile); });
  return c.env.Undefined();
}

// One direction of cudaBiConv: {weight f32 [E, K], bias f32 [E] | null, u8 | null, u8Offset, ldU8,
// quant | null (for u8), out f32|f16 | null, outOffset, ldOut}.
cu::BiConvDirection conv_direction(Call& c, const Napi::Value& v, const std::string& name, int64_t rows, int64_t E,
                                   int64_t K) {
  cu::BiConvDirection d;
  if (Reader::is_null(v)) return d;  // skipped
  Napi::Object o = c.r.object(v, name);
  d.weight = static_cast<const float*>(c.ops.vector(o.Get("weight"), name + ".weight", E * K, {Elem::F32}));
  d.bias = static_cast<const float*>(c.ops.vector(o.Get("bias"), name + ".bias", E, {Elem::F32}, true));
  if (!Reader::is_null(o.Get("u8"))) {
    d.ld_u8 = c.r.integer(o.Get("ldU8"), name + ".ldU8");
    d.u8 = static_cast<uint8_t*>(c.ops.matrix(o.Get("u8"), o.Get("u8Offset"), name + ".u8", rows, E, d.ld_u8, {Elem::U8}, true));
    const QuantHandle* q = c.ops.quant(o.Get("quant"), name + ".quant", false);
    if (q->cols && q->cols != E) c.r.fail("'" + name + ".quant' has " + std::to_string(q->cols) + " smoothing factors, E is " + std::to_string(E));
    d.quant = q->quant();
  }
  if (!Reader::is_null(o.Get("out"))) {
    d.ld_out = c.r.integer(o.Get("ldOut"), name + ".ldOut");
    Elem oe;
    d.out = c.ops.matrix(o.Get("out"), o.Get("outOffset"), name + ".out", rows, E, d.ld_out, {Elem::F32, Elem::F16}, true, false, &oe);
    d.out_type = kernel_type(oe);
  }
  if (!d.u8 && !d.out) c.r.fail("'" + name + "' writes nothing (u8 and out are null)");
  return d;
}

// cudaBiConv(ctx, B, L, E, K, x f32|f16, xOffset, ldx, fwd | null, bwd | null): causal depthwise
// conv + SiLU of both directions of a Vim block in one launch; the backward direction's rows are
// written in its own (reversed) token order. See native/include/ptq4vm/cuda/conv1d.h.
Napi::Value CudaBiConv(const Napi::CallbackInfo& info) {
  const char* fn = "cudaBiConv";
  Call c(info, fn, 10);
  auto& r = c.r;
  cu::BiConvArgs a;
  a.B = r.integer(info[1], "B", 0, 65535);
  a.L = r.integer(info[2], "L", 1);
  a.E = r.integer(info[3], "E", 1, 1 << 24);
  a.K = r.integer(info[4], "K", 1, 8);
  a.ldx = r.integer(info[7], "ldx");
  const int64_t rows = a.B * a.L;
  Elem xe;
  a.x = c.ops.matrix(info[5], info[6], "x", rows, a.E, a.ldx, {Elem::F32, Elem::F16}, false, false, &xe);
  a.x_type = kernel_type(xe);
  a.fwd = conv_direction(c, info[8], "fwd", rows, a.E, a.K);
  a.bwd = conv_direction(c, info[9], "bwd", rows, a.E, a.K);
  if (!a.fwd.weight && !a.bwd.weight) r.fail("both directions are null");
  c.ops.check_overlaps();
  run_cuda(c.env, fn, [&] { cu::bidirectional_conv1d_silu(a, c.stream()); });
  return c.env.Undefined();
}

// One direction of cudaBiScan (its operands in its own token order): {u, uOffset, ldu,
// uQuant (u8 u: dequantization parameters), delta, deltaOffset, ldDelta, deltaBias f32 [E] | null,
// A f32 [E, N], Bm, bOffset, ldB, Cm, cOffset, ldC, D f32 [E] | null}.
cu::BiScanDirection scan_direction(Call& c, const Napi::Value& v, const std::string& name, int64_t rows, int64_t E,
                                   int64_t N, Elem* u_elem, Elem* p_elem) {
  Napi::Object o = c.r.object(v, name);
  cu::BiScanDirection d;
  d.ldu = c.r.integer(o.Get("ldu"), name + ".ldu");
  d.u = c.ops.matrix(o.Get("u"), o.Get("uOffset"), name + ".u", rows, E, d.ldu, {Elem::F32, Elem::F16, Elem::U8}, false, false, u_elem);
  if (*u_elem == Elem::U8) {
    const QuantHandle* q = c.ops.quant(o.Get("uQuant"), name + ".uQuant", false);
    if (q->cols && q->cols != E) c.r.fail("'" + name + ".uQuant' has " + std::to_string(q->cols) + " smoothing factors, E is " + std::to_string(E));
    d.u_dequant = q->dequant();
  }
  Elem de, be, ce;
  d.lddelta = c.r.integer(o.Get("ldDelta"), name + ".ldDelta");
  d.delta = c.ops.matrix(o.Get("delta"), o.Get("deltaOffset"), name + ".delta", rows, E, d.lddelta, {Elem::F32, Elem::F16}, false, false, &de);
  d.delta_bias = static_cast<const float*>(c.ops.vector(o.Get("deltaBias"), name + ".deltaBias", E, {Elem::F32}, true));
  d.A = static_cast<const float*>(c.ops.vector(o.Get("A"), name + ".A", E * N, {Elem::F32}));
  d.ldB = c.r.integer(o.Get("ldB"), name + ".ldB");
  d.Bm = c.ops.matrix(o.Get("Bm"), o.Get("bOffset"), name + ".Bm", rows, N, d.ldB, {Elem::F32, Elem::F16}, false, false, &be);
  d.ldC = c.r.integer(o.Get("ldC"), name + ".ldC");
  d.Cm = c.ops.matrix(o.Get("Cm"), o.Get("cOffset"), name + ".Cm", rows, N, d.ldC, {Elem::F32, Elem::F16}, false, false, &ce);
  d.D = static_cast<const float*>(c.ops.vector(o.Get("D"), name + ".D", E, {Elem::F32}, true));
  if (be != de || ce != de) c.r.fail("'" + name + "': delta, Bm and Cm must have the same type");
  *p_elem = de;
  return d;
}

// cudaBiScan(ctx, {B, L, E, N, fwd, bwd, z | null, zOffset, ldz, deltaSoftplus, y, yOffset, ldy,
// yQuant | null}): the fused two-direction selective scan of native/include/ptq4vm/cuda/scan.h;
// y = (o_fwd + o_bwd)/2 in token order, f32 / f16, or u8 quantized with yQuant.
Napi::Value CudaBiScan(const Napi::CallbackInfo& info) {
  const char* fn = "cudaBiScan";
  Call c(info, fn, 2);
  auto& r = c.r;
  Napi::Object o = r.object(info[1], "args");
  cu::BiScanArgs a;
  a.B = r.integer(o.Get("B"), "B", 0, 65535);
  a.L = r.integer(o.Get("L"), "L", 1, 1 << 24);
  a.E = r.integer(o.Get("E"), "E", 1, 1 << 24);
  a.N = r.integer(o.Get("N"), "N", 1, 64);
  const int64_t rows = a.B * a.L;
  Elem u0, u1, p0, p1;
  a.fwd = scan_direction(c, o.Get("fwd"), "fwd", rows, a.E, a.N, &u0, &p0);
  a.bwd = scan_direction(c, o.Get("bwd"), "bwd", rows, a.E, a.N, &u1, &p1);
  if (u0 != u1 || p0 != p1) r.fail("both directions must have the same operand types");
  a.u_type = kernel_type(u0);
  a.p_type = kernel_type(p0);
  if (!Reader::is_null(o.Get("z"))) {
    a.ldz = r.integer(o.Get("ldz"), "ldz");
    Elem ze;
    a.z = c.ops.matrix(o.Get("z"), o.Get("zOffset"), "z", rows, a.E, a.ldz, {Elem::F32, Elem::F16}, false, false, &ze);
    if (ze != p0) r.fail("'z' must have the type of delta");
  }
  a.delta_softplus = r.boolean(o.Get("deltaSoftplus"), "deltaSoftplus");
  a.ldy = r.integer(o.Get("ldy"), "ldy");
  Elem ye;
  a.y = c.ops.matrix(o.Get("y"), o.Get("yOffset"), "y", rows, a.E, a.ldy, {Elem::F32, Elem::F16, Elem::U8}, true, false, &ye);
  a.y_type = kernel_type(ye);
  if (ye == Elem::U8) {
    const QuantHandle* q = c.ops.quant(o.Get("yQuant"), "yQuant", false);
    if (q->cols && q->cols != a.E) r.fail("'yQuant' has " + std::to_string(q->cols) + " smoothing factors, E is " + std::to_string(a.E));
    a.y_quant = q->quant();
  }
  c.ops.check_overlaps();
  run_cuda(c.env, fn, [&] { cu::bidirectional_scan(a, c.stream()); });
  return c.env.Undefined();
}

void Register(Napi::Env env, Napi::Object exports) {
  const std::pair<const char*, Napi::Function::Callback> fns[] = {
      {"cudaInfo", CudaInfo},
      {"cudaSetKernelMode", CudaSetKernelMode},
      {"cudaCreateContext", CudaCreateContext},
      {"cudaDispose", CudaDispose},
      {"cudaSynchronize", CudaSynchronize},
      {"cudaStats", CudaStats},
      {"cudaAlloc", CudaAlloc},
      {"cudaUpload", CudaUpload},
      {"cudaDownload", CudaDownload},
      {"cudaUploadInt8Weights", CudaUploadInt8Weights},
      {"cudaUploadF16Weights", CudaUploadF16Weights},
      {"cudaQuantParams", CudaQuantParams},
      {"cudaBeginCapture", CudaBeginCapture},
      {"cudaEndCapture", CudaEndCapture},
      {"cudaAbortCapture", CudaAbortCapture},
      {"cudaLaunchGraph", CudaLaunchGraph},
      {"cudaPatchEmbedF32", CudaPatchEmbedF32},
      {"cudaPatchEmbedF16", CudaPatchEmbedF16},
      {"cudaAssembleTokens", CudaAssembleTokens},
      {"cudaGatherToken", CudaGatherToken},
      {"cudaConvert", CudaConvert},
      {"cudaAddRmsNorm", CudaAddRmsNorm},
      {"cudaQuantize", CudaQuantize},
      {"cudaDequantize", CudaDequantize},
      {"cudaGemmF32", CudaGemmF32},
      {"cudaGemmF16", CudaGemmF16},
      {"cudaGemmU8S8", CudaGemmU8S8},
      {"cudaBiConv", CudaBiConv},
      {"cudaBiScan", CudaBiScan},
  };
  for (const auto& [name, cb] : fns) exports.Set(name, Napi::Function::New(env, cb, name));
}

BindingRegistrar registrar("cuda", &Register);

}  // namespace
}  // namespace ptq4vm::binding

#endif  // PTQ4VM_WITH_CUDA
