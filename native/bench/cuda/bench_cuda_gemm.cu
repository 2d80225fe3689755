// Our INT8 GEMM (fp16 output with the full epilogue, and raw s32 like torch._int_mm) vs our
// FP16 GEMM at the GEMMs of a Vim block: Vim-Ti/S/B, M = batch·197 for batch 1, 8, 64.
// Prints a table and one JSON line per measurement ("bench":"gemm").
#include <cmath>
#include <memory>

#include "bench_util.cuh"
#include "ptq4vm/cuda/gemm.h"
#include "ptq4vm/cuda/gemm_int8.h"

using namespace ptq4vm;
using namespace ptq4vm::bench;
using cuda::GemmTile;

namespace {

struct GemmShape {
  const char* name;
  int N, K;
};

struct Result {
  double int8_f16_us, int8_s32_us, fp16_us;
};

Result run_one(cuda::Context& ctx, int M, int N, int K, GemmTile tile, int warmup, int iters, uint64_t seed) {
  const int lda8 = (K + 15) / 16 * 16, lda16 = (K + 7) / 8 * 8;
  auto qw = rand_bytes(static_cast<size_t>(N) * K, seed, 0, 255);
  auto w8 = cuda::upload_int8_weights(ctx, N, K, reinterpret_cast<const int8_t*>(qw.data()));
  auto wf = rand_floats(static_cast<size_t>(N) * K, -0.1f, 0.1f, seed + 1);
  auto w16 = cuda::upload_f16_weights(ctx, N, K, wf.data());
  std::unique_ptr<Buf> A8(new_bytes(static_cast<size_t>(M) * lda8, seed + 2));
  std::unique_ptr<Buf> A16(new_halves(static_cast<size_t>(M) * lda16, -1.f, 1.f, seed + 3));
  std::unique_ptr<Buf> a_scale(new_floats(197, 0.01f, 0.02f, seed + 4)), w_scale(new_floats(N, 0.001f, 0.002f, seed + 5)),
      bias(new_floats(N, -1.f, 1.f, seed + 6));
  std::unique_ptr<Buf> a_zero(new_ints(197, 100, 150, seed + 7));
  Buf C16(static_cast<size_t>(M) * N * sizeof(__half)), C32(static_cast<size_t>(M) * N * sizeof(int32_t));

  Int8Epilogue ep;
  ep.period = 197;
  ep.a_scale = a_scale->as<float>();
  ep.a_zero = a_zero->as<int32_t>();
  ep.w_scale = w_scale->as<float>();
  ep.bias = bias->as<float>();
  cuda::Int8GemmOut out8;
  out8.f16 = C16.as<__half>();
  out8.ld_f16 = N;
  cuda::F16GemmOut out16;
  out16.f16 = C16.as<__half>();
  out16.ld_f16 = N;
  cudaStream_t s = ctx.stream();
  Result r;
  r.int8_f16_us = median_us([&] { cuda::gemm_u8s8(M, A8->as<uint8_t>(), lda8, w8, ep, out8, s, tile); }, s, warmup, iters);
  r.int8_s32_us =
      median_us([&] { cuda::gemm_u8s8_s32(M, A8->as<uint8_t>(), lda8, w8, C32.as<int32_t>(), N, s, tile); }, s, warmup, iters);
  r.fp16_us = median_us([&] { cuda::gemm_f16(M, A16->as<__half>(), lda16, w16, bias->as<float>(), out16, s, tile); }, s,
                        warmup, iters);
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  require_gpu_or_exit("bench_cuda_gemm");
  try {
    print_device_line("bench_cuda_gemm");
    const bool quick = quick_mode(argc, argv);
    cuda::Context ctx;
    std::printf("%-7s %5s %-9s %6s %5s %5s %-10s %11s %11s %10s %8s %9s\n", "model", "batch", "gemm", "M", "N", "K",
                "tile", "int8_f16us", "int8_s32us", "fp16_us", "speedup", "int8TOPS");
    uint64_t seed = 1;
    for (const VimShape& v : kModels) {
      const GemmShape gemms[] = {{"in_proj", 2 * v.d_inner(), v.D},
                                 {"x_proj", v.dt_rank() + 2 * VimShape::kState, v.d_inner()},
                                 {"dt_proj", v.d_inner(), v.dt_rank()},
                                 {"out_proj", v.D, v.d_inner()}};
      for (int batch : kBatches) {
        const int M = batch * VimShape::kL;
        for (const GemmShape& g : gemms) {
          const int iters = quick ? 3 : (M >= 4096 ? 30 : 50);
          const GemmTile tile = cuda::choose_gemm_tile(M, g.N, ctx.device());
          const Result r = run_one(ctx, M, g.N, g.K, GemmTile::Auto, quick ? 1 : 5, iters, seed++);
          const double ops = 2.0 * M * g.N * g.K;
          std::printf("%-7s %5d %-9s %6d %5d %5d %-10s %11.2f %11.2f %10.2f %8.2f %9.1f\n", v.name, batch, g.name, M,
                      g.N, g.K, cuda::gemm_tile_name(tile), r.int8_f16_us, r.int8_s32_us, r.fp16_us,
                      r.fp16_us / r.int8_f16_us, ops / (r.int8_f16_us * 1e6));
          std::printf(
              "{\"bench\":\"gemm\",\"model\":\"%s\",\"batch\":%d,\"gemm\":\"%s\",\"M\":%d,\"N\":%d,\"K\":%d,"
              "\"tile\":\"%s\",\"int8_f16_us\":%.3f,\"int8_s32_us\":%.3f,\"fp16_us\":%.3f,"
              "\"speedup_int8_vs_fp16\":%.3f,\"int8_tops\":%.2f,\"fp16_tflops\":%.2f}\n",
              v.name, batch, g.name, M, g.N, g.K, cuda::gemm_tile_name(tile), r.int8_f16_us, r.int8_s32_us, r.fp16_us,
              r.fp16_us / r.int8_f16_us, ops / (r.int8_f16_us * 1e6), ops / (r.fp16_us * 1e6));
        }
      }
    }
    // The acceptance shape with every kernel variant, to see what each tile shape gives.
    const int M = 64 * 197, N = 3072, K = 768;
    std::printf("# Vim-B in_proj (M=%d N=%d K=%d) per tile shape\n", M, N, K);
    for (GemmTile t : {GemmTile::Large, GemmTile::Medium, GemmTile::Small, GemmTile::Simple}) {
      const Result r = run_one(ctx, M, N, K, t, quick ? 1 : 3, quick ? 3 : (t == GemmTile::Simple ? 5 : 30), 999);
      std::printf(
          "{\"bench\":\"gemm_tile\",\"model\":\"vim-b\",\"batch\":64,\"gemm\":\"in_proj\",\"M\":%d,\"N\":%d,\"K\":%d,"
          "\"tile\":\"%s\",\"int8_f16_us\":%.3f,\"int8_s32_us\":%.3f,\"fp16_us\":%.3f}\n",
          M, N, K, cuda::gemm_tile_name(t), r.int8_f16_us, r.int8_s32_us, r.fp16_us);
    }
  } catch (const std::exception& e) {
    std::printf("# bench_cuda_gemm failed: %s\n", e.what());
    return 1;
  }
  return 0;
}
