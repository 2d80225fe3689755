// One Vim block (bimamba v2) forward on the GPU, INT8 path vs FP16 path, built from our
// kernels with random weights (timing does not depend on the values): an estimate of the
// end-to-end speedup before the Node bundle runs (a Vim forward is 24 such blocks plus a patch
// embedding and a head). Per-step medians show what limits it. JSON lines "bench":"block".
//   INT8: add+RMSNorm+quantize -> in_proj (u8·s8 -> f16) -> conv+SiLU+quantize (both dirs) ->
//         x_proj ×2 (-> f16 B, C and u8 dt input) -> dt_proj ×2 (-> f16 delta) ->
//         quantized scan (both dirs, -> u8) -> out_proj (-> f32)
//   FP16: add+RMSNorm (-> f16) -> in_proj -> conv+SiLU (both dirs) -> x_proj ×2 -> dt_proj ×2 ->
//         scan (both dirs) -> out_proj (-> f16)
#include <memory>
#include <utility>

#include "bench_util.cuh"
#include "ptq4vm/cuda/conv1d.h"
#include "ptq4vm/cuda/gemm.h"
#include "ptq4vm/cuda/gemm_int8.h"
#include "ptq4vm/cuda/norm.h"
#include "ptq4vm/cuda/scan.h"

using namespace ptq4vm;
using namespace ptq4vm::bench;
using cuda::DType;

namespace {

using Step = std::pair<const char*, std::function<void()>>;
using BufPtr = std::unique_ptr<Buf>;

cuda::Int8Weights int8_weights(cuda::Context& ctx, int N, int K, uint64_t seed) {
  auto q = rand_bytes(size_t(N) * K, seed, 1, 254);
  return cuda::upload_int8_weights(ctx, N, K, reinterpret_cast<const int8_t*>(q.data()));
}
cuda::F16Weights f16_weights(cuda::Context& ctx, int N, int K, uint64_t seed) {
  auto w = rand_floats(size_t(N) * K, -0.05f, 0.05f, seed);
  return cuda::upload_f16_weights(ctx, N, K, w.data());
}

void time_block(const char* path, const VimShape& v, int batch, const std::vector<Step>& steps, cudaStream_t s,
                bool quick, double* total_out) {
  const int warm = quick ? 1 : 3, iters = quick ? 3 : 20;
  const double total = median_us(
      [&] {
        for (auto& st : steps) st.second();
      },
      s, warm, iters);
  *total_out = total;
  std::printf("{\"bench\":\"block_steps\",\"path\":\"%s\",\"model\":\"%s\",\"batch\":%d,\"total_us\":%.3f,\"steps\":{",
              path, v.name, batch, total);
  for (size_t i = 0; i < steps.size(); ++i) {
    const double us = median_us(steps[i].second, s, warm, iters);
    std::printf("%s\"%s\":%.3f", i ? "," : "", steps[i].first, us);
  }
  std::printf("}}\n");
}

}  // namespace

int main(int argc, char** argv) {
  require_gpu_or_exit("bench_cuda_block");
  try {
    print_device_line("bench_cuda_block");
    const bool quick = quick_mode(argc, argv);
    cuda::Context ctx;
    cudaStream_t s = ctx.stream();
    std::printf("%-7s %5s %12s %12s %8s\n", "model", "batch", "int8_us", "fp16_us", "speedup");
    uint64_t seed = 100;
    for (const VimShape& v : kModels) {
      const int D = v.D, E = v.d_inner(), R = v.dt_rank(), N = VimShape::kState, L = VimShape::kL;
      const int W = R + 2 * N, W8 = (W + 7) / 8 * 8, R16 = (R + 15) / 16 * 16;
      // Weights (INT8 and FP16 copies of each linear), shared by the batches.
      auto in8 = int8_weights(ctx, 2 * E, D, seed++), out8 = int8_weights(ctx, D, E, seed++);
      auto xf8 = int8_weights(ctx, W, E, seed++), xb8 = int8_weights(ctx, W, E, seed++);
      auto dtf8 = int8_weights(ctx, E, R, seed++), dtb8 = int8_weights(ctx, E, R, seed++);
      auto in16 = f16_weights(ctx, 2 * E, D, seed++), out16 = f16_weights(ctx, D, E, seed++);
      auto xf16 = f16_weights(ctx, W, E, seed++), xb16 = f16_weights(ctx, W, E, seed++);
      auto dtf16 = f16_weights(ctx, E, R, seed++), dtb16 = f16_weights(ctx, E, R, seed++);
      BufPtr A(new_floats(size_t(E) * N, -4.f, -0.5f, seed++)), Dv(new_floats(E, -1.f, 1.f, seed++)),
          dbias(new_floats(E, -0.5f, 0.5f, seed++)), conv_w(new_floats(size_t(E) * 4, -0.5f, 0.5f, seed++)),
          conv_b(new_floats(E, -0.1f, 0.1f, seed++)), norm_w(new_floats(D, 0.5f, 1.5f, seed++));
      // Quantization parameters (per token L, per channel up to 2E).
      BufPtr a_scale(new_floats(L, 0.01f, 0.02f, seed++)), inv_scale(new_floats(L, 20.f, 40.f, seed++)),
          w_scale(new_floats(2 * E, 0.001f, 0.002f, seed++)), smooth(new_floats(2 * E, 0.5f, 2.f, seed++));
      BufPtr zero(new_ints(L, 100, 150, seed++));
      Int8Epilogue ep;
      ep.period = L;
      ep.a_scale = a_scale->as<float>();
      ep.a_zero = zero->as<int32_t>();
      ep.w_scale = w_scale->as<float>();
      cuda::QuantParams qp;
      qp.period = L;
      qp.inv_smooth = smooth->as<float>();
      qp.inv_scale = inv_scale->as<float>();
      qp.zero = zero->as<int32_t>();
      cuda::DequantParams dq;
      dq.period = L;
      dq.scale = a_scale->as<float>();
      dq.zero = zero->as<int32_t>();
      dq.smooth = smooth->as<float>();

      for (int batch : kBatches) {
        const int M = batch * L;
        // ---- INT8 path buffers
        BufPtr x32(new_floats(size_t(M) * D, -1.f, 1.f, seed++)), res(new_floats(size_t(M) * D, -1.f, 1.f, seed++));
        Buf qin(size_t(M) * D), xz(size_t(M) * 2 * E * 2), qf(size_t(M) * E), qb(size_t(M) * E);
        Buf xdf(size_t(M) * W * 2), xdb(size_t(M) * W * 2), qdtf(size_t(M) * R16), qdtb(size_t(M) * R16);
        Buf delf(size_t(M) * E * 2), delb(size_t(M) * E * 2), y8(size_t(M) * E), out32(size_t(M) * D * 4);
        PTQ4VM_CUDA_CHECK(cudaMemset(qdtf.p, 7, qdtf.bytes));
        PTQ4VM_CUDA_CHECK(cudaMemset(qdtb.p, 7, qdtb.bytes));

        cuda::AddRmsNormArgs n8;
        n8.rows = M;
        n8.D = D;
        n8.x = x32->p;
        n8.residual_in = res->as<float>();
        n8.residual_out = res->as<float>();
        n8.weight = norm_w->as<float>();
        n8.out_type = DType::U8;
        n8.out = qin.p;
        n8.quant = qp;
        cuda::Int8GemmOut o_in;
        o_in.f16 = xz.as<__half>();
        o_in.ld_f16 = 2 * E;
        cuda::BiConvArgs c8;
        c8.B = batch;
        c8.L = L;
        c8.E = E;
        c8.K = 4;
        c8.x_type = DType::F16;
        c8.x = xz.p;
        c8.ldx = 2 * E;
        for (auto* d : {&c8.fwd, &c8.bwd}) {
          d->weight = conv_w->as<float>();
          d->bias = conv_b->as<float>();
          d->ld_u8 = E;
          d->quant = qp;
        }
        c8.fwd.u8 = qf.as<uint8_t>();
        c8.bwd.u8 = qb.as<uint8_t>();
        auto x_out = [&](Buf& xd, Buf& qdt) {
          cuda::Int8GemmOut o;
          o.f16 = xd.as<__half>();
          o.ld_f16 = W;
          o.u8 = qdt.as<uint8_t>();
          o.ld_u8 = R16;
          o.u8_cols = R;
          o.quant = qp;
          return o;
        };
        const cuda::Int8GemmOut o_xf = x_out(xdf, qdtf), o_xb = x_out(xdb, qdtb);
        cuda::Int8GemmOut o_dtf, o_dtb, o_out;
        o_dtf.f16 = delf.as<__half>();
        o_dtf.ld_f16 = E;
        o_dtb.f16 = delb.as<__half>();
        o_dtb.ld_f16 = E;
        o_out.f32 = out32.as<float>();
        o_out.ld_f32 = D;
        cuda::BiScanArgs s8;
        s8.B = batch;
        s8.L = L;
        s8.E = E;
        s8.N = N;
        s8.u_type = DType::U8;
        s8.p_type = DType::F16;
        s8.y_type = DType::U8;
        Buf* us[2] = {&qf, &qb};
        Buf* ds[2] = {&delf, &delb};
        Buf* xs[2] = {&xdf, &xdb};
        cuda::BiScanDirection* dirs[2] = {&s8.fwd, &s8.bwd};
        for (int i = 0; i < 2; ++i) {
          auto* d = dirs[i];
          d->u = us[i]->p;
          d->ldu = E;
          d->u_dequant = dq;
          d->delta = ds[i]->p;
          d->lddelta = E;
          d->delta_bias = dbias->as<float>();
          d->A = A->as<float>();
          d->Bm = xs[i]->as<__half>() + R;
          d->ldB = W;
          d->Cm = xs[i]->as<__half>() + R + N;
          d->ldC = W;
          d->D = Dv->as<float>();
        }
        s8.z = xz.as<__half>() + E;
        s8.ldz = 2 * E;
        s8.y = y8.p;
        s8.ldy = E;
        s8.y_quant = qp;
        const std::vector<Step> int8_steps = {
            {"add_rmsnorm_q8", [&] { cuda::add_rmsnorm(n8, s); }},
            {"in_proj", [&] { cuda::gemm_u8s8(M, qin.as<uint8_t>(), D, in8, ep, o_in, s); }},
            {"conv_q8", [&] { cuda::bidirectional_conv1d_silu(c8, s); }},
            {"x_proj_x2",
             [&] {
               cuda::gemm_u8s8(M, qf.as<uint8_t>(), E, xf8, ep, o_xf, s);
               cuda::gemm_u8s8(M, qb.as<uint8_t>(), E, xb8, ep, o_xb, s);
             }},
            {"dt_proj_x2",
             [&] {
               cuda::gemm_u8s8(M, qdtf.as<uint8_t>(), R16, dtf8, ep, o_dtf, s);
               cuda::gemm_u8s8(M, qdtb.as<uint8_t>(), R16, dtb8, ep, o_dtb, s);
             }},
            {"scan_q8", [&] { cuda::bidirectional_scan(s8, s); }},
            {"out_proj", [&] { cuda::gemm_u8s8(M, y8.as<uint8_t>(), E, out8, ep, o_out, s); }},
        };

        // ---- FP16 path buffers
        BufPtr x16(new_halves(size_t(M) * D, -1.f, 1.f, seed++));
        Buf hn(size_t(M) * D * 2), uf(size_t(M) * E * 2), ub(size_t(M) * E * 2), xdf16(size_t(M) * W8 * 2),
            xdb16(size_t(M) * W8 * 2), y16(size_t(M) * E * 2), out16b(size_t(M) * D * 2);
        PTQ4VM_CUDA_CHECK(cudaMemset(xdf16.p, 0, xdf16.bytes));
        PTQ4VM_CUDA_CHECK(cudaMemset(xdb16.p, 0, xdb16.bytes));
        cuda::AddRmsNormArgs n16 = n8;
        n16.x_type = DType::F16;
        n16.x = x16->p;
        n16.out_type = DType::F16;
        n16.out = hn.p;
        cuda::F16GemmOut f_in, f_xf, f_xb, f_dtf, f_dtb, f_out;
        f_in.f16 = xz.as<__half>();
        f_in.ld_f16 = 2 * E;
        f_xf.f16 = xdf16.as<__half>();
        f_xf.ld_f16 = W8;
        f_xb.f16 = xdb16.as<__half>();
        f_xb.ld_f16 = W8;
        f_dtf.f16 = delf.as<__half>();
        f_dtf.ld_f16 = E;
        f_dtb.f16 = delb.as<__half>();
        f_dtb.ld_f16 = E;
        f_out.f16 = out16b.as<__half>();
        f_out.ld_f16 = D;
        cuda::BiConvArgs c16 = c8;
        c16.fwd.u8 = c16.bwd.u8 = nullptr;
        c16.fwd.out = uf.p;
        c16.bwd.out = ub.p;
        c16.fwd.out_type = c16.bwd.out_type = DType::F16;
        c16.fwd.ld_out = c16.bwd.ld_out = E;
        cuda::BiScanArgs s16 = s8;
        s16.u_type = DType::F16;
        s16.y_type = DType::F16;
        s16.fwd.u = uf.p;
        s16.bwd.u = ub.p;
        s16.fwd.Bm = xdf16.as<__half>() + R;
        s16.fwd.Cm = xdf16.as<__half>() + R + N;
        s16.bwd.Bm = xdb16.as<__half>() + R;
        s16.bwd.Cm = xdb16.as<__half>() + R + N;
        s16.fwd.ldB = s16.fwd.ldC = s16.bwd.ldB = s16.bwd.ldC = W8;
        s16.y = y16.p;
        const std::vector<Step> fp16_steps = {
            {"add_rmsnorm", [&] { cuda::add_rmsnorm(n16, s); }},
            {"in_proj", [&] { cuda::gemm_f16(M, hn.as<__half>(), D, in16, nullptr, f_in, s); }},
            {"conv", [&] { cuda::bidirectional_conv1d_silu(c16, s); }},
            {"x_proj_x2",
             [&] {
               cuda::gemm_f16(M, uf.as<__half>(), E, xf16, nullptr, f_xf, s);
               cuda::gemm_f16(M, ub.as<__half>(), E, xb16, nullptr, f_xb, s);
             }},
            {"dt_proj_x2",
             [&] {
               cuda::gemm_f16(M, xdf16.as<__half>(), W8, dtf16, nullptr, f_dtf, s);
               cuda::gemm_f16(M, xdb16.as<__half>(), W8, dtb16, nullptr, f_dtb, s);
             }},
            {"scan", [&] { cuda::bidirectional_scan(s16, s); }},
            {"out_proj", [&] { cuda::gemm_f16(M, y16.as<__half>(), E, out16, nullptr, f_out, s); }},
        };

        double t8 = 0, t16 = 0;
        time_block("int8", v, batch, int8_steps, s, quick, &t8);
        time_block("fp16", v, batch, fp16_steps, s, quick, &t16);
        std::printf("%-7s %5d %12.2f %12.2f %8.2f\n", v.name, batch, t8, t16, t16 / t8);
        std::printf(
            "{\"bench\":\"block\",\"model\":\"%s\",\"batch\":%d,\"int8_us\":%.3f,\"fp16_us\":%.3f,\"speedup\":%.3f}\n",
            v.name, batch, t8, t16, t16 / t8);
      }
    }
  } catch (const std::exception& e) {
    std::printf("# bench_cuda_block failed: %s\n", e.what());
    return 1;
  }
  return 0;
}
