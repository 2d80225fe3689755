// The scans compiled for AVX-512 VNNI: the same loops as the AVX-512 build (scan_rows.h), with
// dt_proj's products on vpdpbusd (PTQ4VM_SCAN_VNNI_DT_PROJ).
// scan_rows.h brings quantize_rows.h's row loops, which only the other kernels use.
#pragma GCC diagnostic ignored "-Wunused-function"
#include "scan_rows.h"
#include "vector_kernels.h"

namespace ptq4vm::cpu::vnni {

void selective_scan_block(const ScanArgs& a, const float* a2t, int64_t a2t_ld, int64_t b, int64_t e0,
                          float* state, float* dt_wf, const float* dt_codes) {
  static_assert(PTQ4VM_SCAN_VNNI_DT_PROJ, "scan_vnni.cpp must be compiled with AVX-512 VNNI");
  const bool fast = a.math == MathMode::fast;
  if (a.N == 16) {
    if (fast) selective_scan_block_impl<16, true>(a, a2t, a2t_ld, b, e0, state, dt_wf, dt_codes);
    else selective_scan_block_impl<16, false>(a, a2t, a2t_ld, b, e0, state, dt_wf, dt_codes);
  } else {
    if (fast) selective_scan_block_impl<0, true>(a, a2t, a2t_ld, b, e0, state, dt_wf, dt_codes);
    else selective_scan_block_impl<0, false>(a, a2t, a2t_ld, b, e0, state, dt_wf, dt_codes);
  }
}

void selective_scan_bidir_block(const BiScanArgs& a, const float* const a2t[2], int64_t a2t_ld, int64_t b,
                                int64_t e0, float* fwd_buf, float* state, float* dt_wf,
                                const float* const dt_codes[2]) {
  static_assert(PTQ4VM_SCAN_VNNI_DT_PROJ, "scan_vnni.cpp must be compiled with AVX-512 VNNI");
  const bool fast = a.math == MathMode::fast;
  if (a.N == 16) {
    if (fast) selective_scan_bidir_block_impl<16, true>(a, a2t, a2t_ld, b, e0, fwd_buf, state, dt_wf, dt_codes);
    else selective_scan_bidir_block_impl<16, false>(a, a2t, a2t_ld, b, e0, fwd_buf, state, dt_wf, dt_codes);
  } else {
    if (fast) selective_scan_bidir_block_impl<0, true>(a, a2t, a2t_ld, b, e0, fwd_buf, state, dt_wf, dt_codes);
    else selective_scan_bidir_block_impl<0, false>(a, a2t, a2t_ld, b, e0, fwd_buf, state, dt_wf, dt_codes);
  }
}

}  // namespace ptq4vm::cpu::vnni
