// Tile loop of the INT8 GEMM shared by the ISA files: walks a block of rows × panels in tiles
// of MR rows × up to 3 panels and calls the ISA's tile kernel. Rows past M are never touched:
// a short tile repeats its last valid row pointer and stores only the valid rows.
#pragma once
#include <cstdint>
#include <cstring>

#include "gemm_int8_kernels.h"

namespace ptq4vm::cpu {
namespace {

// The four A bytes of k-group g of a row; bytes at or past K read as 0 (never past the row).
inline int32_t load_a_group(const uint8_t* row, int64_t g, int64_t K) {
  int32_t v = 0;
  const int64_t k0 = 4 * g;
  std::memcpy(&v, row + k0, size_t(K - k0 >= 4 ? 4 : K - k0));
  return v;
}

// Per-row epilogue parameters of row m.
struct RowParams {
  int32_t zero;
  float scale;
};
inline RowParams row_params(const Int8Epilogue& ep, int64_t m) {
  const int64_t p = ep.period > 1 ? m % ep.period : 0;
  return {ep.a_zero[p], ep.a_scale[p]};
}

}  // namespace
}  // namespace ptq4vm::cpu
