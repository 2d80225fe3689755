// Bindings of the CPU runtime (runtime.h): what the kernels run on, and its two settings.
//   runtimeInfo() → {isa, detectedIsa, features: {avx2, fma, ...}, threads}
//   setThreads(n)  → the thread count now in effect (n in [1, 1024])
//   setIsa(name)   → the active ISA name; refuses names the CPU does not support
//   addressMod64(view) → the address of a typed array's first byte modulo 64, so JS can place
//                    its buffers on cache-line boundaries (see CpuExecutor.alloc)
#include <cstdint>
#include <string>

#include "args.h"
#include "ptq4vm/runtime.h"
#include "registry.h"

namespace ptq4vm::binding {
namespace {

Napi::Value RuntimeInfo(const Napi::CallbackInfo& info) {
  Args a(info, "runtimeInfo", 0);
  Napi::Env env = info.Env();
  const CpuFeatures& f = cpu_features();
  auto features = Napi::Object::New(env);
  features.Set("avx2", f.avx2);
  features.Set("fma", f.fma);
  features.Set("f16c", f.f16c);
  features.Set("avx512f", f.avx512f);
  features.Set("avx512bw", f.avx512bw);
  features.Set("avx512dq", f.avx512dq);
  features.Set("avx512vl", f.avx512vl);
  features.Set("avx512vnni", f.avx512vnni);
  features.Set("avxvnni", f.avxvnni);
  auto out = Napi::Object::New(env);
  out.Set("isa", isa_name(active_isa()));
  out.Set("detectedIsa", isa_name(detected_isa()));
  out.Set("features", features);
  out.Set("threads", num_threads());
  return out;
}

Napi::Value SetThreads(const Napi::CallbackInfo& info) {
  Args a(info, "setThreads", 1);
  const int n = static_cast<int>(a.integer(0, "n", 1, 1024));
  set_num_threads(n);
  return Napi::Number::New(info.Env(), num_threads());
}

Napi::Value SetIsa(const Napi::CallbackInfo& info) {
  Args a(info, "setIsa", 1);
  if (!info[0].IsString()) throw Napi::TypeError::New(info.Env(), "setIsa: 'name' must be a string");
  const std::string name = info[0].As<Napi::String>().Utf8Value();
  for (Isa isa : {Isa::Scalar, Isa::Avx2, Isa::Avx512, Isa::Avx512Vnni}) {
    if (name != isa_name(isa)) continue;
    if (!set_active_isa(isa)) {
      a.fail("'" + name + "' is not supported by this CPU (it has " + isa_name(detected_isa()) + ")");
    }
    return Napi::String::New(info.Env(), isa_name(active_isa()));
  }
  a.fail("unknown ISA '" + name + "' (expected scalar, avx2, avx512 or avx512vnni)");
}

Napi::Value AddressMod64(const Napi::CallbackInfo& info) {
  Args a(info, "addressMod64", 1);
  if (!info[0].IsTypedArray()) throw Napi::TypeError::New(info.Env(), "addressMod64: 'view' must be a typed array");
  const auto view = info[0].As<Napi::TypedArray>();
  const auto* base = static_cast<const uint8_t*>(view.ArrayBuffer().Data());
  const auto address = reinterpret_cast<uintptr_t>(base) + view.ByteOffset();
  return Napi::Number::New(info.Env(), double(address % 64));
}

void Register(Napi::Env env, Napi::Object exports) {
  exports.Set("runtimeInfo", Napi::Function::New(env, RuntimeInfo, "runtimeInfo"));
  exports.Set("setThreads", Napi::Function::New(env, SetThreads, "setThreads"));
  exports.Set("setIsa", Napi::Function::New(env, SetIsa, "setIsa"));
  exports.Set("addressMod64", Napi::Function::New(env, AddressMod64, "addressMod64"));
}

BindingRegistrar registrar("runtime", &Register);

}  // namespace
}  // namespace ptq4vm::binding
