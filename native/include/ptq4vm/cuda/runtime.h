// CUDA runtime services shared by every CUDA kernel family: error handling, a device query
// that works without a GPU or driver, the kernel-mode switch (fast tensor-core kernels or the
// simple reference kernels), a caching device allocator and the per-model Context (one stream).
#pragma once
#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <vector>

namespace ptq4vm::cuda {

// ---- Errors: every CUDA call is checked; a failure becomes a CudaError whose message names
// the call, the CUDA error name and text, and the source location (one line, no newline).
class CudaError : public std::runtime_error {
 public:
  CudaError(cudaError_t code, const std::string& message)
      : std::runtime_error(message), code_(code) {}
  cudaError_t code() const { return code_; }

 private:
  cudaError_t code_;
};

[[noreturn]] void throw_cuda_error(cudaError_t e, const char* call, const char* file, int line);
inline void check(cudaError_t e, const char* call, const char* file, int line) {
  if (e != cudaSuccess) throw_cuda_error(e, call, file, line);
}
#define PTQ4VM_CUDA_CHECK(call) ::ptq4vm::cuda::check((call), #call, __FILE__, __LINE__)
// After a kernel launch: reports launch-configuration errors without synchronising.
#define PTQ4VM_CUDA_CHECK_LAUNCH(kernel_name) \
  ::ptq4vm::cuda::check(cudaGetLastError(), "launch " kernel_name, __FILE__, __LINE__)

// Argument errors of the host-side launchers (shapes the kernels do not support).
class CudaArgError : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
};

// ---- Device query. Never throws: with no GPU, no driver or a too-old driver, count is 0 and
// reason holds cudaGetDeviceCount's error ("cudaErrorNoDevice: no CUDA-capable device is detected").
struct DeviceQuery {
  int count = 0;
  std::string reason;  // empty when count > 0
};
DeviceQuery query_devices() noexcept;

struct DeviceInfo {
  int device = 0;
  std::string name;
  int sm_major = 0, sm_minor = 0;
  int sm_count = 0;
  size_t smem_per_block_optin = 0;  // bytes of dynamic shared memory one block may opt into
  size_t global_mem = 0;
  int l2_bytes = 0;
  int arch() const { return sm_major * 10 + sm_minor; }
};
// Cached per device; throws CudaError.
const DeviceInfo& device_info(int device);
int current_device();

// ---- Kernel mode: Fast = tensor-core GEMMs, the multi-thread-per-channel scan and the other
// optimised kernels; Simple = straightforward kernels (SIMT GEMM, one thread per channel),
// slower but easy to trust. Default: PTQ4VM_CUDA_KERNELS=simple|fast, else Fast.
enum class KernelMode : int { Fast = 0, Simple = 1 };
KernelMode kernel_mode();
void set_kernel_mode(KernelMode mode);
const char* kernel_mode_name(KernelMode mode);

// ---- Caching allocator. Blocks are rounded up to a size bucket (steps of 1/4 of a power of
// two, at least 512 bytes) and kept on per-bucket free lists when released, so a forward
// that runs twice calls cudaMalloc only the first time. An allocator belongs to one stream:
// a released block is handed out again only to work queued later on that same stream, which
// stream order makes safe without any synchronisation.
class CachingAllocator {
 public:
  struct Stats {
    uint64_t device_mallocs = 0;  // cudaMalloc calls so far
    uint64_t device_frees = 0;    // cudaFree calls so far
    uint64_t cache_hits = 0;      // allocations served from a free list
    size_t reserved_bytes = 0;    // held from the device (in use + cached)
    size_t in_use_bytes = 0;
  };
  explicit CachingAllocator(int device) : device_(device) {}
  ~CachingAllocator();
  CachingAllocator(const CachingAllocator&) = delete;
  CachingAllocator& operator=(const CachingAllocator&) = delete;

  void* allocate(size_t bytes);  // nullptr for 0 bytes; throws CudaError when out of memory
  void release(void* p);         // p must come from allocate (nullptr is ignored)
  void trim();                   // cudaFree every cached free block (not while pinned)
  // While pinned (a captured CUDA graph addresses blocks of this cache), no block is ever
  // returned to the device: trim() does nothing and running out of memory is reported
  // instead of freeing the cache and retrying. Counted: pin() n times, unpin() n times.
  void pin();
  void unpin();
  Stats stats() const;
  static size_t bucket_size(size_t bytes);

 private:
  int device_;
  mutable std::mutex mu_;
  std::map<size_t, std::vector<void*>> free_;
  std::unordered_map<void*, size_t> live_;
  Stats stats_;
  int pins_ = 0;
};

// Owns one block of device memory: either from a CachingAllocator (returned to it on
// destruction) or a plain cudaMalloc (persistent data such as weights; cudaFree on destruction).
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  DeviceBuffer(CachingAllocator* owner, void* p, size_t bytes) : owner_(owner), p_(p), bytes_(bytes) {}
  static DeviceBuffer persistent(size_t bytes);  // cudaMalloc, not cached
  ~DeviceBuffer() { reset(); }
  DeviceBuffer(DeviceBuffer&& o) noexcept { *this = std::move(o); }
  DeviceBuffer& operator=(DeviceBuffer&& o) noexcept;
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;

  void reset() noexcept;
  void* get() const { return p_; }
  template <class T>
  T* as() const { return static_cast<T*>(p_); }
  size_t bytes() const { return bytes_; }
  explicit operator bool() const { return p_ != nullptr; }

 private:
  CachingAllocator* owner_ = nullptr;  // null: persistent (cudaFree)
  void* p_ = nullptr;
  size_t bytes_ = 0;
};

class Context;

// An instantiated CUDA graph: the kernels one capture on a Context's stream recorded, replayed
// on that stream by launch(). It pins the Context's allocator while it lives.
class Graph {
 public:
  Graph(Context& ctx, cudaGraphExec_t exec);
  ~Graph();
  Graph(const Graph&) = delete;
  Graph& operator=(const Graph&) = delete;
  void launch() const;

 private:
  Context& ctx_;
  cudaGraphExec_t exec_;
};

// One per model object: a non-blocking stream and the caching allocator bound to it. All work
// of the model is queued on stream(); nothing inside a forward synchronises with the host.
class Context {
 public:
  explicit Context(int device = 0);
  ~Context();  // synchronises its stream, then frees the cache and destroys the stream
  Context(const Context&) = delete;
  Context& operator=(const Context&) = delete;

  int device() const { return device_; }
  cudaStream_t stream() const { return stream_; }
  CachingAllocator& allocator() { return *allocator_; }
  const DeviceInfo& info() const { return device_info(device_); }
  // Makes this context's device current in the calling thread (worker threads call it first).
  void activate() const;
  DeviceBuffer alloc(size_t bytes);  // from the cache
  void synchronize() const;
  // Host <-> device copies queued on the stream (pageable host memory: the upload returns when
  // the host buffer may be reused; the download synchronises the stream).
  void upload(void* dst, const void* src, size_t bytes) const;
  void download(void* dst, const void* src, size_t bytes) const;
  // Strided download of rows × row_bytes (pitches in bytes); synchronises.
  void download_2d(void* dst, size_t dst_pitch, const void* src, size_t src_pitch, size_t row_bytes,
                   size_t rows) const;

  // Graph capture of the work queued on stream() (relaxed mode, so other threads' CUDA calls
  // are unaffected). Host copies and synchronisation are refused while capturing.
  void begin_capture();
  std::unique_ptr<Graph> end_capture();  // throws CudaError when the capture was invalidated
  void abort_capture() noexcept;         // ends a capture and discards it (after an error)
  bool capturing() const { return capturing_; }

 private:
  int device_;
  cudaStream_t stream_ = nullptr;
  std::unique_ptr<CachingAllocator> allocator_;
  bool capturing_ = false;
};

// Data types of the kernels that take several (activations in fp32 or fp16, quantized u8).
enum class DType : int { F32 = 0, F16 = 1, U8 = 2 };
const char* dtype_name(DType t);

// Per-token asymmetric quantization of an operand, the formula of quantize.h:
//   q = clamp(round_half_even((x · inv_smooth[j]) · inv_scale[p]) + zero[p], 0, qmax),
//   p = row % period (row counted in the operand's own token order); inv_smooth may be null.
struct QuantParams {
  int64_t period = 1;
  const float* inv_smooth = nullptr;  // [cols] or null
  const float* inv_scale = nullptr;   // [period]
  const int32_t* zero = nullptr;      // [period]
  int qmax = 255;
};

// Its inverse for a u8 operand that a kernel reads: x = ((q − zero[p]) · scale[p]) · smooth[j]
// (smooth may be null = 1).
struct DequantParams {
  int64_t period = 1;
  const float* scale = nullptr;   // [period]
  const int32_t* zero = nullptr;  // [period]
  const float* smooth = nullptr;  // [cols] or null
};

}  // namespace ptq4vm::cuda
