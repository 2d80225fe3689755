// Per-thread scratch memory for kernels (packed panels, im2col columns, ...): grown on demand,
// 64-byte aligned, reused across calls so a forward pass does not allocate per kernel.
#pragma once
#include <cstddef>

namespace ptq4vm::cpu {

// One slot per concurrent use on a thread; a kernel that calls another kernel must not share
// its slot (a nested parallel_for runs inline on the same thread).
enum class ScratchSlot : int {
  GemmPackedB = 0,
  GemmPackedA,
  GemmTransposedC,  // the gemm_f32 driver's product of a narrow-output GEMM, before transposing
  PatchColumns,
  KernelLocal,   // short-lived buffers of leaf kernels that call no other kernel
  KernelLocal2,
  Count
};

// At least `bytes` bytes, 64-byte aligned, valid until the next call with the same slot on
// this thread. Throws std::bad_alloc when memory runs out.
void* thread_scratch(ScratchSlot slot, size_t bytes);

template <typename T>
T* thread_scratch_as(ScratchSlot slot, size_t count) {
  return static_cast<T*>(thread_scratch(slot, count * sizeof(T)));
}

}  // namespace ptq4vm::cpu
