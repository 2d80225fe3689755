// Index maps of the tensor-core GEMM tiles, host- and device-callable so that a host test
// (native/test/cuda/test_gemm_tile_sim.cu) can replay the kernel's data movement (loader,
// swizzle, ldmatrix addresses, MMA fragments, epilogue coordinates) without a GPU.
//
// A K-tile is 64 bytes of every row: shared-memory rows are 64 bytes = four 16-byte chunks.
// Chunk c of row r is stored at chunk c ^ ((r >> 1) & 3): the eight rows one ldmatrix 8x8
// matrix reads then fall into eight different 16-byte bank groups (4·(r & 1) + chunk').
#pragma once
#include <cstdint>

#if defined(__CUDACC__)
#define PTQ4VM_HD __host__ __device__ __forceinline__
#else
#define PTQ4VM_HD inline
#endif

namespace ptq4vm::cuda::tile {

constexpr int kRowBytes = 64;

// Block tile BM × BN, warp tile WM × WN (the warps of a block cover the block tile).
struct Shape {
  int bm, bn, wm, wn;
};
constexpr Shape kLarge{128, 128, 64, 32};   // 8 warps
constexpr Shape kMedium{128, 64, 64, 32};   // 4 warps
constexpr Shape kSmall{64, 64, 32, 32};     // 4 warps
constexpr int kStages = 4;

PTQ4VM_HD uint32_t swizzle(int row, int chunk) {
  return static_cast<uint32_t>(row * kRowBytes + ((chunk ^ ((row >> 1) & 3)) << 4));
}

// Loader: copy i of thread tid moves 16-byte chunk `chunk` of tile row `row`.
PTQ4VM_HD int load_row(int tid, int i, int threads) { return (tid + i * threads) >> 2; }
PTQ4VM_HD int load_chunk(int tid, int i, int threads) { return (tid + i * threads) & 3; }
// Bytes of an A chunk that exist (the rest is zero-filled): rows past M and bytes past K are 0.
PTQ4VM_HD int a_chunk_bytes(int m, int M, int k_bytes, int k_tile_byte0, int chunk) {
  const int rem = k_bytes - k_tile_byte0 - chunk * 16;
  return m < M ? (rem < 0 ? 0 : (rem > 16 ? 16 : rem)) : 0;
}

// ldmatrix.x4 for an A fragment (16 rows × 32 bytes at k-step ks): lanes 8j..8j+7 address
// matrix j = {rows 0-7, chunk 0}, {rows 8-15, chunk 0}, {rows 0-7, chunk 1}, {rows 8-15, chunk 1},
// which is the register order a0..a3 of mma.m16n8k32 (and of m16n8k16 for fp16).
PTQ4VM_HD int ldsm_a_row(int lane, int row0) { return row0 + (lane & 7) + ((lane >> 3) & 1) * 8; }
PTQ4VM_HD int ldsm_a_chunk(int lane, int ks) { return ks * 2 + (lane >> 4); }
// ldmatrix.x4 for two B fragments (n rows row0..row0+15 of the [n][k] weight tile): matrices
// {n 0-7, chunk 0} = b0 of tile 0, {n 0-7, chunk 1} = b1 of tile 0, {n 8-15, chunk 0} = b0 of
// tile 1, {n 8-15, chunk 1} = b1 of tile 1.
PTQ4VM_HD int ldsm_b_row(int lane, int row0) { return row0 + (lane & 7) + (lane >> 4) * 8; }
PTQ4VM_HD int ldsm_b_chunk(int lane, int ks) { return ks * 2 + ((lane >> 3) & 1); }

// Accumulator register i (0..3) of a lane: row g (+8 for i >= 2), column 2·(lane % 4) + (i & 1).
PTQ4VM_HD int acc_row(int lane, int i) { return (lane >> 2) + (i >> 1) * 8; }
PTQ4VM_HD int acc_col(int lane, int i) { return 2 * (lane & 3) + (i & 1); }

}  // namespace ptq4vm::cuda::tile
