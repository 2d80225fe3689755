#include "scratch.h"

#include <cstdlib>
#include <new>

namespace ptq4vm::cpu {
namespace {

struct ScratchBuffers {
  void* ptr[int(ScratchSlot::Count)] = {};
  size_t capacity[int(ScratchSlot::Count)] = {};
  ~ScratchBuffers() {
    for (void* p : ptr) std::free(p);
  }
};

thread_local ScratchBuffers t_scratch;

}  // namespace

void* thread_scratch(ScratchSlot slot, size_t bytes) {
  const int i = int(slot);
  if (bytes == 0) bytes = 64;
  if (t_scratch.capacity[i] < bytes) {
    std::free(t_scratch.ptr[i]);
    t_scratch.ptr[i] = nullptr;
    t_scratch.capacity[i] = 0;
    // Grow geometrically so slowly increasing sizes do not reallocate every call; round to
    // the alignment as aligned_alloc requires.
    size_t want = bytes + bytes / 4;
    want = (want + 63) / 64 * 64;
    void* p = std::aligned_alloc(64, want);
    if (!p) throw std::bad_alloc();
    t_scratch.ptr[i] = p;
    t_scratch.capacity[i] = want;
  }
  return t_scratch.ptr[i];
}

}  // namespace ptq4vm::cpu
