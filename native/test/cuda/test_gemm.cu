// INT8 / FP16 / FP32 GEMMs against the CPU scalar references, every tile shape, ragged shapes.
#include <algorithm>
#include <cstring>

#include "ptq4vm/cuda/gemm.h"
#include "ptq4vm/cuda/gemm_int8.h"
#include "ptq4vm/gemm.h"
#include "ptq4vm/gemm_int8.h"
#include "ptq4vm/quantize.h"
#include "test_util.cuh"

namespace {
using namespace ptq4vm;
using namespace ptq4vm::test;
using cuda::GemmTile;

struct Shape {
  int64_t M, N, K;
};
// Ragged on purpose: no size a multiple of any tile, K tails inside a 16-byte chunk, tiny and
// one-row cases, and the Vim dt_proj (K = 12) and x_proj (N = 44) widths.
const Shape kShapes[] = {{1, 1, 1},     {197, 44, 192}, {63, 130, 100}, {257, 200, 333},
                         {130, 72, 12}, {131, 129, 768}, {5, 300, 64},  {300, 8, 40}};
const GemmTile kTiles[] = {GemmTile::Large, GemmTile::Medium, GemmTile::Small, GemmTile::Simple};

int64_t lda_for(int64_t K) { return (K + 15) / 16 * 16 + 16; }  // 16-byte rows, padded

// s8 × s8 scalar reference (the CPU headers only declare u8 × s8).
std::vector<int32_t> ref_s8s8(int64_t M, int64_t N, int64_t K, const std::vector<int8_t>& A, int64_t lda,
                              const std::vector<int8_t>& W) {
  std::vector<int32_t> C(M * N);
  for (int64_t m = 0; m < M; ++m)
    for (int64_t n = 0; n < N; ++n) {
      int32_t s = 0;
      for (int64_t k = 0; k < K; ++k) s += int32_t(A[m * lda + k]) * int32_t(W[n * K + k]);
      C[m * N + n] = s;
    }
  return C;
}

}  // namespace

TEST_CASE("cuda gemm_u8s8_s32: exact s32 accumulators on every tile shape, ragged M/N/K") {
  require_gpu();
  cuda::Context ctx;
  Rng rng(101);
  for (const Shape& s : kShapes) {
    const int64_t lda = lda_for(s.K);
    auto A = random_u8(rng, s.M * lda);
    auto W = random_s8(rng, s.N * s.K);
    std::vector<int32_t> want(s.M * s.N);
    gemm_u8s8_s32_ref(s.M, s.N, s.K, A.data(), lda, W.data(), want.data(), s.N);
    auto w = cuda::upload_int8_weights(ctx, s.N, s.K, W.data());
    DeviceArray<uint8_t> dA(A);
    const int64_t ldc = s.N + 3;
    for (GemmTile t : kTiles) {
      DeviceArray<int32_t> dC(s.M * ldc);
      dC.fill_byte(0x7f);
      cuda::gemm_u8s8_s32(s.M, dA.get(), lda, w, dC.get(), ldc, nullptr, t);
      auto got = dC.download();
      for (int64_t m = 0; m < s.M; ++m)
        for (int64_t n = 0; n < s.N; ++n)
          CHECK_MSG(got[m * ldc + n] == want[m * s.N + n],
                    cuda::gemm_tile_name(t) << " M=" << s.M << " N=" << s.N << " K=" << s.K << ": C[" << m << ","
                                            << n << "] = " << got[m * ldc + n] << ", want " << want[m * s.N + n]);
      // The padding columns of C are untouched.
      for (int64_t m = 0; m < s.M; ++m) CHECK(got[m * ldc + s.N] == 0x7f7f7f7f);
    }
  }
}

TEST_CASE("cuda gemm_u8s8_s32: unaligned row stride falls back to the simple kernel, still exact") {
  require_gpu();
  cuda::Context ctx;
  Rng rng(102);
  const int64_t M = 77, N = 65, K = 45, lda = 47;  // lda not a multiple of 16
  auto A = random_u8(rng, M * lda);
  auto W = random_s8(rng, N * K);
  std::vector<int32_t> want(M * N);
  gemm_u8s8_s32_ref(M, N, K, A.data(), lda, W.data(), want.data(), N);
  auto w = cuda::upload_int8_weights(ctx, N, K, W.data());
  DeviceArray<uint8_t> dA(A);
  DeviceArray<int32_t> dC(M * N);
  cuda::gemm_u8s8_s32(M, dA.get(), lda, w, dC.get(), N, nullptr, GemmTile::Auto);
  CHECK(dC.download() == want);
}

TEST_CASE("cuda gemm_s8s8_s32: exact against a scalar s8×s8 product") {
  require_gpu();
  cuda::Context ctx;
  Rng rng(103);
  for (const Shape& s : kShapes) {
    const int64_t lda = lda_for(s.K);
    auto A = random_s8(rng, s.M * lda, -128, 127);
    auto W = random_s8(rng, s.N * s.K);
    auto want = ref_s8s8(s.M, s.N, s.K, A, lda, W);
    auto w = cuda::upload_int8_weights(ctx, s.N, s.K, W.data());
    DeviceArray<int8_t> dA(A);
    for (GemmTile t : kTiles) {
      DeviceArray<int32_t> dC(s.M * s.N);
      cuda::gemm_s8s8_s32(s.M, dA.get(), lda, w, dC.get(), s.N, nullptr, t);
      CHECK_MSG(dC.download() == want, cuda::gemm_tile_name(t) << " M=" << s.M << " N=" << s.N << " K=" << s.K);
    }
  }
}

TEST_CASE("cuda gemm_u8s8: fp32/fp16/u8 epilogue (per-token period, bias, accumulate) vs gemm_u8s8_f32_ref") {
  require_gpu();
  cuda::Context ctx;
  Rng rng(104);
  const int64_t period = 13;
  const Shape shapes[] = {{3 * 13 - 2, 44, 192}, {2 * 13, 130, 333}, {5 * 13 + 1, 200, 12}};
  for (const Shape& s : shapes) {
    const int64_t lda = lda_for(s.K);
    auto A = random_u8(rng, s.M * lda);
    auto W = random_s8(rng, s.N * s.K);
    auto a_scale = rng.floats(period, 0.001f, 0.05f);
    std::vector<int32_t> a_zero(period);
    for (auto& z : a_zero) z = static_cast<int32_t>(rng.integer(0, 255));
    auto w_scale = rng.floats(s.N, 0.001f, 0.02f);
    auto bias = rng.floats(s.N, -1.f, 1.f);
    auto c0 = rng.floats(s.M * s.N, -2.f, 2.f);  // accumulate target
    // Requantization of the first u8_cols columns for a next op.
    const int64_t u8_cols = std::max<int64_t>(1, s.N / 3);
    auto q_inv_smooth = rng.floats(u8_cols, 0.5f, 2.0f);
    auto q_inv_scale = rng.floats(period, 5.f, 40.f);
    std::vector<int32_t> q_zero(period);
    for (auto& z : q_zero) z = static_cast<int32_t>(rng.integer(60, 200));

    Int8Epilogue ep_h;
    ep_h.period = period;
    ep_h.a_scale = a_scale.data();
    ep_h.a_zero = a_zero.data();
    ep_h.w_scale = w_scale.data();
    ep_h.bias = bias.data();
    std::vector<float> want(s.M * s.N), want_acc = c0;
    gemm_u8s8_f32_ref(s.M, s.N, s.K, A.data(), lda, W.data(), ep_h, want.data(), s.N);
    ep_h.accumulate = true;
    gemm_u8s8_f32_ref(s.M, s.N, s.K, A.data(), lda, W.data(), ep_h, want_acc.data(), s.N);
    std::vector<uint8_t> want_q(s.M * u8_cols);
    quantize_u8_ref(s.M, u8_cols, period, want.data(), s.N, q_inv_smooth.data(), q_inv_scale.data(), q_zero.data(),
                    255, want_q.data(), u8_cols);

    auto w = cuda::upload_int8_weights(ctx, s.N, s.K, W.data());
    DeviceArray<uint8_t> dA(A);
    DeviceArray<float> d_as(a_scale), d_ws(w_scale), d_bias(bias), d_qis(q_inv_smooth), d_qsc(q_inv_scale);
    DeviceArray<int32_t> d_az(a_zero), d_qz(q_zero);
    for (GemmTile t : kTiles) {
      DeviceArray<float> dF(s.M * s.N), dAcc(c0);
      DeviceArray<__half> dH(s.M * s.N);
      DeviceArray<uint8_t> dQ(s.M * u8_cols);
      Int8Epilogue ep;
      ep.period = period;
      ep.a_scale = d_as.get();
      ep.a_zero = d_az.get();
      ep.w_scale = d_ws.get();
      ep.bias = d_bias.get();
      cuda::Int8GemmOut out;
      out.f32 = dF.get();
      out.ld_f32 = s.N;
      out.f16 = dH.get();
      out.ld_f16 = s.N;
      out.u8 = dQ.get();
      out.ld_u8 = u8_cols;
      out.u8_cols = u8_cols;
      out.quant.period = period;
      out.quant.inv_smooth = d_qis.get();
      out.quant.inv_scale = d_qsc.get();
      out.quant.zero = d_qz.get();
      cuda::gemm_u8s8(s.M, dA.get(), lda, w, ep, out, nullptr, t);
      cuda::Int8GemmOut out_acc;
      out_acc.f32 = dAcc.get();
      out_acc.ld_f32 = s.N;
      ep.accumulate = true;
      cuda::gemm_u8s8(s.M, dA.get(), lda, w, ep, out_acc, nullptr, t);

      auto f = dF.download();
      const double e_f32 = rel_max_err(f.data(), want.data(), f.size());
      CHECK_MSG(e_f32 <= 1e-6, cuda::gemm_tile_name(t) << ": fp32 epilogue rel err " << e_f32);
      auto acc = dAcc.download();
      const double e_acc = rel_max_err(acc.data(), want_acc.data(), acc.size());
      CHECK_MSG(e_acc <= 1e-6, cuda::gemm_tile_name(t) << ": accumulate rel err " << e_acc);
      // fp16 output: the fp32 value rounded once (bound 2^-11 relative + the fp32 tolerance).
      auto h = to_float(dH.download());
      auto want_h = round_half(want);
      const double e_f16 = rel_max_err(h.data(), want_h.data(), h.size());
      CHECK_MSG(e_f16 <= 1e-3, cuda::gemm_tile_name(t) << ": fp16 epilogue rel err " << e_f16);
      auto q = dQ.download();
      auto cmp = compare_u8(q.data(), u8_cols, want_q.data(), u8_cols, s.M, u8_cols);
      CHECK_MSG(cmp.worse == 0 && cmp.off_by_one <= std::max<int64_t>(2, cmp.total / 1000),
                cuda::gemm_tile_name(t) << ": requantized u8 differs: " << cmp.off_by_one << " off by one, "
                                        << cmp.worse << " worse " << cmp.first_bad);
    }
  }
}

TEST_CASE("cuda gemm_s8s8: epilogue without zero points") {
  require_gpu();
  cuda::Context ctx;
  Rng rng(105);
  const int64_t M = 45, N = 70, K = 96, lda = 96, period = 45;
  auto A = random_s8(rng, M * lda, -127, 127);
  auto W = random_s8(rng, N * K);
  auto acc = ref_s8s8(M, N, K, A, lda, W);
  auto a_scale = rng.floats(period, 0.001f, 0.05f);
  auto w_scale = rng.floats(N, 0.001f, 0.02f);
  std::vector<float> want(M * N);
  for (int64_t m = 0; m < M; ++m)
    for (int64_t n = 0; n < N; ++n)
      want[m * N + n] = static_cast<float>(acc[m * N + n]) * a_scale[m % period] * w_scale[n];
  auto w = cuda::upload_int8_weights(ctx, N, K, W.data());
  DeviceArray<int8_t> dA(A);
  DeviceArray<float> d_as(a_scale), d_ws(w_scale), dF(M * N);
  Int8Epilogue ep;
  ep.period = period;
  ep.a_scale = d_as.get();
  ep.w_scale = d_ws.get();
  cuda::Int8GemmOut out;
  out.f32 = dF.get();
  out.ld_f32 = N;
  for (GemmTile t : kTiles) {
    cuda::gemm_s8s8(M, dA.get(), lda, w, ep, out, nullptr, t);
    auto f = dF.download();
    CHECK_MSG(rel_max_err(f.data(), want.data(), f.size()) <= 1e-6, cuda::gemm_tile_name(t));
  }
}

TEST_CASE("cuda gemm_f16: tensor cores vs the fp32 reference on fp16-rounded operands") {
  require_gpu();
  cuda::Context ctx;
  Rng rng(106);
  for (const Shape& s : kShapes) {
    const int64_t lda = (s.K + 7) / 8 * 8 + 8;  // 16-byte rows
    auto Af = round_half(rng.floats(s.M * lda));
    auto Wf = round_half(rng.floats(s.N * s.K));
    auto bias = rng.floats(s.N);
    std::vector<float> want(s.M * s.N);
    gemm_f32_ref(false, true, s.M, s.N, s.K, Af.data(), lda, Wf.data(), s.K, bias.data(), false, want.data(), s.N);
    auto w = cuda::upload_f16_weights(ctx, s.N, s.K, Wf.data());
    DeviceArray<__half> dA(to_half(Af));
    DeviceArray<float> dbias(bias);
    for (GemmTile t : kTiles) {
      DeviceArray<__half> dH(s.M * s.N);
      DeviceArray<float> dF(s.M * s.N);
      cuda::F16GemmOut out;
      out.f16 = dH.get();
      out.ld_f16 = s.N;
      out.f32 = dF.get();
      out.ld_f32 = s.N;
      cuda::gemm_f16(s.M, dA.get(), lda, w, dbias.get(), out, nullptr, t);
      // fp32 accumulation of exact fp16 products: only the summation order differs from the
      // reference (K·2^-24 relative); fp16 output adds one rounding (2^-11).
      auto f = dF.download();
      const double ef = rel_max_err(f.data(), want.data(), f.size());
      CHECK_MSG(ef <= 1e-5, cuda::gemm_tile_name(t) << " M=" << s.M << " N=" << s.N << " K=" << s.K << ": fp32 out rel err " << ef);
      auto h = to_float(dH.download());
      const double eh = rel_max_err(h.data(), want.data(), h.size());
      CHECK_MSG(eh <= 1e-3, cuda::gemm_tile_name(t) << ": fp16 out rel err " << eh);
    }
  }
}

TEST_CASE("cuda gemm_f32_nt: fp32 SIMT GEMM vs gemm_f32_ref, accumulate") {
  require_gpu();
  Rng rng(107);
  const int64_t M = 67, N = 33, K = 129, lda = 131, ldw = 130, ldc = 35;
  auto A = rng.floats(M * lda), W = rng.floats(N * ldw), bias = rng.floats(N), C = rng.floats(M * ldc);
  auto want = C;
  gemm_f32_ref(false, true, M, N, K, A.data(), lda, W.data(), ldw, bias.data(), true, want.data(), ldc);
  DeviceArray<float> dA(A), dW(W), dB(bias), dC(C);
  cuda::gemm_f32_nt(M, N, K, dA.get(), lda, dW.get(), ldw, dB.get(), true, dC.get(), ldc, nullptr);
  auto got = dC.download();
  CHECK(rel_err_strided(got.data(), ldc, want.data(), ldc, M, N) <= 1e-5);
}

TEST_CASE("cuda gemm: bad arguments throw CudaArgError with the function name") {
  require_gpu();
  cuda::Context ctx;
  std::vector<int8_t> W(8 * 16, 1);
  auto w = cuda::upload_int8_weights(ctx, 8, 16, W.data());
  DeviceArray<uint8_t> dA(4 * 16);
  DeviceArray<int32_t> dC(4 * 8);
  bool threw = false;
  try {
    cuda::gemm_u8s8_s32(4, dA.get(), 8 /* lda < K */, w, dC.get(), 8, nullptr);
  } catch (const cuda::CudaArgError& e) {
    threw = std::string(e.what()).find("gemm_u8s8_s32") != std::string::npos;
  }
  CHECK(threw);
  threw = false;
  try {
    Int8Epilogue ep;  // no scales
    cuda::Int8GemmOut out;
    cuda::gemm_u8s8(4, dA.get(), 16, w, ep, out, nullptr);
  } catch (const cuda::CudaArgError&) {
    threw = true;
  }
  CHECK(threw);
}
