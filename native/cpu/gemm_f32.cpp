// FP32 GEMM driver: Goto/BLIS blocking (B packed once per K×N block and shared by all threads,
// A packed per thread per MC block), per-ISA macro-kernels chosen at run time, threads split
// the rows (or the columns when there are few rows).
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
};

int64_t padded(int64_t n, int64_t to) { return (n + to - 1) / to * to; }

GemmF32Impl impl_for(Isa isa, int64_t N) {
  switch (isa) {
    case Isa::Avx512Vnni:
    case Isa::Avx512:
      if (padded(N, cpu::avx512::wide::kGemmNR) < padded(N, cpu::avx512::kGemmNR)) {
        return {cpu::avx512::wide::kGemmMR, cpu::avx512::wide::kGemmNR, cpu::avx512::wide::gemm_f32_pack_a,
                cpu::avx512::wide::gemm_f32_pack_b, cpu::avx512::wide::gemm_f32_macro};
      }
      return {cpu::avx512::kGemmMR, cpu::avx512::kGemmNR, cpu::avx512::gemm_f32_pack_a,
              cpu::avx512::gemm_f32_pack_b, cpu::avx512::gemm_f32_macro};
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
  const GemmF32Impl impl = impl_for(active_isa(), N);
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

      // Pack op(B)[pc:pc+kc, jc:jc+nc] once, panels split across threads.
      const int64_t pack_grain = parallel ? std::max<int64_t>(1, 16384 / (nr * kc)) : n_panels;
      parallel_for(n_panels, pack_grain, [&](int64_t p0, int64_t p1) {
        const int64_t j0 = p0 * nr, cols = std::min(p1 * nr, nc) - j0;
        const float* src = transB ? B + (jc + j0) * ldb + pc : B + pc * ldb + jc + j0;
        impl.pack_b(transB, kc, cols, src, ldb, bp + j0 * kc);
      });

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
            impl.pack_a(transA, mc, kc, src, lda, ap);
            impl.macro(mc, col1 - col0, kc, ap, bp + col0 * kc, C + ic * ldc + jc + col0, ldc,
                       first_k && bias ? bias + jc + col0 : nullptr, accumulate || !first_k);
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
