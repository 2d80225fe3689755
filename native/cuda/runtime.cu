// Error handling, device query, kernel mode, caching allocator and Context.
#include <cstdlib>
#include <cstring>
#include <sstream>

#include "ptq4vm/cuda/runtime.h"

namespace ptq4vm::cuda {

void throw_cuda_error(cudaError_t e, const char* call, const char* file, int line) {
  const char* base = std::strrchr(file, '/');
  std::ostringstream os;
  os << call << " failed: " << cudaGetErrorName(e) << ": " << cudaGetErrorString(e) << " ("
     << (base ? base + 1 : file) << ":" << line << ")";
  throw CudaError(e, os.str());
}

DeviceQuery query_devices() noexcept {
  DeviceQuery q;
  int n = 0;
  cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) {
    q.count = 0;
    q.reason = std::string(cudaGetErrorName(e)) + ": " + cudaGetErrorString(e);
    cudaGetLastError();  // the failed query is not an error of later calls
    return q;
  }
  q.count = n;
  if (n == 0) q.reason = "cudaGetDeviceCount returned 0 devices";
  return q;
}

const DeviceInfo& device_info(int device) {
  static std::mutex mu;
  static std::map<int, DeviceInfo> cache;
  std::lock_guard<std::mutex> lock(mu);
  auto it = cache.find(device);
  if (it != cache.end()) return it->second;
  cudaDeviceProp p{};
  PTQ4VM_CUDA_CHECK(cudaGetDeviceProperties(&p, device));
  DeviceInfo d;
  d.device = device;
  d.name = p.name;
  d.sm_major = p.major;
  d.sm_minor = p.minor;
  d.sm_count = p.multiProcessorCount;
  d.smem_per_block_optin = p.sharedMemPerBlockOptin;
  d.global_mem = p.totalGlobalMem;
  d.l2_bytes = p.l2CacheSize;
  return cache.emplace(device, d).first->second;
}

int current_device() {
  int d = 0;
  PTQ4VM_CUDA_CHECK(cudaGetDevice(&d));
  return d;
}

namespace {
KernelMode initial_mode() {
  const char* v = std::getenv("PTQ4VM_CUDA_KERNELS");
  if (v && std::strcmp(v, "simple") == 0) return KernelMode::Simple;
  return KernelMode::Fast;
}
KernelMode& mode_ref() {
  static KernelMode m = initial_mode();
  return m;
}
}  // namespace

KernelMode kernel_mode() { return mode_ref(); }
void set_kernel_mode(KernelMode mode) { mode_ref() = mode; }
const char* kernel_mode_name(KernelMode mode) { return mode == KernelMode::Simple ? "simple" : "fast"; }

const char* dtype_name(DType t) {
  switch (t) {
    case DType::F32: return "f32";
    case DType::F16: return "f16";
    case DType::U8: return "u8";
  }
  return "?";
}

// ---- CachingAllocator

size_t CachingAllocator::bucket_size(size_t bytes) {
  if (bytes <= 512) return 512;
  // Round up to a quarter of the largest power of two not above bytes: waste < 25%.
  size_t top = size_t(1) << (63 - __builtin_clzll(static_cast<unsigned long long>(bytes)));
  size_t step = top / 4;
  return (bytes + step - 1) / step * step;
}

void* CachingAllocator::allocate(size_t bytes) {
  if (bytes == 0) return nullptr;
  const size_t b = bucket_size(bytes);
  std::lock_guard<std::mutex> lock(mu_);
  auto it = free_.find(b);
  void* p = nullptr;
  if (it != free_.end() && !it->second.empty()) {
    p = it->second.back();
    it->second.pop_back();
    ++stats_.cache_hits;
  } else {
    int prev = 0;
    PTQ4VM_CUDA_CHECK(cudaGetDevice(&prev));
    if (prev != device_) PTQ4VM_CUDA_CHECK(cudaSetDevice(device_));
    cudaError_t e = cudaMalloc(&p, b);
    if (e != cudaSuccess && pins_ == 0) {
      // Out of memory with blocks cached: give them back and retry once.
      cudaGetLastError();
      for (auto& [size, list] : free_)
        for (void* q : list) {
          cudaFree(q);
          ++stats_.device_frees;
          stats_.reserved_bytes -= size;
        }
      free_.clear();
      e = cudaMalloc(&p, b);
    }
    if (prev != device_) cudaSetDevice(prev);
    check(e, "cudaMalloc(bucket)", __FILE__, __LINE__);
    ++stats_.device_mallocs;
    stats_.reserved_bytes += b;
  }
  live_[p] = b;
  stats_.in_use_bytes += b;
  return p;
}

void CachingAllocator::release(void* p) {
  if (!p) return;
  std::lock_guard<std::mutex> lock(mu_);
  auto it = live_.find(p);
  if (it == live_.end()) return;  // not ours: ignoring beats corrupting the free lists
  free_[it->second].push_back(p);
  stats_.in_use_bytes -= it->second;
  live_.erase(it);
}

void CachingAllocator::pin() {
  std::lock_guard<std::mutex> lock(mu_);
  ++pins_;
}

void CachingAllocator::unpin() {
  std::lock_guard<std::mutex> lock(mu_);
  if (pins_ > 0) --pins_;
}

void CachingAllocator::trim() {
  std::lock_guard<std::mutex> lock(mu_);
  if (pins_ > 0) return;
  for (auto& [size, list] : free_)
    for (void* q : list) {
      PTQ4VM_CUDA_CHECK(cudaFree(q));
      ++stats_.device_frees;
      stats_.reserved_bytes -= size;
    }
  free_.clear();
}

CachingAllocator::Stats CachingAllocator::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  return stats_;
}

CachingAllocator::~CachingAllocator() {
  // Destructors do not throw: errors here (e.g. a dead context at exit) are ignored.
  for (auto& [size, list] : free_)
    for (void* q : list) cudaFree(q);
  for (auto& [p, size] : live_) cudaFree(p);
}

// ---- DeviceBuffer

DeviceBuffer DeviceBuffer::persistent(size_t bytes) {
  if (bytes == 0) return DeviceBuffer();
  void* p = nullptr;
  PTQ4VM_CUDA_CHECK(cudaMalloc(&p, bytes));
  return DeviceBuffer(nullptr, p, bytes);
}

DeviceBuffer& DeviceBuffer::operator=(DeviceBuffer&& o) noexcept {
  if (this != &o) {
    reset();
    owner_ = o.owner_;
    p_ = o.p_;
    bytes_ = o.bytes_;
    o.owner_ = nullptr;
    o.p_ = nullptr;
    o.bytes_ = 0;
  }
  return *this;
}

void DeviceBuffer::reset() noexcept {
  if (p_) {
    if (owner_)
      owner_->release(p_);
    else
      cudaFree(p_);
  }
  owner_ = nullptr;
  p_ = nullptr;
  bytes_ = 0;
}

// ---- Context

namespace {
void refuse_while_capturing(bool capturing, const char* what) {
  if (capturing) throw CudaArgError(std::string(what) + ": not allowed while a graph capture is running");
}
}  // namespace


Context::Context(int device) : device_(device) {
  PTQ4VM_CUDA_CHECK(cudaSetDevice(device));
  PTQ4VM_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
  allocator_ = std::make_unique<CachingAllocator>(device);
}

Context::~Context() {
  if (stream_) {
    abort_capture();
    cudaSetDevice(device_);
    cudaStreamSynchronize(stream_);
    allocator_.reset();
    cudaStreamDestroy(stream_);
  }
}

void Context::activate() const { PTQ4VM_CUDA_CHECK(cudaSetDevice(device_)); }

DeviceBuffer Context::alloc(size_t bytes) {
  void* p = allocator_->allocate(bytes);
  return DeviceBuffer(allocator_.get(), p, p ? CachingAllocator::bucket_size(bytes) : 0);
}

void Context::synchronize() const {
  refuse_while_capturing(capturing_, "Context::synchronize");
  PTQ4VM_CUDA_CHECK(cudaStreamSynchronize(stream_));
}

void Context::upload(void* dst, const void* src, size_t bytes) const {
  refuse_while_capturing(capturing_, "Context::upload");
  if (bytes == 0) return;
  PTQ4VM_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, stream_));
}

void Context::download(void* dst, const void* src, size_t bytes) const {
  refuse_while_capturing(capturing_, "Context::download");
  if (bytes == 0) return;
  PTQ4VM_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, stream_));
  PTQ4VM_CUDA_CHECK(cudaStreamSynchronize(stream_));
}

void Context::download_2d(void* dst, size_t dst_pitch, const void* src, size_t src_pitch, size_t row_bytes,
                          size_t rows) const {
  refuse_while_capturing(capturing_, "Context::download_2d");
  if (rows == 0 || row_bytes == 0) return;
  PTQ4VM_CUDA_CHECK(cudaMemcpy2DAsync(dst, dst_pitch, src, src_pitch, row_bytes, rows, cudaMemcpyDeviceToHost,
                                      stream_));
  PTQ4VM_CUDA_CHECK(cudaStreamSynchronize(stream_));
}

void Context::begin_capture() {
  if (capturing_) throw CudaArgError("Context::begin_capture: a capture is already running");
  PTQ4VM_CUDA_CHECK(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeRelaxed));
  capturing_ = true;
}

std::unique_ptr<Graph> Context::end_capture() {
  if (!capturing_) throw CudaArgError("Context::end_capture: no capture is running");
  capturing_ = false;
  cudaGraph_t graph = nullptr;
  PTQ4VM_CUDA_CHECK(cudaStreamEndCapture(stream_, &graph));
  cudaGraphExec_t exec = nullptr;
  const cudaError_t e = cudaGraphInstantiate(&exec, graph, 0);
  cudaGraphDestroy(graph);
  check(e, "cudaGraphInstantiate", __FILE__, __LINE__);
  return std::make_unique<Graph>(*this, exec);
}

void Context::abort_capture() noexcept {
  if (!capturing_) return;
  capturing_ = false;
  cudaGraph_t graph = nullptr;
  if (cudaStreamEndCapture(stream_, &graph) == cudaSuccess && graph) cudaGraphDestroy(graph);
  cudaGetLastError();  // an invalidated capture's error is not an error of later calls
}

// ---- Graph

Graph::Graph(Context& ctx, cudaGraphExec_t exec) : ctx_(ctx), exec_(exec) { ctx_.allocator().pin(); }

Graph::~Graph() {
  cudaGraphExecDestroy(exec_);
  ctx_.allocator().unpin();
}

void Graph::launch() const { PTQ4VM_CUDA_CHECK(cudaGraphLaunch(exec_, ctx_.stream())); }

}  // namespace ptq4vm::cuda
