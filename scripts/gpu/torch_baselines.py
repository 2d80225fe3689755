#!/usr/bin/env python3
"""Torch baselines for the CUDA GEMM benchmark (issue 6): torch._int_mm (cuBLASLt INT8, int32
output) and fp16 F.linear (cuBLAS, fp32 accumulation) at the GEMMs of a Vim block, Vim-Ti/S/B,
M = batch*197 for batch 1, 8, 64. Same timing method as native/bench/cuda: warm-up, then one
pair of CUDA events around each launch, median. One JSON line per shape ("bench":"torch_gemm").

_int_mm needs M > 16 and K, N multiples of 8: other shapes are zero-padded up (noted as
"padded": true), which only makes cuBLASLt do more work.
"""
import argparse
import json
import math
import statistics
import sys

MODELS = [("vim-ti", 192), ("vim-s", 384), ("vim-b", 768)]
BATCHES = [1, 8, 64]
L, D_STATE = 197, 16


def gemms(D):
    d_inner, dt_rank = 2 * D, math.ceil(D / 16)
    return [("in_proj", 2 * d_inner, D), ("x_proj", dt_rank + 2 * D_STATE, d_inner),
            ("dt_proj", d_inner, dt_rank), ("out_proj", D, d_inner)]


def median_us(torch, fn, warmup, iters):
    for _ in range(warmup):
        fn()
    starts = [torch.cuda.Event(enable_timing=True) for _ in range(iters)]
    ends = [torch.cuda.Event(enable_timing=True) for _ in range(iters)]
    for i in range(iters):
        starts[i].record()
        fn()
        ends[i].record()
    torch.cuda.synchronize()
    return statistics.median(s.elapsed_time(e) * 1000.0 for s, e in zip(starts, ends))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", help="also write the JSON lines to this file")
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    try:
        import torch
        import torch.nn.functional as F
    except Exception as e:  # noqa: BLE001 - report and let the caller record the step
        print(f"# torch unavailable: {e}")
        return 2
    if not torch.cuda.is_available():
        print("# torch sees no CUDA device")
        return 2
    dev = torch.device("cuda")
    name = torch.cuda.get_device_name(0)
    print(f"# torch {torch.__version__} (CUDA {torch.version.cuda}) on {name}")
    lines = []
    header = f"{'model':7} {'batch':>5} {'gemm':9} {'M':>6} {'N':>5} {'K':>5} {'int_mm_us':>10} {'fp16_us':>9} {'speedup':>8}"
    print(header)
    g = torch.Generator(device=dev)
    g.manual_seed(0)
    for model, D in MODELS:
        for batch in BATCHES:
            M = batch * L
            for gname, N, K in gemms(D):
                iters = 3 if args.quick else (30 if M >= 4096 else 50)
                warm = 1 if args.quick else 5
                Np, Kp = -(-N // 8) * 8, -(-K // 8) * 8
                a8 = torch.randint(-128, 127, (M, Kp), dtype=torch.int8, device=dev, generator=g)
                b8 = torch.randint(-127, 127, (Kp, Np), dtype=torch.int8, device=dev, generator=g)
                int_mm_us = None
                err = None
                try:
                    int_mm_us = median_us(torch, lambda: torch._int_mm(a8, b8), warm, iters)
                except Exception as e:  # noqa: BLE001
                    err = str(e).splitlines()[0][:200]
                a16 = torch.randn(M, K, dtype=torch.float16, device=dev, generator=g)
                w16 = torch.randn(N, K, dtype=torch.float16, device=dev, generator=g) * 0.05
                bias = torch.randn(N, dtype=torch.float16, device=dev, generator=g)
                fp16_us = median_us(torch, lambda: F.linear(a16, w16, bias), warm, iters)
                rec = {"bench": "torch_gemm", "device": name, "model": model, "batch": batch, "gemm": gname,
                       "M": M, "N": N, "K": K, "int_mm_us": int_mm_us, "fp16_us": fp16_us,
                       "padded": (Np, Kp) != (N, K)}
                if err:
                    rec["int_mm_error"] = err
                lines.append(json.dumps(rec))
                sp = f"{fp16_us / int_mm_us:8.2f}" if int_mm_us else "     n/a"
                im = f"{int_mm_us:10.2f}" if int_mm_us else "       n/a"
                print(f"{model:7} {batch:5d} {gname:9} {M:6d} {N:5d} {K:5d} {im} {fp16_us:9.2f} {sp}")
                print(lines[-1])
                sys.stdout.flush()
    if args.out:
        with open(args.out, "w") as f:
            f.write("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
