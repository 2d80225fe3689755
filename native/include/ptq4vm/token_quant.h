// The per-token activation quantizer the fused CPU ops apply to their output (the formula of
// quantize.h): for row r and column j, with p = r % period,
//   q[r,j] = clamp(round_half_even((x[r,j] · inv_smooth[j]) · inv_scale[p]) + zero[p], 0, qmax)
// Each element needs only its own row's parameters, so a kernel working on a block of
// channels quantizes its block without seeing the whole row (per-token static / per-tensor;
// per-token dynamic parameters need the finished row: write fp32 and use quantize.h).
#pragma once
#include <cstdint>

namespace ptq4vm {

struct TokenQuantizer {
  int64_t period = 1;
  const float* inv_smooth = nullptr;  // [cols] (1/σ of the consuming linear) or null
  const float* inv_scale = nullptr;   // [period]
  const int32_t* zero = nullptr;      // [period], each in [0, qmax]
  int qmax = 255;                     // 2^bits − 1
};

}  // namespace ptq4vm
