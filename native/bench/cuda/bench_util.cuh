// Shared by the CUDA benchmarks: cudaEvent timing (warm-up, then the median of N launches
// each bracketed by its own pair of events), Vim shapes, device buffers, JSON lines.
#pragma once
#include <cuda_fp16.h>
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "ptq4vm/cuda/runtime.h"

namespace ptq4vm::bench {

// Median microseconds of `fn` (which only enqueues work on `stream`).
inline double median_us(const std::function<void()>& fn, cudaStream_t stream, int warmup, int iters) {
  for (int i = 0; i < warmup; ++i) fn();
  std::vector<cudaEvent_t> ev(2 * iters);
  for (auto& e : ev) PTQ4VM_CUDA_CHECK(cudaEventCreate(&e));
  for (int i = 0; i < iters; ++i) {
    PTQ4VM_CUDA_CHECK(cudaEventRecord(ev[2 * i], stream));
    fn();
    PTQ4VM_CUDA_CHECK(cudaEventRecord(ev[2 * i + 1], stream));
  }
  PTQ4VM_CUDA_CHECK(cudaStreamSynchronize(stream));
  std::vector<double> t(iters);
  for (int i = 0; i < iters; ++i) {
    float ms = 0;
    PTQ4VM_CUDA_CHECK(cudaEventElapsedTime(&ms, ev[2 * i], ev[2 * i + 1]));
    t[i] = ms * 1000.0;
  }
  for (auto& e : ev) cudaEventDestroy(e);
  std::sort(t.begin(), t.end());
  return iters % 2 ? t[iters / 2] : 0.5 * (t[iters / 2 - 1] + t[iters / 2]);
}

struct VimShape {
  const char* name;
  int D;
  int d_inner() const { return 2 * D; }
  int dt_rank() const { return (D + 15) / 16; }
  static constexpr int kState = 16, kL = 197;
};
inline const VimShape kModels[] = {{"vim-ti", 192}, {"vim-s", 384}, {"vim-b", 768}};
inline const int kBatches[] = {1, 8, 64};

// --quick: fewer iterations (used under compute-sanitizer or for a smoke run).
inline bool quick_mode(int argc, char** argv) {
  for (int i = 1; i < argc; ++i)
    if (std::strcmp(argv[i], "--quick") == 0) return true;
  return false;
}

// Device buffer filled with deterministic non-zero bytes / values.
struct Buf {
  void* p = nullptr;
  size_t bytes = 0;
  explicit Buf(size_t n) : bytes(n) {
    if (n) PTQ4VM_CUDA_CHECK(cudaMalloc(&p, n));
  }
  ~Buf() {
    if (p) cudaFree(p);
  }
  Buf(const Buf&) = delete;
  Buf& operator=(const Buf&) = delete;
  template <class T>
  T* as() const { return static_cast<T*>(p); }
  void upload(const void* h) {
    PTQ4VM_CUDA_CHECK(cudaMemcpy(p, h, bytes, cudaMemcpyHostToDevice));
    PTQ4VM_CUDA_CHECK(cudaDeviceSynchronize());  // before kernels on non-blocking streams
  }
};

inline std::vector<float> rand_floats(size_t n, float lo, float hi, uint64_t seed) {
  std::mt19937_64 g(seed);
  std::uniform_real_distribution<float> d(lo, hi);
  std::vector<float> v(n);
  for (auto& x : v) x = d(g);
  return v;
}
inline std::vector<uint8_t> rand_bytes(size_t n, uint64_t seed, int lo = 0, int hi = 255) {
  std::mt19937_64 g(seed);
  std::uniform_int_distribution<int> d(lo, hi);
  std::vector<uint8_t> v(n);
  for (auto& x : v) x = static_cast<uint8_t>(d(g));
  return v;
}
inline Buf* new_floats(size_t n, float lo, float hi, uint64_t seed) {
  auto h = rand_floats(n, lo, hi, seed);
  Buf* b = new Buf(n * sizeof(float));
  b->upload(h.data());
  return b;
}
inline Buf* new_halves(size_t n, float lo, float hi, uint64_t seed) {
  auto h = rand_floats(n, lo, hi, seed);
  std::vector<__half> hh(n);
  for (size_t i = 0; i < n; ++i) hh[i] = __float2half_rn(h[i]);
  Buf* b = new Buf(n * sizeof(__half));
  b->upload(hh.data());
  return b;
}
inline Buf* new_bytes(size_t n, uint64_t seed, int lo = 0, int hi = 255) {
  auto h = rand_bytes(n, seed, lo, hi);
  Buf* b = new Buf(n);
  b->upload(h.data());
  return b;
}
inline Buf* new_ints(size_t n, int lo, int hi, uint64_t seed) {
  std::mt19937_64 g(seed);
  std::uniform_int_distribution<int> d(lo, hi);
  std::vector<int32_t> v(n);
  for (auto& x : v) x = d(g);
  Buf* b = new Buf(n * sizeof(int32_t));
  b->upload(v.data());
  return b;
}

inline void print_device_line(const char* bench) {
  int dev = 0;
  PTQ4VM_CUDA_CHECK(cudaGetDevice(&dev));
  const auto& info = cuda::device_info(dev);
  std::printf("# %s on %s (sm_%d%d, %d SMs), kernel mode %s\n", bench, info.name.c_str(), info.sm_major,
              info.sm_minor, info.sm_count, cuda::kernel_mode_name(cuda::kernel_mode()));
}

// Exits 0 with a message when there is no GPU (the benches are built everywhere).
inline void require_gpu_or_exit(const char* bench) {
  const auto q = cuda::query_devices();
  if (q.count == 0) {
    std::printf("# %s skipped: no CUDA device: %s\n", bench, q.reason.c_str());
    std::exit(0);
  }
}

}  // namespace ptq4vm::bench
