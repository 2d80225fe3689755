// The backbone vector kernels compiled for AVX-512 (16 lanes); see backbone_vec.h.
#include "backbone_rows.h"
#include "backbone_vec.h"

namespace ptq4vm::cpu::avx512 {
#include "backbone_vec_entry.inc"
}  // namespace ptq4vm::cpu::avx512
