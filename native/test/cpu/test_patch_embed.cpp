// patch_embed_f32 against patch_embed_f32_ref: ragged image sizes, strides below, equal to and
// above the patch size, optional bias.
#include "cpu_test_util.h"
#include "ptq4vm/patch_embed.h"

using namespace ptq4vm;
using namespace ptq4vm::test;

TEST_CASE("patch_embed_f32: ragged images and strides, every ISA") {
  Rng rng(51);
  for_each_isa([&](Isa) {
    for (int iter = 0; iter < 12; ++iter) {
      const int64_t B = rng.integer(1, 2), C = rng.integer(1, 3), P = rng.integer(1, 5);
      const int64_t S = rng.integer(1, P + 2);
      const int64_t H = P + rng.integer(0, 13), W = P + rng.integer(0, 11), D = rng.integer(1, 40);
      const int64_t G = ((H - P) / S + 1) * ((W - P) / S + 1);
      auto img = rng.floats(size_t(B * C * H * W)), w = rng.floats(size_t(D * C * P * P));
      auto bias = rng.floats(size_t(D));
      const float* bp = iter % 3 ? bias.data() : nullptr;
      std::vector<float> got(size_t(B * G * D), 7.0f), want(got.size(), -7.0f);
      patch_embed_f32(B, C, H, W, P, S, img.data(), w.data(), bp, D, got.data());
      patch_embed_f32_ref(B, C, H, W, P, S, img.data(), w.data(), bp, D, want.data());
      const double err = rel_max_err(got.data(), want.data(), got.size());
      CHECK_MSG(err < 1e-5, "B=" << B << " C=" << C << " H=" << H << " W=" << W << " P=" << P << " S=" << S
                                 << " D=" << D << " rel err " << err);
    }
  });
}
