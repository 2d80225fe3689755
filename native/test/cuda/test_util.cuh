// Helpers of the CUDA tests: skip without a device, device arrays, host-side fp16 rounding,
// comparison reports.
#pragma once
#include <cuda_fp16.h>
#include <cuda_runtime_api.h>

#include <cmath>
#include <cstdint>
#include <sstream>
#include <string>
#include <vector>

#include "harness.h"
#include "ptq4vm/cuda/runtime.h"

namespace ptq4vm::test {

// Every GPU test starts with this: throws Skip("no CUDA device: <reason>") where none is usable.
inline void require_gpu() {
  static const cuda::DeviceQuery q = cuda::query_devices();
  if (q.count == 0) throw Skip{"no CUDA device: " + q.reason};
  PTQ4VM_CUDA_CHECK(cudaSetDevice(0));
}

// A device copy of a host vector (cudaMalloc'd; the tests also exercise the caching allocator
// separately).
template <class T>
class DeviceArray {
 public:
  DeviceArray() = default;
  explicit DeviceArray(size_t n) : n_(n) {
    if (n) PTQ4VM_CUDA_CHECK(cudaMalloc(&p_, n * sizeof(T)));
  }
  explicit DeviceArray(const std::vector<T>& h) : DeviceArray(h.size()) { upload(h); }
  ~DeviceArray() {
    if (p_) cudaFree(p_);
  }
  DeviceArray(const DeviceArray&) = delete;
  DeviceArray& operator=(const DeviceArray&) = delete;
  DeviceArray(DeviceArray&& o) noexcept : p_(o.p_), n_(o.n_) {
    o.p_ = nullptr;
    o.n_ = 0;
  }
  void upload(const std::vector<T>& h) {
    if (h.size() != n_) throw Failure{"DeviceArray::upload size mismatch"};
    if (n_) PTQ4VM_CUDA_CHECK(cudaMemcpy(p_, h.data(), n_ * sizeof(T), cudaMemcpyHostToDevice));
    // A pageable upload may return before its DMA lands; kernels on non-blocking streams
    // (Context) are not ordered after it.
    PTQ4VM_CUDA_CHECK(cudaDeviceSynchronize());
  }
  std::vector<T> download() const {
    std::vector<T> h(n_);
    PTQ4VM_CUDA_CHECK(cudaDeviceSynchronize());
    if (n_) PTQ4VM_CUDA_CHECK(cudaMemcpy(h.data(), p_, n_ * sizeof(T), cudaMemcpyDeviceToHost));
    return h;
  }
  void fill_byte(int v) {
    if (n_) PTQ4VM_CUDA_CHECK(cudaMemset(p_, v, n_ * sizeof(T)));
    PTQ4VM_CUDA_CHECK(cudaDeviceSynchronize());
  }
  T* get() const { return p_; }
  size_t size() const { return n_; }

 private:
  T* p_ = nullptr;
  size_t n_ = 0;
};

// Waits for the device and reports an asynchronous kernel fault as a CudaError.
inline void sync_device() { PTQ4VM_CUDA_CHECK(cudaDeviceSynchronize()); }

inline std::vector<__half> to_half(const std::vector<float>& v) {
  std::vector<__half> h(v.size());
  for (size_t i = 0; i < v.size(); ++i) h[i] = __float2half_rn(v[i]);
  return h;
}
inline std::vector<float> to_float(const std::vector<__half>& v) {
  std::vector<float> f(v.size());
  for (size_t i = 0; i < v.size(); ++i) f[i] = __half2float(v[i]);
  return f;
}
// The value fp16 storage keeps of x.
inline float round_half(float x) { return __half2float(__float2half_rn(x)); }
inline std::vector<float> round_half(const std::vector<float>& v) {
  std::vector<float> r(v.size());
  for (size_t i = 0; i < v.size(); ++i) r[i] = round_half(v[i]);
  return r;
}

inline std::vector<uint8_t> random_u8(Rng& rng, size_t n, int lo = 0, int hi = 255) {
  std::vector<uint8_t> v(n);
  for (auto& x : v) x = static_cast<uint8_t>(rng.integer(lo, hi));
  return v;
}
inline std::vector<int8_t> random_s8(Rng& rng, size_t n, int lo = -127, int hi = 127) {
  std::vector<int8_t> v(n);
  for (auto& x : v) x = static_cast<int8_t>(rng.integer(lo, hi));
  return v;
}

// Relative max error over a strided [rows, cols] window.
inline double rel_err_strided(const float* a, int64_t lda, const float* b, int64_t ldb, int64_t rows, int64_t cols) {
  double num = 0, den = 1e-30;
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) {
      num = std::fmax(num, std::fabs(double(a[r * lda + c]) - double(b[r * ldb + c])));
      den = std::fmax(den, std::fabs(double(b[r * ldb + c])));
    }
  return num / den;
}

// Quantized outputs computed from fp32 values that differ in the last bits may round to
// neighbouring levels where a value sits within rounding noise of a .5 boundary: count those.
struct U8Compare {
  int64_t total = 0, off_by_one = 0, worse = 0;
  std::string first_bad;
};
inline U8Compare compare_u8(const uint8_t* got, int64_t ldg, const uint8_t* want, int64_t ldw, int64_t rows,
                            int64_t cols) {
  U8Compare c;
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < cols; ++j) {
      const int d = std::abs(int(got[r * ldg + j]) - int(want[r * ldw + j]));
      ++c.total;
      if (d == 1) ++c.off_by_one;
      if (d > 1) {
        if (c.worse == 0) {
          std::ostringstream os;
          os << "(" << r << "," << j << ") got " << int(got[r * ldg + j]) << " want " << int(want[r * ldw + j]);
          c.first_bad = os.str();
        }
        ++c.worse;
      }
    }
  return c;
}

// A stride padded past the row so strided paths are exercised (ragged tails too).
inline int64_t padded(int64_t cols, int64_t extra) { return cols + extra; }

}  // namespace ptq4vm::test
