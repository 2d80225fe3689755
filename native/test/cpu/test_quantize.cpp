// quantize_u8 and quantize_params_dynamic: exact equality with the scalar references on random
// ragged shapes, every ISA; round half to even, clamping and NaN handling.
#include <cmath>
#include <cstring>
#include <algorithm>
#include <limits>

#include "cpu_test_util.h"
#include "ptq4vm/quantize.h"

using namespace ptq4vm;
using namespace ptq4vm::test;

TEST_CASE("quantize_u8: equals the reference exactly, ragged shapes, periods, every ISA") {
  Rng rng(61);
  ThreadCountGuard guard;
  for_each_isa([&](Isa) {
    for (int threads : {1, 2}) {
      set_num_threads(threads);
      for (int iter = 0; iter < 30; ++iter) {
        const int64_t rows = rng.integer(1, 60), cols = rng.integer(1, 100);
        const int64_t period = std::vector<int64_t>{1, 7, rows}[size_t(iter % 3)];
        const int64_t ldx = cols + rng.integer(0, 4), ldq = cols + rng.integer(0, 4);
        const int qmax = iter % 4 == 0 ? 15 : 255;
        auto x = rng.floats(size_t(rows * ldx), -4, 4);
        auto ism = rng.floats(size_t(cols), 0.25f, 2.0f);
        std::vector<float> inv_scale(static_cast<size_t>(period));
        std::vector<int32_t> zero(static_cast<size_t>(period));
        for (int64_t p = 0; p < period; ++p) {
          inv_scale[p] = float(qmax) / rng.uniform(2.0f, 10.0f);  // some values clamp at both ends
          zero[p] = int32_t(rng.integer(0, qmax));
        }
        const float* sm = iter % 2 ? ism.data() : nullptr;
        std::vector<uint8_t> got(size_t(rows * ldq), 0xAB), want(got.size(), 0xAB);
        quantize_u8(rows, cols, period, x.data(), ldx, sm, inv_scale.data(), zero.data(), qmax, got.data(), ldq);
        quantize_u8_ref(rows, cols, period, x.data(), ldx, sm, inv_scale.data(), zero.data(), qmax, want.data(), ldq);
        CHECK_MSG(got == want, "rows=" << rows << " cols=" << cols << " period=" << period << " qmax=" << qmax);
        int distinct = 0;  // the data exercised the range, not one value
        for (int v = 0; v <= qmax; ++v) distinct += std::count(want.begin(), want.end(), uint8_t(v)) > 0;
        CHECK(distinct > std::min<int64_t>(qmax / 8, rows * cols / 8));
      }
    }
  });
}

TEST_CASE("quantize_u8: ties round to even, out-of-range clamps, NaN gives 0") {
  for_each_isa([&](Isa) {
    // inv_scale 1, zero 10: v = x exactly, so q = nearbyint(x) + 10.
    std::vector<float> x = {0.5f, 1.5f, 2.5f, -0.5f, -1.5f, -2.5f, 3.49999976f, 1e9f, -1e9f,
                            std::numeric_limits<float>::quiet_NaN(), 244.5f, 245.5f, -10.5f, -9.5f,
                            std::numeric_limits<float>::infinity(), 7.0f, 0.0f, -0.0f};
    const std::vector<uint8_t> want = {10, 12, 12, 10, 8, 8, 13, 255, 0, 0, 254, 255, 0, 0, 255, 17, 10, 10};
    const float inv_scale = 1.0f;
    const int32_t zero = 10;
    std::vector<uint8_t> got(x.size()), ref(x.size());
    quantize_u8(1, int64_t(x.size()), 1, x.data(), int64_t(x.size()), nullptr, &inv_scale, &zero, 255, got.data(),
                int64_t(x.size()));
    quantize_u8_ref(1, int64_t(x.size()), 1, x.data(), int64_t(x.size()), nullptr, &inv_scale, &zero, 255,
                    ref.data(), int64_t(x.size()));
    CHECK(ref == want);
    CHECK(got == want);
  });
}

TEST_CASE("quantize_params_dynamic: bit-identical to the reference, every ISA") {
  Rng rng(62);
  for_each_isa([&](Isa) {
    for (int iter = 0; iter < 20; ++iter) {
      const int64_t rows = rng.integer(1, 40), cols = rng.integer(1, 90), ldx = cols + rng.integer(0, 3);
      const int qmax = iter % 3 == 0 ? 15 : 255;
      auto x = rng.floats(size_t(rows * ldx), -3, 3);
      if (iter % 5 == 1) for (auto& v : x) v = std::fabs(v);          // all positive: lo = 0
      if (iter % 5 == 2) for (auto& v : x) v = -std::fabs(v);         // all negative: hi = 0
      if (iter % 5 == 3) x[size_t(rng.integer(0, cols - 1))] = std::numeric_limits<float>::quiet_NaN();
      auto ism = rng.floats(size_t(cols), 0.5f, 2.0f);
      const float* sm = iter % 2 ? ism.data() : nullptr;
      std::vector<float> s(static_cast<size_t>(rows)), is(static_cast<size_t>(rows)), s_ref(static_cast<size_t>(rows)), is_ref(static_cast<size_t>(rows));
      std::vector<int32_t> z(static_cast<size_t>(rows)), z_ref(static_cast<size_t>(rows));
      quantize_params_dynamic(rows, cols, x.data(), ldx, sm, qmax, s.data(), is.data(), z.data());
      quantize_params_dynamic_ref(rows, cols, x.data(), ldx, sm, qmax, s_ref.data(), is_ref.data(), z_ref.data());
      CHECK(std::memcmp(s.data(), s_ref.data(), s.size() * 4) == 0);
      CHECK(std::memcmp(is.data(), is_ref.data(), is.size() * 4) == 0);
      CHECK(z == z_ref);
      for (int64_t r = 0; r < rows; ++r) CHECK(s[r] > 0 && z[r] >= 0 && z[r] <= qmax);
    }
    // A zero row gets the minimum range and zero point 0.
    std::vector<float> zeros(5, 0.0f);
    float s, is;
    int32_t z;
    quantize_params_dynamic(1, 5, zeros.data(), 5, nullptr, 255, &s, &is, &z);
    CHECK(s == 1e-8f / 255.0f && z == 0);
  });
}
