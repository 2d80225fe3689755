// INT8 GEMM: raw accumulators and the fused epilogue equal the scalar references exactly, on
// random ragged shapes, 8-bit and 4-bit weight levels, every ISA path, 1–3 threads.
#include <cstring>

#include "cpu_test_util.h"
#include "ptq4vm/gemm_int8.h"

using namespace ptq4vm;
using namespace ptq4vm::test;

namespace {

std::vector<uint8_t> random_u8(Rng& rng, size_t n) {
  std::vector<uint8_t> v(n);
  for (auto& x : v) x = uint8_t(rng.integer(0, 255));
  return v;
}
std::vector<int8_t> random_levels(Rng& rng, size_t n, int level) {
  std::vector<int8_t> v(n);
  for (auto& x : v) x = int8_t(rng.integer(-level, level));
  return v;
}

struct Int8Case {
  int64_t M, N, K, lda, ldc, period;
  int level;  // 127 (8-bit) or 7 (4-bit)
  bool bias, accumulate;
};

void check_case(Rng& rng, const Int8Case& c) {
  auto A = random_u8(rng, size_t(std::max<int64_t>(c.M * c.lda, 1)));
  auto qw = random_levels(rng, size_t(std::max<int64_t>(c.N * c.K, 1)), c.level);
  auto W = pack_int8_weights(c.N, c.K, qw.data());
  // Raw accumulators.
  std::vector<int32_t> got(size_t(std::max<int64_t>(c.M * c.ldc, 1)), -7), want = got;
  gemm_u8s8_s32(c.M, c.N, c.K, A.data(), c.lda, *W, got.data(), c.ldc);
  gemm_u8s8_s32_ref(c.M, c.N, c.K, A.data(), c.lda, qw.data(), want.data(), c.ldc);
  CHECK_MSG(got == want, "s32 M=" << c.M << " N=" << c.N << " K=" << c.K << " lda=" << c.lda);
  for (int64_t n = 0; n < c.N; ++n) {
    int32_t s = 0;
    for (int64_t k = 0; k < c.K; ++k) s += qw[n * c.K + k];
    CHECK(packed_int8_wsum(*W)[n] == s);
  }
  // Fused epilogue: bit-identical floats.
  std::vector<float> a_scale(size_t(c.period)), w_scale(size_t(c.N) + 1), bias(size_t(c.N) + 1);
  std::vector<int32_t> a_zero(size_t(c.period));
  for (auto& s : a_scale) s = rng.uniform(0.001f, 0.05f);
  for (auto& z : a_zero) z = int32_t(rng.integer(0, 255));
  for (auto& s : w_scale) s = rng.uniform(0.001f, 0.02f);
  for (auto& b : bias) b = rng.uniform(-1, 1);
  Int8Epilogue ep;
  ep.period = c.period;
  ep.a_scale = a_scale.data();
  ep.a_zero = a_zero.data();
  ep.w_scale = w_scale.data();
  ep.bias = c.bias ? bias.data() : nullptr;
  ep.accumulate = c.accumulate;
  auto Cf = rng.floats(size_t(std::max<int64_t>(c.M * c.ldc, 1)));
  auto Cf_ref = Cf, C0 = Cf;
  gemm_u8s8_f32(c.M, c.N, c.K, A.data(), c.lda, *W, ep, Cf.data(), c.ldc);
  gemm_u8s8_f32_ref(c.M, c.N, c.K, A.data(), c.lda, qw.data(), ep, Cf_ref.data(), c.ldc);
  CHECK_MSG(std::memcmp(Cf.data(), Cf_ref.data(), Cf.size() * sizeof(float)) == 0,
            "f32 M=" << c.M << " N=" << c.N << " K=" << c.K << " period=" << c.period << " bias=" << c.bias
                     << " acc=" << c.accumulate);
  for (int64_t m = 0; m < c.M; ++m)
    for (int64_t n = c.N; n < c.ldc; ++n) CHECK(Cf[m * c.ldc + n] == C0[m * c.ldc + n]);
}

}  // namespace

TEST_CASE("gemm_u8s8: exact on random ragged shapes, 8- and 4-bit weights, every ISA") {
  Rng rng(71);
  ThreadCountGuard guard;
  for_each_isa([&](Isa) {
    for (int threads : {1, 2, 3}) {
      set_num_threads(threads);
      for (int iter = 0; iter < 16; ++iter) {
        Int8Case c;
        c.M = rng.integer(1, 70);
        c.N = rng.integer(1, 100);
        c.K = rng.integer(1, 150);
        c.lda = c.K + rng.integer(0, 5);
        c.ldc = c.N + rng.integer(0, 3);
        c.period = std::vector<int64_t>{1, 5, c.M}[size_t(iter % 3)];
        c.level = iter % 4 == 3 ? 7 : 127;
        c.bias = iter & 1;
        c.accumulate = (iter >> 1) & 1;
        check_case(rng, c);
      }
    }
  });
}

TEST_CASE("gemm_u8s8: Vim-like shapes (K = 12, 192, 384; N = 44, 384) and a long K") {
  Rng rng(72);
  ThreadCountGuard guard;
  set_num_threads(2);
  for_each_isa([&](Isa) {
    check_case(rng, {197, 44, 384, 384, 44, 197, 127, false, false});
    check_case(rng, {203, 384, 12, 44, 384, 197, 127, true, false});
    check_case(rng, {33, 191, 192, 192, 191, 33, 7, true, true});
    check_case(rng, {9, 17, 1999, 2001, 17, 1, 127, true, false});
  });
}

TEST_CASE("gemm_u8s8: extreme values do not saturate (255 · ±127 over long K)") {
  for_each_isa([&](Isa) {
    const int64_t M = 3, N = 18, K = 4099;
    std::vector<uint8_t> A(size_t(M * K), 255);
    std::vector<int8_t> qw(size_t(N * K));
    for (int64_t n = 0; n < N; ++n)
      for (int64_t k = 0; k < K; ++k) qw[n * K + k] = int8_t(n % 2 ? -127 : 127);
    auto W = pack_int8_weights(N, K, qw.data());
    std::vector<int32_t> C(size_t(M * N));
    gemm_u8s8_s32(M, N, K, A.data(), K, *W, C.data(), N);
    for (int64_t m = 0; m < M; ++m)
      for (int64_t n = 0; n < N; ++n) CHECK(C[m * N + n] == (n % 2 ? -1 : 1) * 255 * 127 * int32_t(K));
  });
}

TEST_CASE("gemm_u8s8: one packing serves every ISA; empty shapes write nothing") {
  Rng rng(73);
  const int64_t M = 21, N = 35, K = 51;
  auto A = random_u8(rng, size_t(M * K));
  auto qw = random_levels(rng, size_t(N * K), 127);
  auto W = pack_int8_weights(N, K, qw.data());
  CHECK(packed_int8_n(*W) == N && packed_int8_k(*W) == K);
  std::vector<int32_t> want(size_t(M * N));
  gemm_u8s8_s32_ref(M, N, K, A.data(), K, qw.data(), want.data(), N);
  for_each_isa([&](Isa) {
    std::vector<int32_t> got(size_t(M * N));
    gemm_u8s8_s32(M, N, K, A.data(), K, *W, got.data(), N);
    CHECK(got == want);
    std::vector<int32_t> untouched(4, 99);
    gemm_u8s8_s32(0, N, K, A.data(), K, *W, untouched.data(), N);
    CHECK(untouched == std::vector<int32_t>(4, 99));
  });
  // K = 0: accumulators are 0 and the epilogue reduces to the bias.
  auto W0 = pack_int8_weights(3, 0, nullptr);
  std::vector<int32_t> c0(6, 5);
  gemm_u8s8_s32(2, 3, 0, A.data(), 1, *W0, c0.data(), 3);
  CHECK(c0 == std::vector<int32_t>(6, 0));
}
