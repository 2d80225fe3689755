// How a kernel of the quantized path evaluates its transcendental functions.
#pragma once

namespace ptq4vm {

// exact: ≤ 3 ulp each (the FP32 path; the FP32 model matches its PyTorch reference to 1e-4).
// fast:  relative error ≤ 1.1e-4 each (AVX-512 builds; the others compute `exact`), for the
//        quantized path, where the value is rounded to 8 bits per token soon after: the
//        bidirectional scan's softplus(Δ + bias), SiLU(z) and decays exp(dt·A) (scan_bidir.h),
//        and the SiLU of the causal conv1d feeding it (conv1d.h). See simd.h ("Reduced-precision
//        math") and docs/design.md (numerics) for the bound.
enum class MathMode { exact, fast };

}  // namespace ptq4vm
