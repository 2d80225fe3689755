// LayerNorm over the channels of token-major rows (VMamba's channel-first "ln2d" is the same
// maths on the transposed layout), and the token mean of LayerNorm'd rows (LocalMamba BiAttn).
#pragma once
#include <cstdint>

namespace ptq4vm {

// out[r] = (x[r] − mean) / sqrt(var + eps) · weight + bias over D channels, biased variance;
// weight and bias may be null (1 and 0). out may be x (same ld) but not overlap it otherwise.
void layer_norm_f32(int64_t rows, int64_t D, const float* x, int64_t ldx, const float* weight,
                    const float* bias, float eps, float* out, int64_t ldo);
void layer_norm_f32_ref(int64_t rows, int64_t D, const float* x, int64_t ldx, const float* weight,
                        const float* bias, float eps, float* out, int64_t ldo);

// For every image b of x [B, L, D]: out[b] = mean over the rows t with (select == null ||
// select[t] >= 0) of layer_norm(x[b·L + t]). A direction's scan order has zero pad rows; passing
// its scatter index as `select` averages over the real tokens only (the mean is order-free).
// At least one row must be selected.
void layer_norm_token_mean_f32(int64_t B, int64_t L, int64_t D, const float* x, int64_t ldx,
                               const int32_t* select, const float* weight, const float* bias,
                               float eps, float* out);
void layer_norm_token_mean_f32_ref(int64_t B, int64_t L, int64_t D, const float* x, int64_t ldx,
                                   const int32_t* select, const float* weight, const float* bias,
                                   float eps, float* out);

}  // namespace ptq4vm
