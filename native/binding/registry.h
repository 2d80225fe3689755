// Each kernel family's binding file registers its exports with a static BindingRegistrar,
// so adding a family never edits a shared list.
#pragma once
#include <napi.h>

namespace ptq4vm::binding {

using RegisterFn = void (*)(Napi::Env env, Napi::Object exports);

struct BindingRegistrar {
  BindingRegistrar(const char* family, RegisterFn fn);
};

void register_all(Napi::Env env, Napi::Object exports);

}  // namespace ptq4vm::binding
