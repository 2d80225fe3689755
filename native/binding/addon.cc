// Addon entry point: every family registered itself with a BindingRegistrar.
#include <string>
#include <utility>
#include <vector>

#include "registry.h"

namespace ptq4vm::binding {
namespace {
std::vector<std::pair<const char*, RegisterFn>>& registry() {
  static std::vector<std::pair<const char*, RegisterFn>> r;
  return r;
}
}  // namespace

BindingRegistrar::BindingRegistrar(const char* family, RegisterFn fn) {
  registry().emplace_back(family, fn);
}

void register_all(Napi::Env env, Napi::Object exports) {
  auto families = Napi::Array::New(env);
  uint32_t i = 0;
  for (auto& [name, fn] : registry()) {
    fn(env, exports);
    families.Set(i++, Napi::String::New(env, name));
  }
  exports.Set("families", families);
}

}  // namespace ptq4vm::binding

static Napi::Object Init(Napi::Env env, Napi::Object exports) {
  ptq4vm::binding::register_all(env, exports);
  return exports;
}

NODE_API_MODULE(ptq4vm, Init)
