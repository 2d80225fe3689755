// gemm_f32 against gemm_f32_ref: every transpose case, ragged sizes, strides, bias,
// accumulate, empty dimensions, on every ISA path and several thread counts.
#include <cstring>

#include "cpu_test_util.h"
#include "ptq4vm/gemm.h"

using namespace ptq4vm;
using namespace ptq4vm::test;

namespace {

struct GemmCase {
  bool ta, tb;
  int64_t M, N, K, pad_a, pad_b, pad_c;
  bool bias, accumulate;
};

void check_case(Rng& rng, const GemmCase& c) {
  const int64_t a_rows = c.ta ? c.K : c.M, a_cols = c.ta ? c.M : c.K;
  const int64_t b_rows = c.tb ? c.N : c.K, b_cols = c.tb ? c.K : c.N;
  const int64_t lda = a_cols + c.pad_a, ldb = b_cols + c.pad_b, ldc = c.N + c.pad_c;
  auto A = rng.floats(size_t(std::max<int64_t>(a_rows * lda, 1)));
  auto B = rng.floats(size_t(std::max<int64_t>(b_rows * ldb, 1)));
  auto bias = rng.floats(size_t(std::max<int64_t>(c.N, 1)));
  auto C0 = rng.floats(size_t(std::max<int64_t>(c.M * ldc, 1)));
  auto got = C0, want = C0;
  gemm_f32(c.ta, c.tb, c.M, c.N, c.K, A.data(), lda, B.data(), ldb, c.bias ? bias.data() : nullptr,
           c.accumulate, got.data(), ldc);
  gemm_f32_ref(c.ta, c.tb, c.M, c.N, c.K, A.data(), lda, B.data(), ldb,
               c.bias ? bias.data() : nullptr, c.accumulate, want.data(), ldc);
  // Padding columns of C must be untouched.
  for (int64_t i = 0; i < c.M; ++i)
    for (int64_t j = c.N; j < ldc; ++j)
      CHECK_MSG(got[i * ldc + j] == C0[i * ldc + j], "padding of C written at " << i << "," << j);
  const double err = rel_max_err(got.data(), want.data(), got.size());
  CHECK_MSG(err < 2e-6 * std::sqrt(double(c.K) + 1) + 1e-6,
            "ta=" << c.ta << " tb=" << c.tb << " M=" << c.M << " N=" << c.N << " K=" << c.K
                  << " bias=" << c.bias << " acc=" << c.accumulate << " rel err " << err);
}

}  // namespace

TEST_CASE("gemm_f32: random ragged shapes, all transposes, every ISA") {
  Rng rng(11);
  ThreadCountGuard guard;
  for_each_isa([&](Isa) {
    for (int threads : {1, 2, 3}) {
      set_num_threads(threads);
      for (int iter = 0; iter < 24; ++iter) {
        GemmCase c;
        c.ta = iter & 1;
        c.tb = (iter >> 1) & 1;
        c.M = rng.integer(1, 70);
        c.N = rng.integer(1, 90);
        c.K = rng.integer(1, 60);
        c.pad_a = rng.integer(0, 3);
        c.pad_b = rng.integer(0, 3);
        c.pad_c = rng.integer(0, 3);
        c.bias = rng.integer(0, 1);
        c.accumulate = rng.integer(0, 1);
        check_case(rng, c);
      }
    }
  });
}

TEST_CASE("gemm_f32: blocked sizes (K split, N split, many row blocks)") {
  Rng rng(12);
  ThreadCountGuard guard;
  for_each_isa([&](Isa) {
    set_num_threads(2);
    // K > 384 splits the depth (C accumulated across K blocks); N > 3072 splits columns;
    // M large enough for several A blocks per thread.
    check_case(rng, {false, true, 37, 45, 777, 1, 0, 2, true, false});
    check_case(rng, {true, false, 13, 3100, 9, 0, 1, 0, true, true});
    check_case(rng, {false, true, 1001, 33, 150, 0, 0, 0, true, true});
    check_case(rng, {false, true, 203, 77, 385, 2, 2, 2, false, false});
    // Column counts that pick the 48-wide AVX-512 tiles (x_proj's 44; 140 → 3 panels of 48).
    check_case(rng, {false, true, 1576 / 8, 44, 384, 0, 0, 3, true, false});
    check_case(rng, {true, true, 29, 140, 33, 1, 0, 0, false, true});
  });
}

TEST_CASE("gemm_f32: empty dimensions") {
  Rng rng(13);
  for_each_isa([&](Isa) {
    // K = 0: C = bias (or C + bias when accumulating); M or N = 0: nothing is written.
    for (bool acc : {false, true}) {
      auto C = rng.floats(12), bias = rng.floats(4), C0 = C;
      gemm_f32(false, true, 3, 4, 0, nullptr, 1, nullptr, 1, bias.data(), acc, C.data(), 4);
      for (int i = 0; i < 3; ++i)
        for (int j = 0; j < 4; ++j)
          CHECK(C[i * 4 + j] == (acc ? C0[i * 4 + j] + bias[j] : bias[j]));
      C = C0;
      gemm_f32(false, true, 3, 4, 0, nullptr, 1, nullptr, 1, nullptr, acc, C.data(), 4);
      for (int i = 0; i < 12; ++i) CHECK(C[i] == (acc ? C0[i] : 0.0f));
    }
    auto C = rng.floats(8), C0 = C;
    auto A = rng.floats(8);
    gemm_f32(false, false, 0, 4, 2, A.data(), 2, A.data(), 4, nullptr, false, C.data(), 4);
    gemm_f32(false, false, 2, 0, 2, A.data(), 2, A.data(), 4, nullptr, false, C.data(), 4);
    CHECK(C == C0);
  });
}

TEST_CASE("gemm_f32: narrow outputs and long depths (JLSS shapes: transposed problem, transposing packs)") {
  Rng rng(14);
  ThreadCountGuard guard;
  for_each_isa([&](Isa) {
    for (int threads : {1, 2, 3}) {
      set_num_threads(threads);
      for (int iter = 0; iter < 8; ++iter) {
        GemmCase c;
        c.ta = iter & 1;
        c.tb = (iter >> 1) & 1;
        // N from 1 to 30 (dt_rank-like) with M several tiles long and K past one block of 16.
        c.M = rng.integer(129, 700);
        c.N = rng.integer(1, 30);
        c.K = rng.integer(32, 420);
        c.pad_a = rng.integer(0, 3);
        c.pad_b = rng.integer(0, 3);
        c.pad_c = rng.integer(0, 3);
        c.bias = rng.integer(0, 1);
        c.accumulate = rng.integer(0, 1);
        check_case(rng, c);
      }
    }
    set_num_threads(2);
    // dt_proj's backward shapes, scaled down: dX = dY·W (NN, N = 12) and dW = dYᵀ·X (TN, K = rows).
    check_case(rng, {false, false, 1000, 12, 384, 0, 0, 0, false, false});
    check_case(rng, {true, false, 384, 12, 1000, 0, 0, 0, false, true});
    check_case(rng, {true, false, 56, 768, 1000, 0, 0, 0, false, true});
    check_case(rng, {false, true, 1000, 56, 768, 0, 3, 0, true, false});
  });
}
