// Helpers shared by the CPU kernel tests: run a body on every ISA path this machine has, and
// with several thread counts, restoring the runtime settings afterwards.
#pragma once
#include <string>
#include <vector>

#include "harness.h"
#include "ptq4vm/runtime.h"

namespace ptq4vm::test {

inline std::vector<Isa> available_isas() {
  std::vector<Isa> out;
  for (Isa isa : {Isa::Scalar, Isa::Avx2, Isa::Avx512, Isa::Avx512Vnni})
    if (int(isa) <= int(detected_isa())) out.push_back(isa);
  return out;
}

// Calls fn(isa) with each available ISA active; failures name the ISA.
template <typename Fn>
void for_each_isa(Fn&& fn) {
  const Isa saved = active_isa();
  for (Isa isa : available_isas()) {
    set_active_isa(isa);
    try {
      fn(isa);
    } catch (const Failure& f) {
      set_active_isa(saved);
      throw Failure{std::string("[isa ") + isa_name(isa) + "] " + f.message};
    }
  }
  set_active_isa(saved);
}

// Restores the thread count when it goes out of scope.
struct ThreadCountGuard {
  int saved = num_threads();
  ~ThreadCountGuard() { set_num_threads(saved); }
};

}  // namespace ptq4vm::test
