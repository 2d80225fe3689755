// Selective scans with fp32 state: the single-direction scan of scan.h, and the fused
// two-direction scan of a Vim block (dequantize u in registers, D skip, SiLU(z) gate, combine
// the directions /2, write fp32/fp16 or the per-token-quantized input of out_proj).
#include <atomic>
#include <type_traits>

#include "common.cuh"
#include "ptq4vm/cuda/scan.h"

namespace ptq4vm::cuda {
namespace {

// ---------------------------------------------------------------------------------------------
// Single direction (scan.h): one thread per (b, e), all N states in registers.

template <int MAXN>
__global__ void __launch_bounds__(128) scan_single_kernel(const ScanArgs a) {
  const long long idx = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= a.B * a.E) return;
  const long long b = idx / a.E;
  const int e = static_cast<int>(idx % a.E);
  const int N = static_cast<int>(a.N);
  float h[MAXN], Ae[MAXN];
#pragma unroll
  for (int n = 0; n < MAXN; ++n) {
    h[n] = 0.0f;
    Ae[n] = n < N ? a.A[static_cast<long long>(e) * N + n] : 0.0f;
  }
  const float dbias = a.delta_bias ? a.delta_bias[e] : 0.0f;
  const float De = a.D ? a.D[e] : 0.0f;
  for (long long i = 0; i < a.L; ++i) {
    const long long t = a.reverse ? a.L - 1 - i : i;
    const long long row = b * a.L + t;
    float dt = a.delta[row * a.lddelta + e] + dbias;
    if (a.delta_softplus) dt = dt > 20.0f ? dt : log1pf(expf(dt));
    const float u = a.u[row * a.ldu + e];
    const float* Brow = a.Bm + row * a.ldB;
    const float* Crow = a.Cm + row * a.ldC;
    float o = 0.0f;
#pragma unroll
    for (int n = 0; n < MAXN; ++n) {
      if (n < N) {
        h[n] = expf(dt * Ae[n]) * h[n] + dt * Brow[n] * u;
        o += h[n] * Crow[n];
      }
    }
    o += De * u;
    if (a.z) {
      const float zv = a.z[row * a.ldz + e];
      o *= zv / (1.0f + expf(-zv));
    }
    float* yp = a.y + row * a.ldy + e;
    const float yv = a.out_scale * o;
    *yp = a.accumulate ? *yp + yv : yv;
  }
}

// ---------------------------------------------------------------------------------------------
// Two directions.

struct DirParams {
  const void* u;
  long long ldu;
  const float* u_scale;
  const int32_t* u_zero;
  const float* u_smooth;
  int u_period;
  const void* delta;
  long long lddelta;
  const float* delta_bias;
  const float* A;
  const void* Bm;
  long long ldB;
  const void* Cm;
  long long ldC;
  const float* D;
};
struct BiParams {
  int B, L, E, N;
  DirParams dir[2];  // 0: forward (token order), 1: backward (its own reversed order)
  const void* z;
  long long ldz;
  bool softplus;
  void* y;
  long long ldy;
  int q_period;
  const float* q_inv_smooth;
  const float* q_inv_scale;
  const int32_t* q_zero;
  int qmax;
};

template <class T>
__device__ __forceinline__ float ldf(const void* base, long long i) {
  return to_f32(__ldg(static_cast<const T*>(base) + i));
}

// u of one step: fp value, or the dequantized u8 with the per-token parameters at p.
template <class U>
__device__ __forceinline__ float load_u(const DirParams& d, long long row, int e, int p, float smooth) {
  if constexpr (std::is_same_v<U, uint8_t>) {
    const uint8_t q = __ldg(static_cast<const uint8_t*>(d.u) + row * d.ldu + e);
    return dequantize_value(q, d.u_zero[p], d.u_scale[p], smooth);
  } else {
    return ldf<U>(d.u, row * d.ldu + e);
  }
}

template <class Y>
__device__ __forceinline__ void store_y(const BiParams& p, long long row, int e, float y) {
  if constexpr (std::is_same_v<Y, uint8_t>) {
    const int pq = static_cast<int>(row % p.q_period);
    static_cast<uint8_t*>(p.y)[row * p.ldy + e] =
        quantize_value(y, p.q_inv_smooth ? p.q_inv_smooth[e] : 1.0f, p.q_inv_scale[pq], p.q_zero[pq], p.qmax);
  } else {
    store_f32(static_cast<Y*>(p.y) + row * p.ldy + e, y);
  }
}

__device__ __forceinline__ int next_period_index(int p, int period) { return p + 1 == period ? 0 : p + 1; }

// Fast kernel. Block = 2·W warps: warps [0, W) run the forward direction, [W, 2W) the
// backward one, for the same CH = 8·W channels of one image b. Lane = 4·c + sl: channel c of
// the warp, state slice sl holding states 4·sl..4·sl+3 (N = 16); the four slices reduce
// Σ h·C with two shuffles. Both directions advance together; each stores its first half
// (forward: t < h, backward: t >= h, h = ceil(L/2)) in shared memory, then after one barrier
// each finishes its second half reading the other direction's stored value for the same t,
// combines /2 and writes the output. Shared memory: L · CH floats.
template <class U, class P, class Y>
__global__ void __launch_bounds__(256) biscan_fast_kernel(const BiParams prm) {
  extern __shared__ float ybuf[];  // [L][CH]
  const int W = blockDim.x >> 6;
  const int CH = 8 * W;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int dir = warp >= W ? 1 : 0;
  const int c_local = (warp - dir * W) * 8 + (lane >> 2);
  const int sl = lane & 3;
  const int e_raw = blockIdx.x * CH + c_local;
  const bool valid = e_raw < prm.E;
  const int e = valid ? e_raw : prm.E - 1;  // idle lanes compute a copy, write nothing global
  const long long b = blockIdx.y;
  const int L = prm.L;
  // A select, not prm.dir[dir]: indexing the kernel-parameter array with a run-time value
  // would copy it to local memory.
  const DirParams d = dir ? prm.dir[1] : prm.dir[0];

  float h[4], Ae[4];
#pragma unroll
  for (int k = 0; k < 4; ++k) {
    h[k] = 0.0f;
    Ae[k] = d.A[static_cast<long long>(e) * 16 + sl * 4 + k];
  }
  const float dbias = d.delta_bias ? d.delta_bias[e] : 0.0f;
  const float De = d.D ? d.D[e] : 0.0f;
  const float smooth = (std::is_same_v<U, uint8_t> && d.u_smooth) ? d.u_smooth[e] : 1.0f;
  int pu = std::is_same_v<U, uint8_t> ? static_cast<int>((b * L) % d.u_period) : 0;

  struct In {
    float delta, u, z, Bv[4], Cv[4];
  };
  auto load = [&](int s) {
    In in;
    const long long row = b * L + s;
    const long long trow = b * L + (dir ? L - 1 - s : s);
    in.delta = ldf<P>(d.delta, row * d.lddelta + e);
    in.u = load_u<U>(d, row, e, pu, smooth);
    in.z = prm.z ? ldf<P>(prm.z, trow * prm.ldz + e) : 0.0f;
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      in.Bv[k] = ldf<P>(d.Bm, row * d.ldB + sl * 4 + k);
      in.Cv[k] = ldf<P>(d.Cm, row * d.ldC + sl * 4 + k);
    }
    if constexpr (std::is_same_v<U, uint8_t>) pu = next_period_index(pu, d.u_period);
    return in;
  };
  auto compute = [&](const In& in) {
    float dt = in.delta + dbias;
    if (prm.softplus) dt = softplus(dt);
    float part = 0.0f;
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      h[k] = __expf(dt * Ae[k]) * h[k] + dt * in.Bv[k] * in.u;
      part += h[k] * in.Cv[k];
    }
    part += __shfl_xor_sync(0xffffffffu, part, 1);
    part += __shfl_xor_sync(0xffffffffu, part, 2);
    float o = part + De * in.u;
    if (prm.z) o *= silu(in.z);
    return o;
  };

  const int h_split = (L + 1) / 2;
  const int s_split = dir == 0 ? h_split : L - h_split;  // own-order steps before the barrier
  In next = load(0);
  for (int s = 0; s < s_split; ++s) {
    const In cur = next;
    if (s + 1 < L) next = load(s + 1);
    const float o = compute(cur);
    const int t = dir ? L - 1 - s : s;
    if (sl == 0) ybuf[t * CH + c_local] = o;
  }
  __syncthreads();
  for (int s = s_split; s < L; ++s) {
    const In cur = next;
    if (s + 1 < L) next = load(s + 1);
    const float o = compute(cur);
    const int t = dir ? L - 1 - s : s;
    if (sl == 0 && valid) store_y<Y>(prm, b * L + t, e, (o + ybuf[t * CH + c_local]) * 0.5f);
  }
}

// Simple kernel: one thread per (b, e) with all N (<= 64) states; runs the backward
// direction over the whole sequence into shared memory, then the forward one, combining.
template <class U, class P, class Y>
__global__ void __launch_bounds__(32) biscan_simple_kernel(const BiParams prm) {
  extern __shared__ float ybuf[];  // [L][CH], CH = blockDim.x
  constexpr int MAXN = 64;
  const int CH = blockDim.x;
  const int c_local = threadIdx.x;
  const int e = blockIdx.x * CH + c_local;
  if (e >= prm.E) return;  // no barriers below
  const long long b = blockIdx.y;
  const int L = prm.L, N = prm.N;
  for (int dir = 1; dir >= 0; --dir) {
    const DirParams d = dir ? prm.dir[1] : prm.dir[0];
    float h[MAXN];
#pragma unroll
    for (int n = 0; n < MAXN; ++n) h[n] = 0.0f;
    const float dbias = d.delta_bias ? d.delta_bias[e] : 0.0f;
    const float De = d.D ? d.D[e] : 0.0f;
    const float smooth = (std::is_same_v<U, uint8_t> && d.u_smooth) ? d.u_smooth[e] : 1.0f;
    for (int s = 0; s < L; ++s) {
      const long long row = b * L + s;
      const int t = dir ? L - 1 - s : s;
      const int pu = std::is_same_v<U, uint8_t> ? static_cast<int>(row % d.u_period) : 0;
      float dt = ldf<P>(d.delta, row * d.lddelta + e) + dbias;
      if (prm.softplus) dt = dt > 20.0f ? dt : log1pf(expf(dt));
      const float u = load_u<U>(d, row, e, pu, smooth);
      float o = 0.0f;
#pragma unroll
      for (int n = 0; n < MAXN; ++n) {
        if (n < N) {
          const float a = d.A[static_cast<long long>(e) * N + n];
          h[n] = expf(dt * a) * h[n] + dt * ldf<P>(d.Bm, row * d.ldB + n) * u;
          o += h[n] * ldf<P>(d.Cm, row * d.ldC + n);
        }
      }
      o += De * u;
      if (prm.z) {
        const float zv = ldf<P>(prm.z, (b * L + t) * prm.ldz + e);
        o *= zv / (1.0f + expf(-zv));
      }
      if (dir == 1)
        ybuf[t * CH + c_local] = o;
      else
        store_y<Y>(prm, b * L + t, e, (o + ybuf[t * CH + c_local]) * 0.5f);
    }
  }
}

// Raises a kernel's dynamic shared-memory limit when a launch needs more than 48 KB, once per
// (kernel, size): no attribute call happens in steady state (e.g. inside a graph capture).
template <class Kernel>
void allow_smem(Kernel kernel, size_t bytes, std::atomic<size_t>& granted) {
  if (bytes <= 48 * 1024 || bytes <= granted.load(std::memory_order_acquire)) return;
  PTQ4VM_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes)));
  granted.store(bytes, std::memory_order_release);
}

template <class U, class P, class Y>
void launch_biscan(const BiParams& p, bool fast, size_t smem_limit, cudaStream_t stream) {
  static std::atomic<size_t> granted_fast{0}, granted_simple{0};
  // Channels per block: as many as shared memory allows (the buffer holds L · CH floats).
  int ch = 32;
  while (ch > 8 && static_cast<size_t>(p.L) * ch * sizeof(float) > smem_limit) ch /= 2;
  const size_t smem = static_cast<size_t>(p.L) * ch * sizeof(float);
  require(smem <= smem_limit, "bidirectional_scan",
          "sequence too long for the shared-memory buffer (L = " + std::to_string(p.L) + ")");
  const dim3 grid(static_cast<unsigned>(ceil_div(p.E, ch)), static_cast<unsigned>(p.B));
  if (fast) {
    auto kernel = biscan_fast_kernel<U, P, Y>;
    allow_smem(kernel, smem, granted_fast);
    kernel<<<grid, (ch / 8) * 64, smem, stream>>>(p);
    PTQ4VM_CUDA_CHECK_LAUNCH("biscan_fast_kernel");
  } else {
    auto kernel = biscan_simple_kernel<U, P, Y>;
    allow_smem(kernel, smem, granted_simple);
    kernel<<<grid, ch, smem, stream>>>(p);
    PTQ4VM_CUDA_CHECK_LAUNCH("biscan_simple_kernel");
  }
}

}  // namespace

void selective_scan_f32(const ScanArgs& a, cudaStream_t stream) {
  const char* fn = "selective_scan_f32";
  require(a.B >= 0 && a.L >= 0 && a.E >= 0 && a.N >= 0, fn, "negative size");
  require(a.N <= 64, fn, "N > 64 is not supported");
  if (a.B == 0 || a.L == 0 || a.E == 0) return;
  require(a.u && a.delta && a.A && a.Bm && a.Cm && a.y, fn, "u, delta, A, Bm, Cm and y are required");
  require(a.ldu >= a.E && a.lddelta >= a.E && a.ldy >= a.E && a.ldB >= a.N && a.ldC >= a.N &&
              (!a.z || a.ldz >= a.E),
          fn, "a row stride is smaller than its row");
  const long long threads = a.B * a.E;
  const unsigned blocks = static_cast<unsigned>(ceil_div(threads, 128));
  if (a.N <= 16)
    scan_single_kernel<16><<<blocks, 128, 0, stream>>>(a);
  else
    scan_single_kernel<64><<<blocks, 128, 0, stream>>>(a);
  PTQ4VM_CUDA_CHECK_LAUNCH("scan_single_kernel");
}

void bidirectional_scan(const BiScanArgs& a, cudaStream_t stream) {
  const char* fn = "bidirectional_scan";
  require(a.B >= 0 && a.L >= 0 && a.E >= 0 && a.N >= 1, fn, "bad size");
  require(a.B <= 65535 && a.L <= (1 << 24) && a.E <= (1 << 24), fn, "size too large");
  require(a.N <= 64, fn, "N > 64 is not supported");
  if (a.B == 0 || a.L == 0 || a.E == 0) return;
  require(a.y && a.ldy >= a.E, fn, "y missing or ldy < E");
  require(!a.z || a.ldz >= a.E, fn, "ldz < E");
  require(a.p_type != DType::U8, fn, "delta/B/C/z must be F32 or F16");
  BiParams p{};
  p.B = static_cast<int>(a.B);
  p.L = static_cast<int>(a.L);
  p.E = static_cast<int>(a.E);
  p.N = static_cast<int>(a.N);
  const BiScanDirection* dirs[2] = {&a.fwd, &a.bwd};
  for (int i = 0; i < 2; ++i) {
    const BiScanDirection& d = *dirs[i];
    require(d.u && d.delta && d.A && d.Bm && d.Cm, fn, "each direction needs u, delta, A, Bm and Cm");
    require(d.ldu >= a.E && d.lddelta >= a.E && d.ldB >= a.N && d.ldC >= a.N, fn,
            "a row stride is smaller than its row");
    if (a.u_type == DType::U8)
      require(d.u_dequant.period >= 1 && d.u_dequant.scale && d.u_dequant.zero, fn,
              "u8 u needs u_dequant.period >= 1, scale and zero");
    DirParams& q = p.dir[i];
    q.u = d.u;
    q.ldu = d.ldu;
    q.u_scale = d.u_dequant.scale;
    q.u_zero = d.u_dequant.zero;
    q.u_smooth = d.u_dequant.smooth;
    q.u_period = static_cast<int>(a.u_type == DType::U8 ? d.u_dequant.period : 1);
    q.delta = d.delta;
    q.lddelta = d.lddelta;
    q.delta_bias = d.delta_bias;
    q.A = d.A;
    q.Bm = d.Bm;
    q.ldB = d.ldB;
    q.Cm = d.Cm;
    q.ldC = d.ldC;
    q.D = d.D;
  }
  p.z = a.z;
  p.ldz = a.ldz;
  p.softplus = a.delta_softplus;
  p.y = a.y;
  p.ldy = a.ldy;
  if (a.y_type == DType::U8) {
    require(a.y_quant.period >= 1 && a.y_quant.inv_scale && a.y_quant.zero, fn,
            "u8 y needs y_quant.period >= 1, inv_scale and zero");
    require(a.y_quant.qmax >= 1 && a.y_quant.qmax <= 255, fn, "y_quant.qmax outside [1, 255]");
  }
  p.q_period = static_cast<int>(a.y_quant.period >= 1 ? a.y_quant.period : 1);
  p.q_inv_smooth = a.y_quant.inv_smooth;
  p.q_inv_scale = a.y_quant.inv_scale;
  p.q_zero = a.y_quant.zero;
  p.qmax = a.y_quant.qmax;

  const bool fast = kernel_mode() == KernelMode::Fast && a.N == 16;
  const size_t limit = std::max<size_t>(48 * 1024, device_info(current_device()).smem_per_block_optin);
  const DType u = a.u_type, pt = a.p_type, y = a.y_type;
  using F = float;
  using H = __half;
  using B8 = uint8_t;
  if (u == DType::U8 && pt == DType::F32 && y == DType::U8) return launch_biscan<B8, F, B8>(p, fast, limit, stream);
  if (u == DType::U8 && pt == DType::F16 && y == DType::U8) return launch_biscan<B8, H, B8>(p, fast, limit, stream);
  if (u == DType::F32 && pt == DType::F32 && y == DType::U8) return launch_biscan<F, F, B8>(p, fast, limit, stream);
  if (u == DType::F16 && pt == DType::F16 && y == DType::U8) return launch_biscan<H, H, B8>(p, fast, limit, stream);
  if (u == DType::F16 && pt == DType::F16 && y == DType::F16) return launch_biscan<H, H, H>(p, fast, limit, stream);
  if (u == DType::F32 && pt == DType::F32 && y == DType::F32) return launch_biscan<F, F, F>(p, fast, limit, stream);
  require(false, fn,
          std::string("unsupported type combination u=") + dtype_name(u) + " delta/B/C/z=" + dtype_name(pt) +
              " y=" + dtype_name(y));
}

}  // namespace ptq4vm::cuda
