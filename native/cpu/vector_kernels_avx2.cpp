// The FP32 vector kernels compiled for AVX2 + FMA (8 lanes); see vector_kernels.h.
#include "conv1d_rows.h"
#include "norm_rows.h"
#include "quantize_rows.h"
#include "scan_rows.h"
#include "vector_kernels.h"

namespace ptq4vm::cpu::avx2 {
#include "vector_kernels_entry.inc"
}  // namespace ptq4vm::cpu::avx2
