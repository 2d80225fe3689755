// GEMMs C = A · Wᵀ: INT8 (u8/s8 × s8 → s32) and FP16 (fp32 accumulation) on tensor cores with
// mma.sync, plus the simple SIMT kernel (any alignment; also the fp32 GEMM) and the fused
// epilogues. See native/cuda/README.md for the tile shapes and how each path is verified.
#include <algorithm>
#include <atomic>
#include <type_traits>
#include <vector>

#include "common.cuh"
#include "ptq4vm/cuda/gemm.h"
#include "ptq4vm/cuda/gemm_int8.h"
#include "gemm_tile.cuh"
#include "ptx.cuh"

namespace ptq4vm::cuda {
namespace {

// ---------------------------------------------------------------------------------------------
// Epilogue: everything after the K loop, shared by the tensor-core and the simple kernels.
struct Epilogue {
  int M = 0, N = 0;
  // INT8 dequantization, p = m % period
  int period = 1;
  const float* a_scale = nullptr;
  const int32_t* a_zero = nullptr;  // null: 0
  const float* w_scale = nullptr;
  const int32_t* wsum = nullptr;
  const float* bias = nullptr;
  // outputs
  int32_t* s32 = nullptr;  // raw accumulators (INT8); when set nothing else is written
  long long ld_s32 = 0;
  float* f32 = nullptr;
  long long ld_f32 = 0;
  bool accumulate = false;
  __half* f16 = nullptr;
  long long ld_f16 = 0;
  uint8_t* u8 = nullptr;
  long long ld_u8 = 0;
  int u8_cols = 0;
  int q_period = 1;
  const float* q_inv_smooth = nullptr;
  const float* q_inv_scale = nullptr;
  const int32_t* q_zero = nullptr;
  int qmax = 255;
  // the pair (n, n+1) may be stored as one vector (n is always even)
  bool pair_s32 = false, pair_f32 = false, pair_f16 = false, pair_u8 = false;
};

__device__ __forceinline__ void write_outputs(const Epilogue& e, int m, int n, float y0, float y1,
                                              bool has1) {
  if (e.f32) {
    float* p = e.f32 + (long long)m * e.ld_f32 + n;
    if (has1 && e.pair_f32) {
      float2 v = make_float2(y0, y1);
      if (e.accumulate) {
        const float2 o = *reinterpret_cast<const float2*>(p);
        v.x = __fadd_rn(o.x, y0);
        v.y = __fadd_rn(o.y, y1);
      }
      *reinterpret_cast<float2*>(p) = v;
    } else {
      p[0] = e.accumulate ? __fadd_rn(p[0], y0) : y0;
      if (has1) p[1] = e.accumulate ? __fadd_rn(p[1], y1) : y1;
    }
  }
  if (e.f16) {
    __half* p = e.f16 + (long long)m * e.ld_f16 + n;
    if (has1 && e.pair_f16) {
      *reinterpret_cast<__half2*>(p) = __halves2half2(__float2half_rn(y0), __float2half_rn(y1));
    } else {
      p[0] = __float2half_rn(y0);
      if (has1) p[1] = __float2half_rn(y1);
    }
  }
  if (e.u8 && n < e.u8_cols) {
    const int p = m % e.q_period;
    const float inv_scale = e.q_inv_scale[p];
    const int zero = e.q_zero[p];
    const bool q1 = has1 && n + 1 < e.u8_cols;
    const uint8_t v0 = quantize_value(y0, e.q_inv_smooth ? e.q_inv_smooth[n] : 1.0f, inv_scale, zero, e.qmax);
    uint8_t* dst = e.u8 + (long long)m * e.ld_u8 + n;
    if (q1) {
      const uint8_t v1 =
          quantize_value(y1, e.q_inv_smooth ? e.q_inv_smooth[n + 1] : 1.0f, inv_scale, zero, e.qmax);
      if (e.pair_u8) {
        *reinterpret_cast<uchar2*>(dst) = make_uchar2(v0, v1);
      } else {
        dst[0] = v0;
        dst[1] = v1;
      }
    } else {
      dst[0] = v0;
    }
  }
}

// INT8, the rounding sequence of gemm_int8.h: v = (float)(acc − z·wsum[n]) · a_scale, then
// one fused multiply-add fma(v, w_scale[n], bias[n]) (bias 0 when absent).
__device__ __forceinline__ float dequant(const Epilogue& e, int32_t acc, int32_t z, float as, int n) {
  const int32_t d = acc - z * e.wsum[n];
  const float v = __fmul_rn(static_cast<float>(d), as);
  return __fmaf_rn(v, e.w_scale[n], e.bias ? e.bias[n] : 0.0f);
}

struct RowParams {
  int32_t z;
  float as;
};
__device__ __forceinline__ RowParams row_params(const Epilogue& e, int m) {
  RowParams r{0, 0.0f};
  if (!e.s32) {
    const int p = m % e.period;
    r.z = e.a_zero ? e.a_zero[p] : 0;
    r.as = e.a_scale[p];
  }
  return r;
}
__device__ __forceinline__ RowParams row_params_float(const Epilogue&, int) { return RowParams{0, 0.0f}; }

__device__ __forceinline__ void epilogue_pair(const Epilogue& e, const RowParams& r, int m, int n,
                                              int32_t a0, int32_t a1) {
  const bool has1 = n + 1 < e.N;
  if (e.s32) {
    int32_t* p = e.s32 + (long long)m * e.ld_s32 + n;
    if (has1 && e.pair_s32) {
      *reinterpret_cast<int2*>(p) = make_int2(a0, a1);
    } else {
      p[0] = a0;
      if (has1) p[1] = a1;
    }
    return;
  }
  const float y0 = dequant(e, a0, r.z, r.as, n);
  const float y1 = has1 ? dequant(e, a1, r.z, r.as, n + 1) : 0.0f;
  write_outputs(e, m, n, y0, y1, has1);
}

__device__ __forceinline__ void epilogue_pair(const Epilogue& e, const RowParams&, int m, int n, float a0,
                                              float a1) {
  const bool has1 = n + 1 < e.N;
  float y0 = a0, y1 = a1;
  if (e.bias) {
    y0 = __fadd_rn(y0, e.bias[n]);
    if (has1) y1 = __fadd_rn(y1, e.bias[n + 1]);
  }
  write_outputs(e, m, n, y0, y1, has1);
}

// ---------------------------------------------------------------------------------------------
// Tensor-core kernel. A K-tile is 64 bytes of every row (64 int8 or 32 fp16 values), i.e. two
// MMA k-steps of 32 bytes; the shared-memory layout and every index map are in gemm_tile.cuh.

struct OpU8S8 {
  using Acc = int32_t;
  static constexpr int kElemBytes = 1;
  __device__ static void mma(int32_t (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
    ptx::mma_u8s8(d, a, b);
  }
};
struct OpS8S8 {
  using Acc = int32_t;
  static constexpr int kElemBytes = 1;
  __device__ static void mma(int32_t (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
    ptx::mma_s8s8(d, a, b);
  }
};
struct OpF16 {
  using Acc = float;
  static constexpr int kElemBytes = 2;
  __device__ static void mma(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
    ptx::mma_f16(d, a, b);
  }
};

template <int BM_, int BN_, int WM_, int WN_, int STAGES_>
struct TileCfg {
  static constexpr int BM = BM_, BN = BN_, WM = WM_, WN = WN_, kStages = STAGES_;
  static constexpr int kWarpsM = BM / WM, kWarpsN = BN / WN;
  static constexpr int kThreads = 32 * kWarpsM * kWarpsN;
  static constexpr int kMT = WM / 16, kNT = WN / 8;
  static constexpr int kRowBytes = 64;
  static constexpr int kStageBytes = (BM + BN) * kRowBytes;
  static constexpr int kSmemBytes = kStages * kStageBytes;
  static_assert(BM % WM == 0 && BN % WN == 0 && WM % 16 == 0 && WN % 16 == 0, "tile shape");
  static_assert((BM * 4) % kThreads == 0 && (BN * 4) % kThreads == 0, "loader shape");
  static_assert(128 % BN == 0, "weights are padded to 128 rows");
};
template <const tile::Shape& S>
using CfgOf = TileCfg<S.bm, S.bn, S.wm, S.wn, tile::kStages>;
using CfgLarge = CfgOf<tile::kLarge>;    // 64 KB shared memory
using CfgMedium = CfgOf<tile::kMedium>;  // 48 KB
using CfgSmall = CfgOf<tile::kSmall>;    // 32 KB

struct TcArgs {
  const unsigned char* A;  // 16-byte aligned
  long long lda_bytes;     // multiple of 16
  int k_bytes;             // real K in bytes (A is zero-filled past it)
  const unsigned char* W;  // padded weights
  long long ldw_bytes;
  int k_tiles;
  Epilogue ep;
};

template <class Cfg, class Op>
__global__ void __launch_bounds__(Cfg::kThreads) gemm_tc_kernel(const TcArgs args) {
  extern __shared__ __align__(128) unsigned char smem[];
  constexpr int BM = Cfg::BM, BN = Cfg::BN, MT = Cfg::kMT, NT = Cfg::kNT;
  constexpr int kThreads = Cfg::kThreads, kStages = Cfg::kStages;
  using Acc = typename Op::Acc;

  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int warp_m = warp / Cfg::kWarpsN, warp_n = warp % Cfg::kWarpsN;
  const int m0 = blockIdx.y * BM, n0 = blockIdx.x * BN;
  const int M = args.ep.M;
  const uint32_t smem_base = ptx::smem_addr(smem);

  auto load_stage = [&](int stage, int kt) {
    const uint32_t sA = smem_base + stage * Cfg::kStageBytes;
    const uint32_t sB = sA + BM * 64;
    const int kb = kt * 64;
#pragma unroll
    for (int i = 0; i < BM * 4 / kThreads; ++i) {
      const int row = tile::load_row(tid, i, kThreads), c = tile::load_chunk(tid, i, kThreads);
      const int m = m0 + row;
      const int bytes = tile::a_chunk_bytes(m, M, args.k_bytes, kb, c);
      const unsigned char* src = bytes > 0 ? args.A + (long long)m * args.lda_bytes + kb + c * 16 : args.A;
      ptx::cp_async_16(sA + tile::swizzle(row, c), src, bytes);
    }
#pragma unroll
    for (int i = 0; i < BN * 4 / kThreads; ++i) {
      const int row = tile::load_row(tid, i, kThreads), c = tile::load_chunk(tid, i, kThreads);
      const unsigned char* src = args.W + (long long)(n0 + row) * args.ldw_bytes + kb + c * 16;
      ptx::cp_async_16(sB + tile::swizzle(row, c), src, 16);
    }
  };

  Acc acc[MT][NT][4];
#pragma unroll
  for (int i = 0; i < MT; ++i)
#pragma unroll
    for (int j = 0; j < NT; ++j)
#pragma unroll
      for (int r = 0; r < 4; ++r) acc[i][j][r] = Acc(0);

  const int k_tiles = args.k_tiles;
#pragma unroll
  for (int s = 0; s < kStages - 1; ++s) {
    if (s < k_tiles) load_stage(s, s);
    ptx::cp_async_commit();
  }

  for (int kt = 0; kt < k_tiles; ++kt) {
    // Tile kt has landed (at most kStages-2 younger groups pending) for this thread; the
    // barrier makes every thread's copies visible and retires the reads of tile kt-1, whose
    // stage the prefetch below overwrites.
    ptx::cp_async_wait<kStages - 2>();
    __syncthreads();
    const int next = kt + kStages - 1;
    if (next < k_tiles) load_stage(next % kStages, next);
    ptx::cp_async_commit();

    const uint32_t sA = smem_base + (kt % kStages) * Cfg::kStageBytes;
    const uint32_t sB = sA + BM * 64;
#pragma unroll
    for (int ks = 0; ks < 2; ++ks) {
      uint32_t a[MT][4], b[NT][2];
#pragma unroll
      for (int mt = 0; mt < MT; ++mt) {
        const int row = tile::ldsm_a_row(lane, warp_m * Cfg::WM + mt * 16);
        ptx::ldmatrix_x4(a[mt], sA + tile::swizzle(row, tile::ldsm_a_chunk(lane, ks)));
      }
#pragma unroll
      for (int np = 0; np < NT / 2; ++np) {
        const int row = tile::ldsm_b_row(lane, warp_n * Cfg::WN + np * 16);
        uint32_t r[4];
        ptx::ldmatrix_x4(r, sB + tile::swizzle(row, tile::ldsm_b_chunk(lane, ks)));
        b[2 * np][0] = r[0];
        b[2 * np][1] = r[1];
        b[2 * np + 1][0] = r[2];
        b[2 * np + 1][1] = r[3];
      }
#pragma unroll
      for (int mt = 0; mt < MT; ++mt)
#pragma unroll
        for (int nt = 0; nt < NT; ++nt) Op::mma(acc[mt][nt], a[mt], b[nt]);
    }
  }
  ptx::cp_async_wait<0>();

  // Accumulators: registers 2·half and 2·half+1 hold columns (n, n+1) of one row.
  const Epilogue& e = args.ep;
#pragma unroll
  for (int mt = 0; mt < MT; ++mt)
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      const int m = m0 + warp_m * Cfg::WM + mt * 16 + tile::acc_row(lane, 2 * half);
      if (m >= M) continue;
      RowParams rp;
      if constexpr (std::is_same_v<Acc, int32_t>)
        rp = row_params(e, m);
      else
        rp = row_params_float(e, m);
#pragma unroll
      for (int nt = 0; nt < NT; ++nt) {
        const int n = n0 + warp_n * Cfg::WN + nt * 8 + tile::acc_col(lane, 0);
        if (n >= e.N) continue;
        epilogue_pair(e, rp, m, n, acc[mt][nt][half * 2], acc[mt][nt][half * 2 + 1]);
      }
    }
}

// ---------------------------------------------------------------------------------------------
// Simple kernel: 64x64 tile, 256 threads with 4x4 outputs each, K in steps of 16, every load
// bounds-checked; any alignment and stride. Products accumulate in Acc (int32 exact / fp32).
template <class TA, class TW, class Acc>
struct SimpleArgs {
  const TA* A;
  long long lda;
  const TW* W;
  long long ldw;
  int K;
  Epilogue ep;
};

template <class T, class Acc>
__device__ __forceinline__ Acc load_acc(const T* p) {
  if constexpr (std::is_same_v<T, __half>)
    return __half2float(*p);
  else
    return static_cast<Acc>(*p);
}

template <class TA, class TW, class Acc>
__global__ void __launch_bounds__(256) gemm_simple_kernel(const SimpleArgs<TA, TW, Acc> args) {
  __shared__ Acc As[16][64 + 1];
  __shared__ Acc Ws[16][64 + 1];
  const int tid = threadIdx.x, tx = tid & 15, ty = tid >> 4;
  const int m0 = blockIdx.y * 64, n0 = blockIdx.x * 64;
  const int M = args.ep.M, N = args.ep.N, K = args.K;
  Acc acc[4][4];
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int j = 0; j < 4; ++j) acc[i][j] = Acc(0);
  for (int k0 = 0; k0 < K; k0 += 16) {
    for (int i = tid; i < 16 * 64; i += 256) {
      const int r = i >> 4, kk = i & 15, k = k0 + kk;
      const int m = m0 + r, n = n0 + r;
      As[kk][r] = (m < M && k < K) ? load_acc<TA, Acc>(args.A + (long long)m * args.lda + k) : Acc(0);
      Ws[kk][r] = (n < N && k < K) ? load_acc<TW, Acc>(args.W + (long long)n * args.ldw + k) : Acc(0);
    }
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < 16; ++kk) {
      Acc a[4], w[4];
#pragma unroll
      for (int i = 0; i < 4; ++i) a[i] = As[kk][ty * 4 + i];
#pragma unroll
      for (int j = 0; j < 4; ++j) w[j] = Ws[kk][tx * 4 + j];
#pragma unroll
      for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) acc[i][j] += a[i] * w[j];
    }
    __syncthreads();
  }
  const Epilogue& e = args.ep;
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const int m = m0 + ty * 4 + i;
    if (m >= M) continue;
    RowParams rp;
    if constexpr (std::is_same_v<Acc, int32_t>)
      rp = row_params(e, m);
    else
      rp = row_params_float(e, m);
#pragma unroll
    for (int j = 0; j < 4; j += 2) {
      const int n = n0 + tx * 4 + j;
      if (n >= N) continue;
      epilogue_pair(e, rp, m, n, acc[i][j], acc[i][j + 1]);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Host side

constexpr int kMaxDevices = 64;

template <class Cfg, class Op>
void launch_tc(const TcArgs& a, int device, cudaStream_t stream) {
  // Opt in to more than 48 KB of dynamic shared memory once per device.
  static std::atomic<bool> configured[kMaxDevices];
  auto kernel = gemm_tc_kernel<Cfg, Op>;
  if (device < 0 || device >= kMaxDevices || !configured[device].load(std::memory_order_acquire)) {
    PTQ4VM_CUDA_CHECK(
        cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, Cfg::kSmemBytes));
    if (device >= 0 && device < kMaxDevices) configured[device].store(true, std::memory_order_release);
  }
  const dim3 grid(static_cast<unsigned>(ceil_div(a.ep.N, Cfg::BN)),
                  static_cast<unsigned>(ceil_div(a.ep.M, Cfg::BM)));
  kernel<<<grid, Cfg::kThreads, Cfg::kSmemBytes, stream>>>(a);
  PTQ4VM_CUDA_CHECK_LAUNCH("gemm_tc_kernel");
}

template <class TA, class TW, class Acc>
void launch_simple(const TA* A, long long lda, const TW* W, long long ldw, int K, const Epilogue& ep,
                   cudaStream_t stream) {
  SimpleArgs<TA, TW, Acc> a{A, lda, W, ldw, K, ep};
  const dim3 grid(static_cast<unsigned>(ceil_div(ep.N, 64)), static_cast<unsigned>(ceil_div(ep.M, 64)));
  gemm_simple_kernel<TA, TW, Acc><<<grid, 256, 0, stream>>>(a);
  PTQ4VM_CUDA_CHECK_LAUNCH("gemm_simple_kernel");
}

void check_extent(const char* fn, int64_t M, int64_t N, int64_t K) {
  require(M >= 0 && N >= 0 && K >= 0, fn, "negative size");
  require(M <= (int64_t(1) << 30) && N <= (int64_t(1) << 30) && K <= (int64_t(1) << 30), fn,
          "size too large");
  require(ceil_div(M, 64) <= 65535, fn, "M too large for the grid (at most 4194240 rows)");
}

// Fills the output part of an Epilogue from Int8GemmOut / F16GemmOut and validates it.
void set_outputs(const char* fn, Epilogue& e, float* f32, int64_t ld_f32, bool accumulate, __half* f16,
                 int64_t ld_f16, uint8_t* u8, int64_t ld_u8, int64_t u8_cols, const QuantParams& q) {
  require(f32 || f16 || u8, fn, "no output given");
  if (f32) require(ld_f32 >= e.N, fn, "ld_f32 < N");
  if (f16) require(ld_f16 >= e.N, fn, "ld_f16 < N");
  if (u8) {
    require(u8_cols >= 0 && u8_cols <= e.N, fn, "u8_cols outside [0, N]");
    require(ld_u8 >= u8_cols, fn, "ld_u8 < u8_cols");
    require(q.period >= 1 && q.inv_scale && q.zero, fn, "u8 output needs quant.period >= 1, inv_scale and zero");
    require(q.qmax >= 1 && q.qmax <= 255, fn, "quant.qmax outside [1, 255]");
  }
  e.f32 = f32;
  e.ld_f32 = ld_f32;
  e.accumulate = accumulate;
  e.f16 = f16;
  e.ld_f16 = ld_f16;
  e.u8 = u8;
  e.ld_u8 = ld_u8;
  e.u8_cols = static_cast<int>(u8_cols);
  e.q_period = static_cast<int>(q.period);
  e.q_inv_smooth = q.inv_smooth;
  e.q_inv_scale = q.inv_scale;
  e.q_zero = q.zero;
  e.qmax = q.qmax;
  e.pair_f32 = f32 && aligned(f32, 8) && ld_f32 % 2 == 0;
  e.pair_f16 = f16 && aligned(f16, 4) && ld_f16 % 2 == 0;
  e.pair_u8 = u8 && aligned(u8, 2) && ld_u8 % 2 == 0;
}

GemmTile resolve_tile(GemmTile tile, int64_t M, int64_t N, const void* A, int64_t lda_bytes, int device) {
  const bool tc_ok = aligned(A, 16) && lda_bytes % 16 == 0 && device_info(device).sm_major >= 8;
  if (!tc_ok) return GemmTile::Simple;
  if (tile == GemmTile::Auto) {
    if (kernel_mode() == KernelMode::Simple) return GemmTile::Simple;
    return choose_gemm_tile(M, N, device);
  }
  return tile;
}

// Runs one GEMM whose A elements are `Op`'s input type, with the epilogue already filled.
template <class Op, class TA, class TW, class Acc>
void run_gemm(const char* fn, int64_t M, const TA* A, int64_t lda, const TW* W, int64_t K, int64_t ldw_elems,
              bool padded_w, Epilogue& ep, cudaStream_t stream, GemmTile tile) {
  if (M == 0 || ep.N == 0) return;
  const int device = current_device();
  const int64_t esz = Op::kElemBytes;
  GemmTile t = padded_w ? resolve_tile(tile, M, ep.N, A, lda * esz, device) : GemmTile::Simple;
  if (t == GemmTile::Simple) {
    launch_simple<TA, TW, Acc>(A, lda, W, ldw_elems, static_cast<int>(K), ep, stream);
    return;
  }
  require(aligned(A, 16) && (lda * esz) % 16 == 0, fn,
          "the tensor-core kernels need A 16-byte aligned and its row stride a multiple of 16 bytes");
  TcArgs a;
  a.A = reinterpret_cast<const unsigned char*>(A);
  a.lda_bytes = lda * esz;
  a.k_bytes = static_cast<int>(K * esz);
  a.W = reinterpret_cast<const unsigned char*>(W);
  a.ldw_bytes = ldw_elems * esz;
  a.k_tiles = static_cast<int>(ceil_div(K * esz, 64));
  a.ep = ep;
  switch (t) {
    case GemmTile::Large: launch_tc<CfgLarge, Op>(a, device, stream); break;
    case GemmTile::Medium: launch_tc<CfgMedium, Op>(a, device, stream); break;
    default: launch_tc<CfgSmall, Op>(a, device, stream); break;
  }
}

template <class Op, class TA>
void int8_gemm(const char* fn, int64_t M, const TA* A, int64_t lda, const Int8Weights& W,
               const Int8Epilogue* ep, const Int8GemmOut* out, int32_t* C, int64_t ldc, cudaStream_t stream,
               GemmTile tile) {
  check_extent(fn, M, W.N, W.K);
  require(lda >= W.K, fn, "lda < K");
  require(M == 0 || W.K == 0 || A, fn, "A is null");
  require(W.data || W.N == 0, fn, "weights not uploaded");
  Epilogue e;
  e.M = static_cast<int>(M);
  e.N = static_cast<int>(W.N);
  e.wsum = W.wsum_ptr();
  if (C) {
    require(ldc >= W.N, fn, "ldc < N");
    e.s32 = C;
    e.ld_s32 = ldc;
    e.pair_s32 = aligned(C, 8) && ldc % 2 == 0;
  } else {
    require(ep->period >= 1 && ep->a_scale && ep->w_scale, fn,
            "epilogue needs period >= 1, a_scale and w_scale");
    if (std::is_same_v<TA, uint8_t>) require(ep->a_zero != nullptr, fn, "u8 activations need a_zero");
    e.period = static_cast<int>(ep->period);
    e.a_scale = ep->a_scale;
    e.a_zero = ep->a_zero;
    e.w_scale = ep->w_scale;
    e.bias = ep->bias;
    set_outputs(fn, e, out->f32, out->ld_f32, ep->accumulate, out->f16, out->ld_f16, out->u8, out->ld_u8,
                out->u8_cols, out->quant);
  }
  run_gemm<Op, TA, int8_t, int32_t>(fn, M, A, lda, W.qw(), W.K, W.k_pad, true, e, stream, tile);
}

}  // namespace

const char* gemm_tile_name(GemmTile t) {
  switch (t) {
    case GemmTile::Auto: return "auto";
    case GemmTile::Large: return "tc128x128";
    case GemmTile::Medium: return "tc128x64";
    case GemmTile::Small: return "tc64x64";
    case GemmTile::Simple: return "simple";
  }
  return "?";
}

GemmTile choose_gemm_tile(int64_t M, int64_t N, int device) {
  const DeviceInfo& d = device_info(device);
  // sm_86/89 have 100 KB of shared memory per SM: the 64 KB Large tile fits only once, so the
  // Medium tile (48 KB, two per SM) is preferred there.
  const bool small_smem = d.sm_major == 8 && d.sm_minor != 0;
  struct Cand {
    GemmTile t;
    int bm, bn;
    double bonus;  // larger tiles reuse operands better
  };
  const Cand cands[] = {{GemmTile::Large, 128, 128, 1.0}, {GemmTile::Medium, 128, 64, 0.95},
                        {GemmTile::Small, 64, 64, 0.85}};
  GemmTile best = GemmTile::Small;
  double best_score = -1;
  for (const Cand& c : cands) {
    if (small_smem && c.t == GemmTile::Large) continue;
    const double mt = static_cast<double>(ceil_div(M, c.bm)), nt = static_cast<double>(ceil_div(N, c.bn));
    const double eff = (double(M) * double(N)) / (mt * c.bm * nt * c.bn);
    const double util = std::min(1.0, mt * nt / d.sm_count);
    const double score = eff * util * c.bonus;
    if (score > best_score) {
      best_score = score;
      best = c.t;
    }
  }
  return best;
}

Int8Weights upload_int8_weights(Context& ctx, int64_t N, int64_t K, const int8_t* qw) {
  const char* fn = "upload_int8_weights";
  require(N >= 1 && K >= 0 && N <= (int64_t(1) << 30) && K <= (int64_t(1) << 30), fn, "bad shape");
  require(K == 0 || qw, fn, "qw is null");
  Int8Weights w;
  w.N = N;
  w.K = K;
  w.n_pad = round_up(N, 128);
  w.k_pad = round_up(std::max<int64_t>(K, 1), 64);
  std::vector<int8_t> packed(static_cast<size_t>(w.n_pad * w.k_pad), 0);
  std::vector<int32_t> wsum(static_cast<size_t>(N), 0);
  for (int64_t n = 0; n < N; ++n) {
    int32_t s = 0;
    for (int64_t k = 0; k < K; ++k) {
      packed[static_cast<size_t>(n * w.k_pad + k)] = qw[n * K + k];
      s += qw[n * K + k];
    }
    wsum[static_cast<size_t>(n)] = s;
  }
  ctx.activate();
  w.data = DeviceBuffer::persistent(packed.size());
  w.wsum = DeviceBuffer::persistent(wsum.size() * sizeof(int32_t));
  ctx.upload(w.data.get(), packed.data(), packed.size());
  ctx.upload(w.wsum.get(), wsum.data(), wsum.size() * sizeof(int32_t));
  // The host vectors die here: make sure the copies have consumed them.
  ctx.synchronize();
  return w;
}

F16Weights upload_f16_weights(Context& ctx, int64_t N, int64_t K, const float* wf) {
  const char* fn = "upload_f16_weights";
  require(N >= 1 && K >= 0 && N <= (int64_t(1) << 30) && K <= (int64_t(1) << 30), fn, "bad shape");
  require(K == 0 || wf, fn, "w is null");
  F16Weights w;
  w.N = N;
  w.K = K;
  w.n_pad = round_up(N, 128);
  w.k_pad = round_up(std::max<int64_t>(K, 1), 32);
  std::vector<__half> packed(static_cast<size_t>(w.n_pad * w.k_pad), __float2half_rn(0.0f));
  for (int64_t n = 0; n < N; ++n)
    for (int64_t k = 0; k < K; ++k)
      packed[static_cast<size_t>(n * w.k_pad + k)] = __float2half_rn(wf[n * K + k]);
  ctx.activate();
  w.data = DeviceBuffer::persistent(packed.size() * sizeof(__half));
  ctx.upload(w.data.get(), packed.data(), packed.size() * sizeof(__half));
  ctx.synchronize();
  return w;
}

void gemm_u8s8(int64_t M, const uint8_t* A, int64_t lda, const Int8Weights& W, const Int8Epilogue& ep,
               const Int8GemmOut& out, cudaStream_t stream, GemmTile tile) {
  int8_gemm<OpU8S8, uint8_t>("gemm_u8s8", M, A, lda, W, &ep, &out, nullptr, 0, stream, tile);
}
void gemm_s8s8(int64_t M, const int8_t* A, int64_t lda, const Int8Weights& W, const Int8Epilogue& ep,
               const Int8GemmOut& out, cudaStream_t stream, GemmTile tile) {
  int8_gemm<OpS8S8, int8_t>("gemm_s8s8", M, A, lda, W, &ep, &out, nullptr, 0, stream, tile);
}
void gemm_u8s8_s32(int64_t M, const uint8_t* A, int64_t lda, const Int8Weights& W, int32_t* C, int64_t ldc,
                   cudaStream_t stream, GemmTile tile) {
  require(M == 0 || C, "gemm_u8s8_s32", "C is null");
  int8_gemm<OpU8S8, uint8_t>("gemm_u8s8_s32", M, A, lda, W, nullptr, nullptr, C, ldc, stream, tile);
}
void gemm_s8s8_s32(int64_t M, const int8_t* A, int64_t lda, const Int8Weights& W, int32_t* C, int64_t ldc,
                   cudaStream_t stream, GemmTile tile) {
  require(M == 0 || C, "gemm_s8s8_s32", "C is null");
  int8_gemm<OpS8S8, int8_t>("gemm_s8s8_s32", M, A, lda, W, nullptr, nullptr, C, ldc, stream, tile);
}

void gemm_f16(int64_t M, const __half* A, int64_t lda, const F16Weights& W, const float* bias,
              const F16GemmOut& out, cudaStream_t stream, GemmTile tile) {
  const char* fn = "gemm_f16";
  check_extent(fn, M, W.N, W.K);
  require(lda >= W.K, fn, "lda < K");
  require(M == 0 || W.K == 0 || A, fn, "A is null");
  Epilogue e;
  e.M = static_cast<int>(M);
  e.N = static_cast<int>(W.N);
  e.bias = bias;
  set_outputs(fn, e, out.f32, out.ld_f32, out.accumulate, out.f16, out.ld_f16, nullptr, 0, 0, QuantParams{});
  run_gemm<OpF16, __half, __half, float>(fn, M, A, lda, W.w(), W.K, W.k_pad, true, e, stream, tile);
}

void gemm_f32_nt(int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, const float* W, int64_t ldw,
                 const float* bias, bool accumulate, float* C, int64_t ldc, cudaStream_t stream) {
  const char* fn = "gemm_f32_nt";
  check_extent(fn, M, N, K);
  require(lda >= K && ldw >= K, fn, "lda or ldw < K");
  require(M == 0 || N == 0 || K == 0 || (A && W), fn, "A or W is null");
  Epilogue e;
  e.M = static_cast<int>(M);
  e.N = static_cast<int>(N);
  e.bias = bias;
  set_outputs(fn, e, C, ldc, accumulate, nullptr, 0, nullptr, 0, 0, QuantParams{});
  run_gemm<OpF16, float, float, float>(fn, M, A, lda, W, K, ldw, false, e, stream, GemmTile::Simple);
}

}  // namespace ptq4vm::cuda
