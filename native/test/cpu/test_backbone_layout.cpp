// token_permute.h and conv2d.h kernels against their scalar references on random, ragged
// shapes: gathers with pads, scatters with gates/accumulation/dropped steps, odd-sized patch
// merging, dense conv2d in both input layouts, depthwise conv2d with and without bias/SiLU.
#include <algorithm>
#include <numeric>

#include "cpu_test_util.h"
#include "ptq4vm/conv2d.h"
#include "ptq4vm/token_permute.h"

using namespace ptq4vm;
using namespace ptq4vm::test;

namespace {
// A random scan order: every source row once, shuffled, with pads (−1) inserted.
std::vector<int32_t> random_order(Rng& rng, int64_t src_len, int64_t pads) {
  std::vector<int32_t> idx(static_cast<size_t>(src_len));
  std::iota(idx.begin(), idx.end(), 0);
  std::shuffle(idx.begin(), idx.end(), rng.gen);
  for (int64_t p = 0; p < pads; ++p) idx.insert(idx.begin() + rng.integer(0, int64_t(idx.size())), -1);
  return idx;
}
}  // namespace

TEST_CASE("gather_tokens / scatter_tokens: random orders with pads, gates, accumulation") {
  Rng rng(201);
  ThreadCountGuard guard;
  for_each_isa([&](Isa) {
    for (int threads : {1, 2}) {
      set_num_threads(threads);
      for (int64_t C : {1, 7, 16, 33, 130}) {
        const int64_t B = rng.integer(1, 3), L = rng.integer(1, 60), pads = rng.integer(0, 9);
        const auto idx = random_order(rng, L, pads);
        const int64_t steps = int64_t(idx.size()), ldx = C + rng.integer(0, 3), ldo = C + rng.integer(0, 3);
        auto x = rng.floats(size_t(B * L * ldx));
        std::vector<float> g(size_t(B * steps * ldo), 5.0f), g_ref(g.size(), 5.0f);
        gather_tokens_f32(B, L, steps, C, x.data(), ldx, idx.data(), g.data(), ldo);
        gather_tokens_f32_ref(B, L, steps, C, x.data(), ldx, idx.data(), g_ref.data(), ldo);
        CHECK(g == g_ref);
        // Pad rows are zero, real rows are copies.
        for (int64_t t = 0; t < steps; ++t)
          if (idx[size_t(t)] < 0) CHECK(g[size_t(t * ldo)] == 0.0f);
          else CHECK(g[size_t(t * ldo)] == x[size_t(idx[size_t(t)] * ldx)]);
        // Scatter back: without gate it inverts the gather.
        std::vector<float> back(size_t(B * L * ldx), -1.0f);
        scatter_tokens_f32(B, steps, L, C, g.data(), ldo, idx.data(), nullptr, false, back.data(), ldx);
        for (int64_t r = 0; r < B * L; ++r)
          for (int64_t c = 0; c < C; ++c) CHECK(back[size_t(r * ldx + c)] == x[size_t(r * ldx + c)]);
        // With a gate, accumulating onto existing values, and a dropped step.
        auto y = rng.floats(size_t(B * steps * ldo)), gate = rng.floats(size_t(B * C));
        auto drop = idx;
        drop[size_t(rng.integer(0, steps - 1))] = -1;
        for (bool acc : {false, true}) {
          auto o = rng.floats(size_t(B * L * ldx));
          auto o_ref = o;
          scatter_tokens_f32(B, steps, L, C, y.data(), ldo, drop.data(), gate.data(), acc, o.data(), ldx);
          scatter_tokens_f32_ref(B, steps, L, C, y.data(), ldo, drop.data(), gate.data(), acc, o_ref.data(), ldx);
          CHECK_MSG(rel_max_err(o.data(), o_ref.data(), o.size()) < 1e-6, "scatter C=" << C << " acc=" << acc);
        }
      }
    }
  });
}

TEST_CASE("patch_merge: odd and even sizes, zero pad at the bottom/right") {
  Rng rng(202);
  for (auto [H, W] : {std::pair<int64_t, int64_t>{1, 1}, {2, 3}, {7, 7}, {4, 5}, {9, 6}}) {
    const int64_t B = rng.integer(1, 3), C = rng.integer(1, 21);
    auto x = rng.floats(size_t(B * H * W * C));
    const int64_t Ho = (H + 1) / 2, Wo = (W + 1) / 2;
    std::vector<float> o(size_t(B * Ho * Wo * 4 * C), 9.0f), o_ref(o.size(), 9.0f);
    patch_merge_f32(B, H, W, C, x.data(), o.data());
    patch_merge_f32_ref(B, H, W, C, x.data(), o_ref.data());
    CHECK(o == o_ref);
    // Quarter 1 of output (0, 0) is input row 1, column 0 (the Swin order x0, x1 = odd row, ...).
    if (H > 1) CHECK(o[size_t(C)] == x[size_t(W * C)]);
  }
}

TEST_CASE("conv2d: ragged channels, strides, padding, both input layouts vs the reference") {
  Rng rng(203);
  ThreadCountGuard guard;
  for (int threads : {1, 2}) {
    set_num_threads(threads);
    struct Case { int64_t Cin, H, W, Cout, K, S, P; };
    for (const Case& c : {Case{3, 13, 10, 5, 3, 2, 1}, Case{3, 16, 12, 8, 4, 4, 0}, Case{6, 7, 9, 13, 3, 2, 1},
                          Case{5, 5, 3, 3, 3, 1, 1}, Case{2, 1, 1, 3, 3, 2, 1}, Case{17, 11, 11, 7, 3, 2, 1}}) {
      const int64_t B = rng.integer(1, 3);
      auto x = rng.floats(size_t(B * c.Cin * c.H * c.W));
      auto w = rng.floats(size_t(c.Cout * c.Cin * c.K * c.K)), bias = rng.floats(size_t(c.Cout));
      const int64_t Ho = (c.H + 2 * c.P - c.K) / c.S + 1, Wo = (c.W + 2 * c.P - c.K) / c.S + 1;
      for (bool cf : {true, false}) {
        for (bool with_bias : {true, false}) {
          std::vector<float> o(size_t(B * Ho * Wo * c.Cout)), o_ref(o.size());
          const float* bp = with_bias ? bias.data() : nullptr;
          conv2d_f32(B, c.Cin, c.H, c.W, cf, x.data(), c.Cout, c.K, c.S, c.P, w.data(), bp, o.data());
          conv2d_f32_ref(B, c.Cin, c.H, c.W, cf, x.data(), c.Cout, c.K, c.S, c.P, w.data(), bp, o_ref.data());
          CHECK_MSG(rel_max_err(o.data(), o_ref.data(), o.size()) < 1e-5,
                    "Cin=" << c.Cin << " H=" << c.H << " W=" << c.W << " cf=" << cf);
        }
      }
    }
  }
}

TEST_CASE("depthwise_conv2d: ragged channels and sizes, strided tokens, bias and SiLU, every ISA") {
  Rng rng(204);
  ThreadCountGuard guard;
  for_each_isa([&](Isa) {
    for (int threads : {1, 2}) {
      set_num_threads(threads);
      for (auto [H, W] : {std::pair<int64_t, int64_t>{1, 1}, {2, 3}, {5, 4}, {7, 7}, {16, 20}}) {
        for (int64_t K : {1, 3, 5}) {
          const int64_t B = rng.integer(1, 3), C = rng.integer(1, 40), ldx = C + rng.integer(0, 20), ldo = C + rng.integer(0, 3);
          auto x = rng.floats(size_t(B * H * W * ldx), -2, 2);
          auto w = rng.floats(size_t(C * K * K)), bias = rng.floats(size_t(C));
          for (bool with_bias : {true, false})
            for (bool silu : {true, false}) {
              std::vector<float> o(size_t(B * H * W * ldo), 3.0f), o_ref(o.size(), 3.0f);
              const float* bp = with_bias ? bias.data() : nullptr;
              depthwise_conv2d_f32(B, H, W, C, x.data(), ldx, K, w.data(), bp, silu, o.data(), ldo);
              depthwise_conv2d_f32_ref(B, H, W, C, x.data(), ldx, K, w.data(), bp, silu, o_ref.data(), ldo);
              CHECK_MSG(rel_max_err(o.data(), o_ref.data(), o.size()) < 2e-6,
                        "H=" << H << " W=" << W << " K=" << K << " C=" << C);
            }
        }
      }
    }
  });
}
