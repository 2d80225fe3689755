// FP32 GEMM driver: Goto/BLIS blocking (B packed once per K×N block and shared by all threads,
// A packed per thread per MC block, or read in place where the ISA's kernels can), per-ISA
// macro-kernels chosen at run time, threads split the rows (or the columns when there are few
// rows); narrow outputs run as their transpose.
#include "ptq4vm/gemm.h"

#include <algorithm>

#include "gemm_f32_kernels.h"
#include "ptq4vm/runtime.h"
#include "scratch.h"

namespace ptq4vm {
namespace {

struct GemmF32Impl {
  int mr, nr;
  decltype(&cpu::scalar::gemm_f32_pack_a) pack_a;
  decltype(&cpu::scalar::gemm_f32_pack_b) pack_b;
  decltype(&cpu::scalar::gemm_f32_macro) macro;
  // Reads a row-major op(A) / op(B) in place (AVX-512); null: both always packed.
  decltype(&cpu::avx512::gemm_f32_macro_direct) macro_direct = nullptr;
};

int64_t padded(int64_t n, int64_t to) { return (n + to - 1) / to * to; }

#define PTQ4VM_AVX512_IMPL(ns)                                                                       \
  GemmF32Impl { ns::kGemmMR, ns::kGemmNR, ns::gemm_f32_pack_a, ns::gemm_f32_pack_b, ns::gemm_f32_macro, \
                ns::gemm_f32_macro_direct }

// The tile shape that pads N least (ties go to the first listed: 12×32, then 8×48, then 12×16).
GemmF32Impl impl_for(Isa isa, int64_t N) {
  switch (isa) {
    case Isa::Avx512Vnni:
    case Isa::Avx512: {
      const int64_t p32 = padded(N, cpu::avx512::kGemmNR), p48 = padded(N, cpu::avx512::wide::kGemmNR),
                    p16 = padded(N, cpu::avx512::narrow::kGemmNR);
      if (p16 < std::min(p32, p48)) return PTQ4VM_AVX512_IMPL(cpu::avx512::narrow);
      if (p48 < p32) return PTQ4VM_AVX512_IMPL(cpu::avx512::wide);
      return PTQ4VM_AVX512_IMPL(cpu::avx512);
    }
    case Isa::Avx2:
      return {cpu::avx2::kGemmMR, cpu::avx2::kGemmNR, cpu::avx2::gemm_f32_pack_a,
              cpu::avx2::gemm_f32_pack_b, cpu::avx2::gemm_f32_macro};
    case Isa::Scalar:
      break;
  }
  return {cpu::scalar::kGemmMR, cpu::scalar::kGemmNR, cpu::scalar::gemm_f32_pack_a,
          cpu::scalar::gemm_f32_pack_b, cpu::scalar::gemm_f32_macro};
}

// Blocking. K up to kMaxKc runs as one block (the Vim shapes have K ≤ 384, so C is written
// once); longer K splits into near-equal blocks. An A block (MC × KC) targets half of L2.
constexpr int64_t kMaxKc = 384;
constexpr int64_t kMaxNc = 3072;
constexpr int64_t kABlockBytes = 384 * 1024;
constexpr int64_t kTasksPerThread = 4;
// Below this many multiply-adds a GEMM runs on the calling thread only.
constexpr int64_t kMinParallelMacs = 1 << 16;

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Fraction of a micro-tile's lanes doing useful work over a dimension of n, tiled by t.
double tile_use(int64_t n, int64_t t) { return double(n) / double(padded(n, t)); }

// How a product is run: the tile shape, and whether op(A) / op(B) are read in place.
struct GemmPlan {
  GemmF32Impl impl;
  bool direct_a, direct_b;
  double cost;  // estimated cycles of one core
};

// Reads op(A) in place when it is row-major and the output narrow: packing costs about half a
// cycle per element, against N/16 multiply-adds per element (x_proj's N = 38..56); for wider
// outputs the packed panels run a few percent faster.
constexpr int64_t kDirectAMaxN = 64;
// Reads op(B) in place when it is row-major and one row tile uses it (read once: packing would
// only add a copy; with more, the strided re-reads cost more than the packing, TLB misses).
constexpr int64_t kDirectBMaxRowTiles = 1;

// A rough cycle count for C[M, N] = op(A)·op(B) on one core (Zen 4 measurements): one zmm
// multiply-add per cycle over the padded tiles, plus packing (about a quarter cycle per float
// copied, half a cycle per float transposed) of what is not read in place.
GemmPlan plan_for(Isa isa, bool transA, bool transB, int64_t M, int64_t N, int64_t K) {
  GemmPlan p{impl_for(isa, N), false, false, 0.0};
  const bool direct = p.impl.macro_direct != nullptr;
  p.direct_a = direct && !transA && N <= kDirectAMaxN;
  p.direct_b = direct && !transB && ceil_div(M, p.impl.mr) <= kDirectBMaxRowTiles;
  const double mk = double(M) * double(K), nk = double(N) * double(K);
  p.cost = mk * double(N) / 16.0 / (tile_use(M, p.impl.mr) * tile_use(N, p.impl.nr));
  if (!p.direct_a) p.cost += transA ? 0.25 * mk : 0.5 * mk;
  if (!p.direct_b) p.cost += transB ? 0.5 * nk : 0.25 * nk;
  return p;
}

// C[i, j] = ct[j, i] (+ bias[j]) (+ C[i, j]), rows split across threads in cache-sized tiles.
void transpose_into(int64_t M, int64_t N, const float* ct, const float* bias, bool accumulate, float* C,
                    int64_t ldc) {
  constexpr int64_t kRows = 64;
  parallel_for(ceil_div(M, kRows), std::max<int64_t>(1, 4096 / (kRows * N)), [&](int64_t b0, int64_t b1) {
    for (int64_t i0 = b0 * kRows; i0 < std::min(M, b1 * kRows); i0 += kRows) {
      const int64_t i1 = std::min(M, i0 + kRows);
      for (int64_t j = 0; j < N; ++j) {
        const float* src = ct + j * M;
        const float b = bias ? bias[j] : 0.0f;
        for (int64_t i = i0; i < i1; ++i) {
          float* c = C + i * ldc + j;
          *c = accumulate ? *c + (src[i] + b) : src[i] + b;
        }
      }
    }
  });
}

void write_bias_only(int64_t M, int64_t N, const float* bias, bool accumulate, float* C, int64_t ldc) {
  for (int64_t i = 0; i < M; ++i) {
    float* row = C + i * ldc;
    for (int64_t j = 0; j < N; ++j) {
      const float b = bias ? bias[j] : 0.0f;
      row[j] = accumulate ? row[j] + b : b;
    }
  }
}

}  // namespace

void gemm_f32(bool transA, bool transB, int64_t M, int64_t N, int64_t K, const float* A, int64_t lda,
              const float* B, int64_t ldb, const float* bias, bool accumulate, float* C, int64_t ldc) {
  if (M <= 0 || N <= 0) return;
  if (K <= 0) {
    write_bias_only(M, N, bias, accumulate, C, ldc);
    return;
  }
  const GemmPlan plan = plan_for(active_isa(), transA, transB, M, N, K);
  // The transposed problem Cᵀ = op(B)ᵀ·op(A)ᵀ, when it is clearly cheaper (then transposed
  // into C): a narrow N (dt_proj's backward dW, N = dt_rank) fills few lanes of the tiles but
  // only pads to MR rows once it is the transposed problem's M.
  if (K >= 32 && M >= 64) {
    const GemmPlan swapped = plan_for(active_isa(), !transB, !transA, N, M, K);
    if (swapped.cost + 2.0 * double(M) * double(N) < 0.85 * plan.cost) {
      float* ct = cpu::thread_scratch_as<float>(cpu::ScratchSlot::GemmTransposedC, size_t(M * N));
      gemm_f32(!transB, !transA, N, M, K, B, ldb, A, lda, nullptr, false, ct, M);
      transpose_into(M, N, ct, bias, accumulate, C, ldc);
      return;
    }
  }
  const GemmF32Impl& impl = plan.impl;
  const int64_t mr = impl.mr, nr = impl.nr;
  const int64_t k_blocks = ceil_div(K, kMaxKc);
  const int64_t kc_max = ceil_div(K, k_blocks);
  const int64_t n_blocks = ceil_div(N, kMaxNc);
  const int64_t nc_max = ceil_div(ceil_div(N, n_blocks), nr) * nr;
  const int64_t mc_max = std::max<int64_t>(mr, kABlockBytes / (kc_max * 4) / mr * mr);

  const bool parallel = M * N * K >= kMinParallelMacs;
  const int64_t threads = parallel ? num_threads() : 1;
  float* bp = cpu::thread_scratch_as<float>(cpu::ScratchSlot::GemmPackedB, size_t(kc_max * nc_max));

  for (int64_t jc = 0; jc < N; jc += nc_max) {
    const int64_t nc = std::min(nc_max, N - jc);
    const int64_t n_panels = ceil_div(nc, nr);
    for (int64_t pc = 0; pc < K; pc += kc_max) {
      const int64_t kc = std::min(kc_max, K - pc);
      const bool first_k = pc == 0;

      // Pack op(B)[pc:pc+kc, jc:jc+nc] once, panels split across threads (unless read in place).
      const int64_t pack_grain = parallel ? std::max<int64_t>(1, 16384 / (nr * kc)) : n_panels;
      if (!plan.direct_b) {
        parallel_for(n_panels, pack_grain, [&](int64_t p0, int64_t p1) {
          const int64_t j0 = p0 * nr, cols = std::min(p1 * nr, nc) - j0;
          const float* src = transB ? B + (jc + j0) * ldb + pc : B + pc * ldb + jc + j0;
          impl.pack_b(transB, kc, cols, src, ldb, bp + j0 * kc);
        });
      }

      // Tasks: a grid of row ranges × panel ranges, a few per thread (the pool hands them out
      // dynamically), each with at least 4 micro-tile rows.
      const int64_t m_tiles = ceil_div(M, mr);
      int64_t m_split = std::max<int64_t>(1, std::min(kTasksPerThread * threads, m_tiles / 4));
      int64_t n_split = 1;
      if (m_split < threads) n_split = std::min(n_panels, ceil_div(threads, m_split));
      parallel_for(m_split * n_split, 1, [&](int64_t t0, int64_t t1) {
        float* ap = cpu::thread_scratch_as<float>(cpu::ScratchSlot::GemmPackedA, size_t(mc_max * kc));
        for (int64_t t = t0; t < t1; ++t) {
          const int64_t tm = t / n_split, tn = t % n_split;
          const int64_t row0 = m_tiles * tm / m_split * mr;
          const int64_t row1 = std::min(M, m_tiles * (tm + 1) / m_split * mr);
          const int64_t col0 = n_panels * tn / n_split * nr;
          const int64_t col1 = std::min(nc, n_panels * (tn + 1) / n_split * nr);
          if (row0 >= row1 || col0 >= col1) continue;
          for (int64_t ic = row0; ic < row1; ic += mc_max) {
            const int64_t mc = std::min(mc_max, row1 - ic);
            const float* src = transA ? A + pc * lda + ic : A + ic * lda + pc;
            float* c = C + ic * ldc + jc + col0;
            const float* bias_block = first_k && bias ? bias + jc + col0 : nullptr;
            if (plan.direct_a || plan.direct_b) {
              if (!plan.direct_a) impl.pack_a(transA, mc, kc, src, lda, ap);
              const float* b_block = plan.direct_b ? B + pc * ldb + jc + col0 : bp + col0 * kc;
              impl.macro_direct(mc, col1 - col0, kc, plan.direct_a ? src : ap, lda, plan.direct_a, b_block, ldb,
                                plan.direct_b, c, ldc, bias_block, accumulate || !first_k);
              continue;
            }
            impl.pack_a(transA, mc, kc, src, lda, ap);
            impl.macro(mc, col1 - col0, kc, ap, bp + col0 * kc, c, ldc, bias_block, accumulate || !first_k);
          }
        }
      });
    }
  }
}

void gemm_f32_ref(bool transA, bool transB, int64_t M, int64_t N, int64_t K, const float* A,
                  int64_t lda, const float* B, int64_t ldb, const float* bias, bool accumulate,
                  float* C, int64_t ldc) {
  for (int64_t i = 0; i < M; ++i) {
    for (int64_t j = 0; j < N; ++j) {
      double s = 0;
      for (int64_t k = 0; k < K; ++k) {
        const double a = transA ? A[k * lda + i] : A[i * lda + k];
        const double b = transB ? B[j * ldb + k] : B[k * ldb + j];
        s += a * b;
      }
      if (bias) s += bias[j];
      if (accumulate) s += C[i * ldc + j];
      C[i * ldc + j] = float(s);
    }
  }
}

}  // namespace ptq4vm
