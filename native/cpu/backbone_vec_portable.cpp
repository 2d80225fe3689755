// The backbone vector kernels compiled for portable (width-1); see backbone_vec.h.
#include "backbone_rows.h"
#include "backbone_vec.h"

namespace ptq4vm::cpu::scalar {
#include "backbone_vec_entry.inc"
}  // namespace ptq4vm::cpu::scalar
