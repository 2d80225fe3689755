// The fused kernels of a Vim block against their DRAM-bandwidth floor: bytes each must move
// divided by the bandwidth a copy kernel reaches in the same run. Quantized two-direction scan
// (u8 in, u8 out), the FP16 scan, fused add+RMSNorm+quantize, fused conv+SiLU+quantize.
// Vim-Ti/S/B at batch 1, 8, 64. JSON lines "bench":"copy" / "fused".
#include <memory>

#include "bench_util.cuh"
#include "ptq4vm/cuda/conv1d.h"
#include "ptq4vm/cuda/norm.h"
#include "ptq4vm/cuda/scan.h"

using namespace ptq4vm;
using namespace ptq4vm::bench;
using cuda::DType;

namespace {

__global__ void copy_kernel(const float4* __restrict__ src, float4* __restrict__ dst, size_t n) {
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<size_t>(gridDim.x) * blockDim.x)
    dst[i] = src[i];
}

// GB/s (1e9 bytes) of read + write of a 256 MiB buffer.
double copy_bandwidth(cudaStream_t s, bool quick) {
  const size_t bytes = size_t(256) << 20, n = bytes / sizeof(float4);
  Buf a(bytes), b(bytes);
  PTQ4VM_CUDA_CHECK(cudaMemset(a.p, 1, bytes));
  int dev = 0, sms = 0;
  PTQ4VM_CUDA_CHECK(cudaGetDevice(&dev));
  PTQ4VM_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev));
  const double us = median_us(
      [&] {
        copy_kernel<<<sms * 8, 256, 0, s>>>(a.as<float4>(), b.as<float4>(), n);
        PTQ4VM_CUDA_CHECK_LAUNCH("copy_kernel");
      },
      s, 2, quick ? 3 : 15);
  return 2.0 * bytes / (us * 1e3);
}

void report(const char* kernel, const VimShape& v, int batch, double us, double bytes, double gbps) {
  const double floor_us = bytes / (gbps * 1e3);
  std::printf("%-28s %-7s %5d %10.2f %10.2f %7.2f %9.1f\n", kernel, v.name, batch, us, floor_us, us / floor_us,
              bytes / 1e6);
  std::printf(
      "{\"bench\":\"fused\",\"kernel\":\"%s\",\"model\":\"%s\",\"batch\":%d,\"us\":%.3f,\"floor_us\":%.3f,"
      "\"x_floor\":%.3f,\"bytes\":%.0f,\"achieved_gbps\":%.1f}\n",
      kernel, v.name, batch, us, floor_us, us / floor_us, bytes, bytes / (us * 1e3));
}

}  // namespace

int main(int argc, char** argv) {
  require_gpu_or_exit("bench_cuda_scan");
  try {
    print_device_line("bench_cuda_scan");
    const bool quick = quick_mode(argc, argv);
    cuda::Context ctx;
    cudaStream_t s = ctx.stream();
    const double gbps = copy_bandwidth(s, quick);
    std::printf("{\"bench\":\"copy\",\"gbps\":%.1f}\n", gbps);
    std::printf("# copy-kernel bandwidth %.1f GB/s\n", gbps);
    std::printf("%-28s %-7s %5s %10s %10s %7s %9s\n", "kernel", "model", "batch", "us", "floor_us", "xfloor", "MB");
    const int L = VimShape::kL, N = VimShape::kState;
    uint64_t seed = 7;
    for (const VimShape& v : kModels)
      for (int batch : kBatches) {
        const int D = v.D, E = v.d_inner(), R = v.dt_rank(), M = batch * L, W = R + 2 * N;
        const int iters = quick ? 3 : 30, warm = quick ? 1 : 5;
        // Operands as a Vim block produces them.
        std::unique_ptr<Buf> xz(new_halves(size_t(M) * 2 * E, -1.f, 1.f, seed++));  // in_proj out: x | z
        std::unique_ptr<Buf> qf(new_bytes(size_t(M) * E, seed++)), qb(new_bytes(size_t(M) * E, seed++));
        std::unique_ptr<Buf> hf(new_halves(size_t(M) * E, -1.f, 1.f, seed++)), hb(new_halves(size_t(M) * E, -1.f, 1.f, seed++));
        std::unique_ptr<Buf> df(new_halves(size_t(M) * E, -3.f, 0.f, seed++)), db(new_halves(size_t(M) * E, -3.f, 0.f, seed++));
        std::unique_ptr<Buf> xdf(new_halves(size_t(M) * W, -1.f, 1.f, seed++)), xdb(new_halves(size_t(M) * W, -1.f, 1.f, seed++));
        std::unique_ptr<Buf> A(new_floats(size_t(E) * N, -4.f, -0.5f, seed++)), Dv(new_floats(E, -1.f, 1.f, seed++)),
            dbias(new_floats(E, -0.5f, 0.5f, seed++)), smooth(new_floats(E, 0.5f, 2.f, seed++)),
            scale(new_floats(L, 0.01f, 0.02f, seed++)), inv_scale(new_floats(L, 20.f, 40.f, seed++)),
            conv_w(new_floats(size_t(E) * 4, -0.5f, 0.5f, seed++)), conv_b(new_floats(E, -0.1f, 0.1f, seed++)),
            norm_w(new_floats(D, 0.5f, 1.5f, seed++)), x32(new_floats(size_t(M) * D, -1.f, 1.f, seed++)),
            res(new_floats(size_t(M) * D, -1.f, 1.f, seed++));
        std::unique_ptr<Buf> zero(new_ints(L, 100, 150, seed++));
        Buf y8(size_t(M) * E), y16(size_t(M) * E * 2), qn(size_t(M) * D);

        cuda::QuantParams qp;
        qp.period = L;
        qp.inv_smooth = smooth->as<float>();
        qp.inv_scale = inv_scale->as<float>();
        qp.zero = zero->as<int32_t>();

        // --- quantized two-direction scan: u8 u, fp16 delta/B/C/z, u8 y
        cuda::BiScanArgs sa;
        sa.B = batch;
        sa.L = L;
        sa.E = E;
        sa.N = N;
        sa.u_type = DType::U8;
        sa.p_type = DType::F16;
        sa.y_type = DType::U8;
        Buf* us8[2] = {qf.get(), qb.get()};
        Buf* ds[2] = {df.get(), db.get()};
        Buf* xs[2] = {xdf.get(), xdb.get()};
        cuda::BiScanDirection* dirs[2] = {&sa.fwd, &sa.bwd};
        for (int i = 0; i < 2; ++i) {
          auto* d = dirs[i];
          d->u = us8[i]->p;
          d->ldu = E;
          d->u_dequant.period = L;
          d->u_dequant.scale = scale->as<float>();
          d->u_dequant.zero = zero->as<int32_t>();
          d->u_dequant.smooth = smooth->as<float>();
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
        sa.z = xz->as<__half>() + E;
        sa.ldz = 2 * E;
        sa.y = y8.p;
        sa.ldy = E;
        sa.y_quant = qp;
        const double scan_bytes = double(M) * E * (2 * 1 + 2 * 2 + 2 + 1) + 2.0 * M * 2 * N * 2;
        for (cuda::KernelMode mode : {cuda::KernelMode::Fast, cuda::KernelMode::Simple}) {
          cuda::set_kernel_mode(mode);
          const double us = median_us([&] { cuda::bidirectional_scan(sa, s); }, s, warm,
                                      mode == cuda::KernelMode::Simple ? std::max(3, iters / 5) : iters);
          report(mode == cuda::KernelMode::Fast ? "scan_q8_fused" : "scan_q8_fused_simple", v, batch, us, scan_bytes, gbps);
        }
        cuda::set_kernel_mode(cuda::KernelMode::Fast);

        // --- FP16 two-direction scan (the FP16 path): f16 u, f16 y
        cuda::BiScanArgs sh = sa;
        sh.u_type = DType::F16;
        sh.y_type = DType::F16;
        sh.fwd.u = hf->p;
        sh.bwd.u = hb->p;
        sh.y = y16.p;
        const double scanh_bytes = double(M) * E * (2 * 2 + 2 * 2 + 2 + 2) + 2.0 * M * 2 * N * 2;
        report("scan_f16_fused", v, batch, median_us([&] { cuda::bidirectional_scan(sh, s); }, s, warm, iters),
               scanh_bytes, gbps);

        // --- add + RMSNorm + per-token quantize (fp32 x and residual, in place)
        cuda::AddRmsNormArgs na;
        na.rows = M;
        na.D = D;
        na.x = x32->p;
        na.residual_in = res->as<float>();
        na.residual_out = res->as<float>();
        na.weight = norm_w->as<float>();
        na.out_type = DType::U8;
        na.out = qn.p;
        na.quant = qp;
        na.quant.inv_smooth = nullptr;
        report("add_rmsnorm_q8", v, batch, median_us([&] { cuda::add_rmsnorm(na, s); }, s, warm, iters),
               double(M) * D * (4 + 4 + 4 + 1), gbps);

        // --- conv1d + SiLU + quantize, both directions, from the f16 in_proj output
        cuda::BiConvArgs ca;
        ca.B = batch;
        ca.L = L;
        ca.E = E;
        ca.K = 4;
        ca.x_type = DType::F16;
        ca.x = xz->p;
        ca.ldx = 2 * E;
        for (auto* d : {&ca.fwd, &ca.bwd}) {
          d->weight = conv_w->as<float>();
          d->bias = conv_b->as<float>();
          d->ld_u8 = E;
          d->quant = qp;
        }
        ca.fwd.u8 = qf->as<uint8_t>();
        ca.bwd.u8 = qb->as<uint8_t>();
        report("conv1d_silu_q8_bidir", v, batch,
               median_us([&] { cuda::bidirectional_conv1d_silu(ca, s); }, s, warm, iters), double(M) * E * (2 + 1 + 1),
               gbps);
      }
  } catch (const std::exception& e) {
    std::printf("# bench_cuda_scan failed: %s\n", e.what());
    return 1;
  }
  return 0;
}
