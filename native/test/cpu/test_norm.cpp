// add_rmsnorm_f32 against add_rmsnorm_f32_ref: ragged widths, optional residual, aliasing.
#include "cpu_test_util.h"
#include "ptq4vm/norm.h"

using namespace ptq4vm;
using namespace ptq4vm::test;

TEST_CASE("add_rmsnorm_f32: ragged widths, with and without residual, every ISA") {
  Rng rng(21);
  ThreadCountGuard guard;
  for_each_isa([&](Isa) {
    for (int threads : {1, 2}) {
      set_num_threads(threads);
      for (int64_t D : {1, 7, 16, 63, 64, 65, 192, 385}) {
        const int64_t rows = rng.integer(1, 40);
        for (bool with_residual : {false, true}) {
          auto x = rng.floats(size_t(rows * D), -3, 3), res = rng.floats(size_t(rows * D), -3, 3);
          auto w = rng.floats(size_t(D), 0.5f, 1.5f);
          std::vector<float> ro(x.size()), o(x.size()), ro_ref(x.size()), o_ref(x.size());
          const float* rin = with_residual ? res.data() : nullptr;
          add_rmsnorm_f32(rows, D, x.data(), rin, ro.data(), w.data(), 1e-5f, o.data());
          add_rmsnorm_f32_ref(rows, D, x.data(), rin, ro_ref.data(), w.data(), 1e-5f, o_ref.data());
          CHECK_MSG(ro == ro_ref, "residual_out differs, D=" << D);
          const double err = rel_max_err(o.data(), o_ref.data(), o.size());
          CHECK_MSG(err < 1e-6, "D=" << D << " rows=" << rows << " rel err " << err);
        }
      }
    }
  });
}

TEST_CASE("add_rmsnorm_f32: residual_out may alias residual_in, out may alias x") {
  Rng rng(22);
  for_each_isa([&](Isa) {
    const int64_t rows = 9, D = 37;
    auto x = rng.floats(size_t(rows * D)), res = rng.floats(size_t(rows * D));
    auto w = rng.floats(size_t(D));
    std::vector<float> ro_ref(x.size()), o_ref(x.size());
    add_rmsnorm_f32_ref(rows, D, x.data(), res.data(), ro_ref.data(), w.data(), 1e-6f, o_ref.data());
    auto res_inout = res, x_inout = x;
    add_rmsnorm_f32(rows, D, x_inout.data(), res_inout.data(), res_inout.data(), w.data(), 1e-6f,
                    x_inout.data());
    CHECK(res_inout == ro_ref);
    CHECK(rel_max_err(x_inout.data(), o_ref.data(), o_ref.size()) < 1e-6);
  });
}
