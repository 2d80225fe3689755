// Host replay of one K-tile of the tensor-core GEMM (runs without a GPU): the loader with
// zero fill, the shared-memory swizzle, the ldmatrix.x4 addresses and what each lane receives,
// the mma.m16n8k32 fragment definitions of the PTX ISA, and the epilogue coordinates, all
// through the kernel's own index maps (native/cuda/gemm_tile.cuh). Checks the product against
// a scalar one, that every output is written once, and that every ldmatrix phase is free of
// shared-memory bank conflicts.
#include <cstring>
#include <set>
#include <vector>

#include "../../cuda/gemm_tile.cuh"
#include "harness.h"

namespace {

using namespace ptq4vm::cuda;
using ptq4vm::test::Rng;

struct Sim {
  tile::Shape s;
  int M, k_bytes;  // valid rows of the A tile and valid bytes of its K-tile
  std::vector<uint8_t> A, W;        // [bm][64], [bn][64] (global tiles)
  std::vector<uint8_t> sA, sB;      // shared memory images
};

// The 4 bytes lane `lane` receives from matrix j of an ldmatrix.x4 whose row addresses came
// from lanes 8j..8j+7.
uint32_t ldsm_receive(const std::vector<uint8_t>& smem, const uint32_t (&addr)[32], int j, int lane) {
  const uint32_t row_addr = addr[8 * j + lane / 4];
  uint32_t v;
  std::memcpy(&v, &smem[row_addr + 4 * (lane % 4)], 4);
  return v;
}

void check_conflict_free(const uint32_t (&addr)[32]) {
  for (int j = 0; j < 4; ++j) {
    std::set<uint32_t> groups;
    for (int r = 0; r < 8; ++r) groups.insert((addr[8 * j + r] / 16) % 8);
    CHECK_MSG(groups.size() == 8, "ldmatrix phase " << j << " has a bank conflict");
  }
}

void run_sim(const tile::Shape& s, int M, int k_bytes, uint64_t seed) {
  Rng rng(seed);
  const int warps_m = s.bm / s.wm, warps_n = s.bn / s.wn, threads = 32 * warps_m * warps_n;
  const int MT = s.wm / 16, NT = s.wn / 8;
  std::vector<uint8_t> A(s.bm * 64), W(s.bn * 64);
  for (auto& x : A) x = static_cast<uint8_t>(rng.integer(0, 255));
  for (auto& x : W) x = static_cast<uint8_t>(rng.integer(0, 255));
  std::vector<uint8_t> sA(s.bm * 64, 0xCD), sB(s.bn * 64, 0xCD);
  std::vector<int> coverA(s.bm * 4, 0), coverB(s.bn * 4, 0);

  // Loader (cp.async with zero fill).
  CHECK((s.bm * 4) % threads == 0 && (s.bn * 4) % threads == 0);
  for (int tid = 0; tid < threads; ++tid) {
    for (int i = 0; i < s.bm * 4 / threads; ++i) {
      const int row = tile::load_row(tid, i, threads), c = tile::load_chunk(tid, i, threads);
      CHECK(row < s.bm);
      ++coverA[row * 4 + c];
      const int bytes = tile::a_chunk_bytes(row, M, k_bytes, 0, c);
      const uint32_t dst = tile::swizzle(row, c);
      CHECK(dst % 16 == 0 && dst + 16 <= sA.size());
      for (int b = 0; b < 16; ++b) sA[dst + b] = b < bytes ? A[row * 64 + c * 16 + b] : 0;
    }
    for (int i = 0; i < s.bn * 4 / threads; ++i) {
      const int row = tile::load_row(tid, i, threads), c = tile::load_chunk(tid, i, threads);
      CHECK(row < s.bn);
      ++coverB[row * 4 + c];
      const uint32_t dst = tile::swizzle(row, c);
      for (int b = 0; b < 16; ++b) sB[dst + b] = W[row * 64 + c * 16 + b];
    }
  }
  for (int v : coverA) CHECK_MSG(v == 1, "A loader covers a chunk " << v << " times");
  for (int v : coverB) CHECK_MSG(v == 1, "B loader covers a chunk " << v << " times");

  std::vector<int> written(s.bm * s.bn, 0);
  for (int warp = 0; warp < warps_m * warps_n; ++warp) {
    const int warp_m = warp / warps_n, warp_n = warp % warps_n;
    // acc[lane][mt][nt][i]
    std::vector<int32_t> acc(32 * MT * NT * 4, 0);
    auto accr = [&](int lane, int mt, int nt, int i) -> int32_t& { return acc[((lane * MT + mt) * NT + nt) * 4 + i]; };
    for (int ks = 0; ks < 2; ++ks) {
      std::vector<uint32_t> a(32 * MT * 4), b(32 * NT * 2);
      for (int mt = 0; mt < MT; ++mt) {
        uint32_t addr[32];
        for (int lane = 0; lane < 32; ++lane)
          addr[lane] = tile::swizzle(tile::ldsm_a_row(lane, warp_m * s.wm + mt * 16), tile::ldsm_a_chunk(lane, ks));
        check_conflict_free(addr);
        for (int lane = 0; lane < 32; ++lane)
          for (int j = 0; j < 4; ++j) a[(lane * MT + mt) * 4 + j] = ldsm_receive(sA, addr, j, lane);
      }
      for (int np = 0; np < NT / 2; ++np) {
        uint32_t addr[32];
        for (int lane = 0; lane < 32; ++lane)
          addr[lane] = tile::swizzle(tile::ldsm_b_row(lane, warp_n * s.wn + np * 16), tile::ldsm_b_chunk(lane, ks));
        check_conflict_free(addr);
        for (int lane = 0; lane < 32; ++lane) {
          b[(lane * NT + 2 * np) * 2 + 0] = ldsm_receive(sB, addr, 0, lane);
          b[(lane * NT + 2 * np) * 2 + 1] = ldsm_receive(sB, addr, 1, lane);
          b[(lane * NT + 2 * np + 1) * 2 + 0] = ldsm_receive(sB, addr, 2, lane);
          b[(lane * NT + 2 * np + 1) * 2 + 1] = ldsm_receive(sB, addr, 3, lane);
        }
      }
      // mma.m16n8k32.row.col (u8 × s8), fragments as the PTX ISA defines them:
      //   A: reg i, byte q of lane -> row g + 8·(i & 1), col 4·t + q + 16·(i >> 1)
      //   B: reg i, byte q of lane -> k 4·t + q + 16·i, n g
      //   D: reg i of lane -> row g + 8·(i >> 1), col 2·t + (i & 1)
      for (int mt = 0; mt < MT; ++mt)
        for (int nt = 0; nt < NT; ++nt) {
          int Am[16][32], Bm[32][8];
          for (int lane = 0; lane < 32; ++lane) {
            const int g = lane >> 2, t = lane & 3;
            for (int i = 0; i < 4; ++i)
              for (int q = 0; q < 4; ++q)
                Am[g + 8 * (i & 1)][4 * t + q + 16 * (i >> 1)] = (a[(lane * MT + mt) * 4 + i] >> (8 * q)) & 0xff;
            for (int i = 0; i < 2; ++i)
              for (int q = 0; q < 4; ++q)
                Bm[4 * t + q + 16 * i][g] = static_cast<int8_t>((b[(lane * NT + nt) * 2 + i] >> (8 * q)) & 0xff);
          }
          for (int lane = 0; lane < 32; ++lane) {
            const int g = lane >> 2, t = lane & 3;
            for (int i = 0; i < 4; ++i) {
              const int r = g + 8 * (i >> 1), c = 2 * t + (i & 1);
              int32_t d = 0;
              for (int k = 0; k < 32; ++k) d += Am[r][k] * Bm[k][c];
              accr(lane, mt, nt, i) += d;
            }
          }
        }
    }
    // Epilogue coordinates, as the kernel computes them.
    for (int lane = 0; lane < 32; ++lane)
      for (int mt = 0; mt < MT; ++mt)
        for (int half = 0; half < 2; ++half) {
          const int m = warp_m * s.wm + mt * 16 + tile::acc_row(lane, 2 * half);
          for (int nt = 0; nt < NT; ++nt)
            for (int j = 0; j < 2; ++j) {
              const int n = warp_n * s.wn + nt * 8 + tile::acc_col(lane, 0) + j;
              CHECK(tile::acc_col(lane, j) == tile::acc_col(lane, 0) + j);
              CHECK(m < s.bm && n < s.bn);
              ++written[m * s.bn + n];
              int32_t want = 0;
              if (m < M)
                for (int k = 0; k < k_bytes; ++k) want += int(A[m * 64 + k]) * int(static_cast<int8_t>(W[n * 64 + k]));
              const int32_t got = accr(lane, mt, nt, 2 * half + j);
              CHECK_MSG(got == want, "shape " << s.bm << "x" << s.bn << " M=" << M << " kbytes=" << k_bytes
                                              << ": C[" << m << "," << n << "] = " << got << ", want " << want);
            }
        }
  }
  for (int v : written) CHECK_MSG(v == 1, "an output is written " << v << " times");
}

}  // namespace

TEST_CASE("gemm tile: host replay of loader, swizzle, ldmatrix, mma fragments and epilogue (no GPU needed)") {
  const tile::Shape shapes[] = {tile::kLarge, tile::kMedium, tile::kSmall};
  uint64_t seed = 11;
  for (const auto& s : shapes) {
    run_sim(s, s.bm, 64, seed++);      // full tile
    run_sim(s, s.bm - 5, 37, seed++);  // ragged rows and a K tail inside the third chunk
    run_sim(s, 1, 16, seed++);         // one row, one chunk
  }
}

TEST_CASE("gemm tile: swizzle is a bijection on each 64-byte row") {
  for (int row = 0; row < 128; ++row) {
    std::set<uint32_t> seen;
    for (int c = 0; c < 4; ++c) {
      const uint32_t a = tile::swizzle(row, c);
      CHECK(a >= uint32_t(row * 64) && a < uint32_t(row * 64 + 64) && a % 16 == 0);
      seen.insert(a);
    }
    CHECK(seen.size() == 4);
  }
}
