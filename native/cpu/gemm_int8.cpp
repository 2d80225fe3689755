// INT8 GEMM driver: weight packing (layout in gemm_int8_kernels.h), threading over row ×
// column blocks, per-ISA block kernels, and the scalar references.
#include "ptq4vm/gemm_int8.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <new>

#include "gemm_int8_kernels.h"
#include "ptq4vm/runtime.h"

namespace ptq4vm {

struct PackedInt8Weights {
  cpu::Int8PackedView view;
  void* storage = nullptr;  // data and wsum, one 64-byte aligned allocation
  ~PackedInt8Weights() { std::free(storage); }
};

void PackedInt8WeightsDeleter::operator()(PackedInt8Weights* w) const { delete w; }

PackedInt8WeightsPtr pack_int8_weights(int64_t N, int64_t K, const int8_t* qw) {
  using cpu::kInt8GroupBytes;
  using cpu::kInt8PanelCols;
  PackedInt8WeightsPtr w(new PackedInt8Weights);
  cpu::Int8PackedView& v = w->view;
  v.N = std::max<int64_t>(N, 0);
  v.K = std::max<int64_t>(K, 0);
  v.K4 = (v.K + 3) / 4;
  v.panels = (v.N + kInt8PanelCols - 1) / kInt8PanelCols;
  const size_t data_bytes = size_t(v.panels * v.K4 * kInt8GroupBytes);
  const size_t wsum_bytes = size_t(v.panels * kInt8PanelCols) * sizeof(int32_t);
  const size_t total = (data_bytes + wsum_bytes + 63) / 64 * 64 + 64;
  w->storage = std::aligned_alloc(64, total);
  if (!w->storage) throw std::bad_alloc();
  std::memset(w->storage, 0, total);
  auto* data = static_cast<int8_t*>(w->storage);
  auto* wsum = reinterpret_cast<int32_t*>(data + (data_bytes + 63) / 64 * 64);
  for (int64_t n = 0; n < v.N; ++n) {
    const int64_t panel = n / kInt8PanelCols, col = n % kInt8PanelCols;
    int8_t* dst = data + panel * v.K4 * kInt8GroupBytes + col * 4;
    int32_t sum = 0;
    for (int64_t k = 0; k < v.K; ++k) {
      const int8_t q = qw[n * v.K + k];
      dst[(k / 4) * kInt8GroupBytes + k % 4] = q;
      sum += q;
    }
    wsum[n] = sum;
  }
  v.data = data;
  v.wsum = wsum;
  return w;
}

const int32_t* packed_int8_wsum(const PackedInt8Weights& w) { return w.view.wsum; }
int64_t packed_int8_n(const PackedInt8Weights& w) { return w.view.N; }
int64_t packed_int8_k(const PackedInt8Weights& w) { return w.view.K; }

namespace {

using BlockFn = decltype(&cpu::scalar::gemm_u8s8_block);

BlockFn block_fn_for(Isa isa) {
  switch (isa) {
    case Isa::Avx512Vnni: return cpu::vnni::gemm_u8s8_block;
    case Isa::Avx512:  // without VNNI the AVX2 widening kernel is the exact path
    case Isa::Avx2: return cpu::avx2::gemm_u8s8_block;
    case Isa::Scalar: break;
  }
  return cpu::scalar::gemm_u8s8_block;
}

void run_blocks(int64_t M, const uint8_t* A, int64_t lda, const PackedInt8Weights& W, const Int8Epilogue* ep,
                float* c_f32, int32_t* c_s32, int64_t ldc) {
  const cpu::Int8PackedView& v = W.view;
  if (M <= 0 || v.N <= 0) return;
  const BlockFn fn = block_fn_for(active_isa());
  constexpr int64_t kRowTile = 8;   // the widest ISA's tile height
  constexpr int64_t kPanelTile = 3;
  const int64_t threads = M * v.N * std::max<int64_t>(v.K, 1) >= (1 << 17) ? num_threads() : 1;
  const int64_t row_tiles = (M + kRowTile - 1) / kRowTile;
  const int64_t col_tiles = (v.panels + kPanelTile - 1) / kPanelTile;
  // Split rows first (every task then reads all weights, from L2), a few tasks per thread for
  // the pool's dynamic hand-out; columns too when there are too few rows for the threads.
  int64_t m_split = std::max<int64_t>(1, std::min(4 * threads, row_tiles / 4)), n_split = 1;
  if (m_split < threads) n_split = std::min(col_tiles, (threads + m_split - 1) / m_split);
  parallel_for(m_split * n_split, 1, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t tm = t / n_split, tn = t % n_split;
      const int64_t r0 = row_tiles * tm / m_split * kRowTile;
      const int64_t r1 = std::min(M, row_tiles * (tm + 1) / m_split * kRowTile);
      const int64_t p0 = col_tiles * tn / n_split * kPanelTile;
      const int64_t p1 = std::min(v.panels, col_tiles * (tn + 1) / n_split * kPanelTile);
      if (r0 < r1 && p0 < p1) fn(r0, r1, p0, p1, A, lda, v, ep, c_f32, c_s32, ldc);
    }
  });
}

}  // namespace

void gemm_u8s8_f32(int64_t M, int64_t N, int64_t K, const uint8_t* A, int64_t lda,
                   const PackedInt8Weights& W, const Int8Epilogue& ep, float* C, int64_t ldc) {
  run_blocks(M, A, lda, W, &ep, C, nullptr, ldc);
}

void gemm_u8s8_s32(int64_t M, int64_t N, int64_t K, const uint8_t* A, int64_t lda,
                   const PackedInt8Weights& W, int32_t* C, int64_t ldc) {
  run_blocks(M, A, lda, W, nullptr, nullptr, C, ldc);
}

void gemm_u8s8_s32_ref(int64_t M, int64_t N, int64_t K, const uint8_t* A, int64_t lda,
                       const int8_t* qw, int32_t* C, int64_t ldc) {
  for (int64_t m = 0; m < M; ++m)
    for (int64_t n = 0; n < N; ++n) {
      int32_t acc = 0;
      for (int64_t k = 0; k < K; ++k) acc += int32_t(A[m * lda + k]) * int32_t(qw[n * K + k]);
      C[m * ldc + n] = acc;
    }
}

void gemm_u8s8_f32_ref(int64_t M, int64_t N, int64_t K, const uint8_t* A, int64_t lda,
                       const int8_t* qw, const Int8Epilogue& ep, float* C, int64_t ldc) {
  for (int64_t n = 0; n < N; ++n) {
    int32_t wsum = 0;
    for (int64_t k = 0; k < K; ++k) wsum += qw[n * K + k];
    for (int64_t m = 0; m < M; ++m) {
      int32_t acc = 0;
      for (int64_t k = 0; k < K; ++k) acc += int32_t(A[m * lda + k]) * int32_t(qw[n * K + k]);
      const int64_t p = m % ep.period;
      const float y = cpu::int8_epilogue_value(acc, ep.a_zero[p], wsum, ep.a_scale[p], ep.w_scale[n],
                                               ep.bias ? ep.bias[n] : 0.0f);
      C[m * ldc + n] = ep.accumulate ? C[m * ldc + n] + y : y;
    }
  }
}

}  // namespace ptq4vm
