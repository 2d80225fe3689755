// causal_conv1d_f32 against causal_conv1d_f32_ref: both directions, SiLU on/off (exact and
// fast), strided input and output, ragged channel counts and kernel widths.
#include "cpu_test_util.h"
#include <cmath>

#include "ptq4vm/conv1d.h"

using namespace ptq4vm;
using namespace ptq4vm::test;

TEST_CASE("causal_conv1d_f32: both directions, strides, ragged shapes, every ISA") {
  Rng rng(31);
  ThreadCountGuard guard;
  for_each_isa([&](Isa) {
    for (int threads : {1, 2}) {
      set_num_threads(threads);
      for (int iter = 0; iter < 24; ++iter) {
        const int64_t B = rng.integer(1, 3), L = rng.integer(1, 30), E = rng.integer(1, 70);
        const int64_t K = rng.integer(1, 5);
        const int64_t ldx = E + rng.integer(0, 1) * rng.integer(1, E + 3);  // e.g. the x half of in_proj
        const int64_t ldo = E + rng.integer(0, 2);
        const bool reverse = iter & 1, silu = (iter >> 1) & 1, bias = (iter >> 2) & 1;
        auto x = rng.floats(size_t(B * L * ldx), -2, 2), w = rng.floats(size_t(E * K));
        auto bv = rng.floats(size_t(E));
        auto out0 = rng.floats(size_t(B * L * ldo));
        auto got = out0, want = out0;
        causal_conv1d_f32(B, L, E, K, x.data(), ldx, w.data(), bias ? bv.data() : nullptr, reverse, silu,
                          got.data(), ldo);
        causal_conv1d_f32_ref(B, L, E, K, x.data(), ldx, w.data(), bias ? bv.data() : nullptr, reverse,
                              silu, want.data(), ldo);
        for (int64_t r = 0; r < B * L; ++r)
          for (int64_t e = E; e < ldo; ++e) CHECK_MSG(got[r * ldo + e] == out0[r * ldo + e], "padding written");
        const double err = rel_max_err(got.data(), want.data(), got.size());
        CHECK_MSG(err < 2e-6, "B=" << B << " L=" << L << " E=" << E << " K=" << K << " rev=" << reverse
                                   << " silu=" << silu << " rel err " << err);
        // The quantized path's SiLU (MathMode::fast): each value within 1.1e-4 relative, plus the
        // sum's rounding (exact where the ISA has no fast math).
        auto fast = out0;
        causal_conv1d_f32(B, L, E, K, x.data(), ldx, w.data(), bias ? bv.data() : nullptr, reverse, silu,
                          fast.data(), ldo, MathMode::fast);
        double max_abs = 0;
        for (float v : want) max_abs = std::fmax(max_abs, std::fabs(double(v)));
        for (size_t i = 0; i < fast.size(); ++i) {
          const double d = std::fabs(double(fast[i]) - double(want[i]));
          CHECK_MSG(d <= 1.1e-4 * std::fabs(double(want[i])) + 2e-6 * max_abs,
                    "fast SiLU: element " << i << " " << fast[i] << " vs " << want[i] << " silu=" << silu);
        }
      }
    }
  });
}

TEST_CASE("causal_conv1d_f32: reverse equals flip, forward conv, flip") {
  Rng rng(32);
  const int64_t B = 2, L = 11, E = 19, K = 4;
  auto x = rng.floats(size_t(B * L * E)), w = rng.floats(size_t(E * K)), bias = rng.floats(size_t(E));
  std::vector<float> flipped(x.size()), fwd(x.size()), rev(x.size());
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t < L; ++t)
      for (int64_t e = 0; e < E; ++e) flipped[(b * L + t) * E + e] = x[(b * L + L - 1 - t) * E + e];
  causal_conv1d_f32(B, L, E, K, flipped.data(), E, w.data(), bias.data(), false, true, fwd.data(), E);
  causal_conv1d_f32(B, L, E, K, x.data(), E, w.data(), bias.data(), true, true, rev.data(), E);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t < L; ++t)
      for (int64_t e = 0; e < E; ++e)
        CHECK(rev[(b * L + t) * E + e] == fwd[(b * L + L - 1 - t) * E + e]);
}
