// CPU runtime services shared by every CPU kernel: instruction-set detection with a
// run-time override, and one thread pool.
#pragma once
#include <cstdint>
#include <functional>
#include <string>

namespace ptq4vm {

// Instruction-set levels a kernel may be specialised for, lowest first.
// Avx512 means F+BW+DQ+VL; Avx512Vnni adds VNNI.
enum class Isa : int { Scalar = 0, Avx2 = 1, Avx512 = 2, Avx512Vnni = 3 };

struct CpuFeatures {
  bool avx2 = false, fma = false, f16c = false;
  bool avx512f = false, avx512bw = false, avx512dq = false, avx512vl = false;
  bool avx512vnni = false, avxvnni = false;
};

const CpuFeatures& cpu_features();
// Highest level this CPU (and OS) supports.
Isa detected_isa();
// Level kernels dispatch to: detected_isa(), lowered by PTQ4VM_ISA=scalar|avx2|avx512|avx512vnni
// or by set_active_isa() (tests use it to run every path the machine has).
Isa active_isa();
// Returns false (and changes nothing) if the CPU lacks `isa`.
bool set_active_isa(Isa isa);
const char* isa_name(Isa isa);

// Thread pool. Default size: PTQ4VM_THREADS or the number of online CPUs.
int num_threads();
void set_num_threads(int n);
// Runs fn(begin, end) over [0, n) split into contiguous chunks of at least `grain` items (up
// to 4 per thread, claimed dynamically so a descheduled thread delays only its own chunk), on
// the pool; returns when all chunks are done. Safe to call from several threads at once (calls
// are serialised) and from inside a chunk (nested calls run inline). An exception thrown by a
// chunk is rethrown to the caller after every chunk has finished.
void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn);

}  // namespace ptq4vm
