// selective_scan_f32 against selective_scan_f32_ref: both directions, optional D / z /
// delta_bias, softplus on/off, accumulate and out_scale, strided operands, ragged E and N.
#include <cmath>

#include "cpu_test_util.h"
#include "ptq4vm/scan.h"

using namespace ptq4vm;
using namespace ptq4vm::test;

namespace {

struct ScanData {
  std::vector<float> u, delta, A, Bm, Cm, D, z, dbias, y;
  ScanArgs args;
};

// Operands laid out as slices of wider rows (like the real model's GEMM outputs).
ScanData make_scan(Rng& rng, int64_t B, int64_t L, int64_t E, int64_t N, bool softplus, bool with_d,
                   bool with_z, bool with_bias) {
  ScanData s;
  ScanArgs& a = s.args;
  a.B = B, a.L = L, a.E = E, a.N = N;
  a.ldu = E + rng.integer(0, 5);
  a.lddelta = E + rng.integer(0, 5);
  a.ldB = N + rng.integer(0, 2 * N + 1);
  a.ldC = N + rng.integer(0, 3);
  a.ldz = E + rng.integer(0, 5);
  a.ldy = E + rng.integer(0, 3);
  s.u = rng.floats(size_t(B * L * a.ldu), -2, 2);
  s.delta = softplus ? rng.floats(size_t(B * L * a.lddelta), -4, 2) : rng.floats(size_t(B * L * a.lddelta), 0, 1);
  s.A.resize(size_t(E * N));
  for (int64_t e = 0; e < E; ++e)
    for (int64_t n = 0; n < N; ++n) s.A[e * N + n] = -std::exp(std::log(float(n + 1)) + rng.uniform(-0.5f, 0.5f));
  s.Bm = rng.floats(size_t(B * L * a.ldB));
  s.Cm = rng.floats(size_t(B * L * a.ldC));
  s.D = rng.floats(size_t(E));
  s.z = rng.floats(size_t(B * L * a.ldz), -3, 3);
  // Without softplus, dt = delta + bias must stay positive or the state grows without bound.
  s.dbias = softplus ? rng.floats(size_t(E), -1, 1) : rng.floats(size_t(E), 0, 0.5f);
  s.y = rng.floats(size_t(B * L * a.ldy));
  a.u = s.u.data();
  a.delta = s.delta.data();
  a.A = s.A.data();
  a.Bm = s.Bm.data();
  a.Cm = s.Cm.data();
  a.D = with_d ? s.D.data() : nullptr;
  a.z = with_z ? s.z.data() : nullptr;
  a.delta_bias = with_bias ? s.dbias.data() : nullptr;
  a.delta_softplus = softplus;
  return s;
}

void check_scan(ScanData& s, double tol, const char* what) {
  auto want = s.y, got = s.y;
  ScanArgs a = s.args;
  a.y = want.data();
  selective_scan_f32_ref(a);
  a.y = got.data();
  selective_scan_f32(a);
  for (int64_t r = 0; r < a.B * a.L; ++r)
    for (int64_t e = a.E; e < a.ldy; ++e) CHECK_MSG(got[r * a.ldy + e] == s.y[r * a.ldy + e], "padding of y written");
  const double err = rel_max_err(got.data(), want.data(), got.size());
  CHECK_MSG(err < tol, what << ": B=" << a.B << " L=" << a.L << " E=" << a.E << " N=" << a.N
                            << " rev=" << a.reverse << " softplus=" << a.delta_softplus
                            << " acc=" << a.accumulate << " D=" << (a.D != nullptr) << " z="
                            << (a.z != nullptr) << " rel err " << err);
}

}  // namespace

TEST_CASE("selective_scan_f32: random ragged shapes and options, every ISA") {
  Rng rng(41);
  ThreadCountGuard guard;
  for_each_isa([&](Isa) {
    for (int threads : {1, 2}) {
      set_num_threads(threads);
      for (int iter = 0; iter < 32; ++iter) {
        const int64_t N = std::vector<int64_t>{1, 5, 16, 16, 17}[size_t(rng.integer(0, 4))];
        auto s = make_scan(rng, rng.integer(1, 3), rng.integer(1, 40), rng.integer(1, 50), N,
                           iter % 4 != 3, iter & 1, (iter >> 1) & 1, (iter >> 2) & 1);
        s.args.reverse = (iter >> 3) & 1;
        s.args.accumulate = (iter >> 4) & 1;
        s.args.out_scale = (iter >> 4) & 1 ? 0.5f : 1.0f;
        check_scan(s, 2e-5, "random");
      }
    }
  });
}

TEST_CASE("selective_scan_f32: math fast stays within its bound of the reference, every ISA") {
  // As the bidirectional scan's fast math (test_fused_quant.cpp): ≤ 1.1e-4 per step, growing
  // with the steps a state remembers (L ≤ 40 here); on AVX-512 the result really differs from
  // the exact math's, elsewhere the fast math is the exact one.
  Rng rng(44);
  ThreadCountGuard guard;
  for_each_isa([&](Isa isa) {
    for (int threads : {1, 2}) {
      set_num_threads(threads);
      for (int iter = 0; iter < 16; ++iter) {
        const int64_t N = std::vector<int64_t>{16, 5, 16, 17}[size_t(iter % 4)];
        auto s = make_scan(rng, rng.integer(1, 3), rng.integer(1, 40), rng.integer(1, 50), N, iter % 4 != 3, iter & 1,
                           (iter >> 1) & 1, true);
        s.args.reverse = (iter >> 2) & 1;
        ScanArgs a = s.args;
        auto want = s.y, fast = s.y, exact = s.y;
        a.y = want.data();
        selective_scan_f32_ref(a);
        a.math = MathMode::fast, a.y = fast.data();
        selective_scan_f32(a);
        a.math = MathMode::exact, a.y = exact.data();
        selective_scan_f32(a);
        const double err = rel_max_err(fast.data(), want.data(), fast.size());
        CHECK_MSG(err < 3e-3, "L=" << a.L << " E=" << a.E << " N=" << a.N << " err " << err);
        if (isa == Isa::Avx512 || isa == Isa::Avx512Vnni) CHECK_MSG(fast != exact, "fast == exact");
        else CHECK(fast == exact);
      }
    }
  });
}

TEST_CASE("selective_scan_f32: Vim-like shape (L = 197, N = 16, E = 40) both directions") {
  Rng rng(42);
  for_each_isa([&](Isa) {
    for (bool reverse : {false, true}) {
      auto s = make_scan(rng, 2, 197, 40, 16, true, true, true, true);
      s.args.reverse = reverse;
      check_scan(s, 2e-5, "vim-like");
    }
  });
}

TEST_CASE("selective_scan_f32: forward + reversed halves sum like the Vim div2 combine") {
  Rng rng(43);
  auto s = make_scan(rng, 1, 23, 21, 16, true, true, true, true);
  std::vector<float> y_sum(s.y.size(), 0.0f), y_f(s.y.size(), 0.0f), y_b(s.y.size(), 0.0f);
  ScanArgs a = s.args;
  a.out_scale = 0.5f;
  a.y = y_sum.data();
  selective_scan_f32(a);
  a.reverse = true;
  a.accumulate = true;
  selective_scan_f32(a);
  ScanArgs f = s.args, b = s.args;
  f.y = y_f.data();
  b.y = y_b.data();
  b.reverse = true;
  selective_scan_f32_ref(f);
  selective_scan_f32_ref(b);
  for (size_t i = 0; i < y_sum.size(); ++i) y_f[i] = 0.5f * y_f[i] + 0.5f * y_b[i];
  CHECK(rel_max_err(y_sum.data(), y_f.data(), y_f.size()) < 2e-5);
}

// Decays whose exponent x = Δ·A·log2 e is, as a float, exactly a midpoint (m + 1/2)/32 of the
// exp2 table's steps while the exact product is not: rounded to 1/32 the float product goes to
// the even neighbour and the exact one (which a compiler-contracted multiply-add sees) to the
// nearer one, and half the time they differ. The kernel's 2^x must still be 2^(the product) to
// ~1 ulp; a remainder r rounded separately from the table index k (simd.h, exp2_in_range_f32)
// would put it off by 2^(1/32) ≈ 2 % wherever the compiler contracts the product into the add.
TEST_CASE("selective_scan_f32: decays whose exponent is a midpoint of the exp2 table's steps") {
  Rng rng(43);
  const double log2e = 1.4426950408889634;
  for_each_isa([&](Isa) {
    for (int64_t N : {16, 5}) {
      const int64_t B = 1, L = 3, E = 37;
      auto s = make_scan(rng, B, L, E, N, /*softplus*/ false, false, false, false);
      ScanArgs& a = s.args;
      int64_t midpoints = 0;
      for (int64_t e = 0; e < E; ++e) {
        // Δ of tokens 1 and 2 (token 0's decay multiplies a zero state).
        for (int64_t t = 1; t < L; ++t) s.delta[t * a.lddelta + e] = rng.uniform(0.05f, 0.9f);
        const float dt = s.delta[1 * a.lddelta + e];
        for (int64_t n = 0; n < N; ++n) {
          const double target = -(double(rng.integer(1, 150)) + 0.5) / 32.0;
          const float A0 = float(target / (double(dt) * log2e));
          float A = A0;
          for (int k = 0; k < 4000; ++k) {
            // A0, then one ulp further each way in turn.
            float cand = A0;
            for (int j = 0; j < (k + 1) / 2; ++j) cand = std::nextafter(cand, k % 2 ? -1e30f : 0.0f);
            const float a2 = float(double(cand) * log2e);  // as the kernels' A·log2 e table
            if (dt * a2 == float(target) && double(dt) * double(a2) != target) {
              A = cand;
              ++midpoints;
              break;
            }
          }
          s.A[e * N + n] = A;
        }
      }
      CHECK_MSG(midpoints > E * N / 4, "found only " << midpoints << " midpoint exponents of " << E * N);
      check_scan(s, 2e-5, "midpoint exponents");
    }
  });
}
