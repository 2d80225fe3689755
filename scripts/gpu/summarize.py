#!/usr/bin/env python3
"""Summary of a scripts/gpu-check.sh run: step statuses, test counts, sanitizer verdict, GEMM
table (ours vs torch), the issue-6 acceptance ratios, fused-kernel floors, block estimate.
Reads the run folder; prints a table and writes summary.json / summary.md next to the logs."""
import argparse
import json
import os
import re
import sys


def read_jsonl(path):
    out = []
    if not os.path.exists(path):
        return out
    with open(path, errors="replace") as f:
        for line in f:
            line = line.strip()
            if line.startswith("{") and line.endswith("}"):
                try:
                    out.append(json.loads(line))
                except json.JSONDecodeError:
                    pass
    return out


def read(path):
    return open(path, errors="replace").read() if os.path.exists(path) else ""


def tap_counts(text):
    ok = len(re.findall(r"^ok \d+ - (?!.*# SKIP)", text, re.M))
    skip = len(re.findall(r"^ok \d+ - .*# SKIP", text, re.M))
    failed = re.findall(r"^not ok \d+ - (.*)$", text, re.M)
    planned = re.search(r"^1\.\.(\d+)$", text, re.M)
    return {"passed": ok, "skipped": skip, "failed": len(failed), "failed_names": failed,
            "planned": int(planned.group(1)) if planned else None}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", required=True)
    a = ap.parse_args()
    d = a.dir
    info = {}
    for line in read(os.path.join(d, "info.txt")).splitlines():
        if "=" in line:
            k, v = line.split("=", 1)
            info[k.strip()] = v.strip()
    steps = []
    for line in read(os.path.join(d, "steps.tsv")).splitlines():
        parts = line.split("\t")
        if len(parts) >= 4:
            steps.append({"step": parts[0], "status": parts[1], "rc": parts[2], "seconds": float(parts[3])})
    tests = tap_counts(read(os.path.join(d, "tests.tap")))
    san_text = read(os.path.join(d, "sanitizer.txt"))
    san = re.findall(r"ERROR SUMMARY: (\d+) error", san_text)
    sanitizer = {"runs": len(san), "errors": sum(int(x) for x in san),
                 "tap": tap_counts(san_text)}
    bench = read_jsonl(os.path.join(d, "bench.jsonl"))
    ours = {(r["model"], r["batch"], r["gemm"]): r for r in bench if r.get("bench") == "gemm"}
    torch_rows = {(r["model"], r["batch"], r["gemm"]): r for r in bench if r.get("bench") == "torch_gemm"}
    rows = []
    for key, r in ours.items():
        t = torch_rows.get(key, {})
        row = {"model": key[0], "batch": key[1], "gemm": key[2], "M": r["M"], "N": r["N"], "K": r["K"],
               "tile": r.get("tile"), "ours_int8_f16_us": r["int8_f16_us"], "ours_int8_s32_us": r["int8_s32_us"],
               "ours_fp16_us": r["fp16_us"], "torch_int_mm_us": t.get("int_mm_us"),
               "torch_fp16_us": t.get("fp16_us")}
        rows.append(row)
    acc = {}
    key = ("vim-b", 64, "in_proj")
    if key in ours:
        r, t = ours[key], torch_rows.get(key, {})
        if t.get("int_mm_us"):
            acc["int8_s32_vs_cublaslt_int8"] = t["int_mm_us"] / r["int8_s32_us"]
            acc["int8_f16_epilogue_vs_cublaslt_int8"] = t["int_mm_us"] / r["int8_f16_us"]
        if t.get("fp16_us"):
            acc["int8_vs_cublas_fp16"] = t["fp16_us"] / r["int8_f16_us"]
        acc["int8_vs_our_fp16"] = r["fp16_us"] / r["int8_f16_us"]
        acc["pass_0.8x_cublaslt"] = acc.get("int8_s32_vs_cublaslt_int8", 0) >= 0.8
        acc["pass_1.6x_cublas_fp16"] = acc.get("int8_vs_cublas_fp16", 0) >= 1.6
    fused = [r for r in bench if r.get("bench") == "fused"]
    copy = [r for r in bench if r.get("bench") == "copy"]
    blocks = [r for r in bench if r.get("bench") == "block"]
    tiles = [r for r in bench if r.get("bench") == "gemm_tile"]
    e2e = [r for r in bench if r.get("bench") == "e2e"]
    e2e_tests = [r for r in bench if r.get("bench") == "e2e-tests"]
    fmnist = [r for r in bench if r.get("bench") in ("fmnist-scan", "fmnist-eval")]
    summary = {"device": info, "steps": steps, "tests": tests, "sanitizer": sanitizer, "acceptance_gemm": acc,
               "gemm": rows, "gemm_tiles": tiles, "copy_gbps": copy[0]["gbps"] if copy else None, "fused": fused,
               "block": blocks, "e2e": e2e, "e2e_tests": e2e_tests, "fmnist": fmnist}
    with open(os.path.join(d, "summary.json"), "w") as f:
        json.dump(summary, f, indent=1)

    md = []
    md.append(f"# GPU check on {info.get('gpu', '?')} (sm_{info.get('arch', '?')}, driver {info.get('driver', '?')})")
    md.append("")
    md.append("| step | status | rc | s |")
    md.append("| --- | --- | --- | --- |")
    for s in steps:
        md.append(f"| {s['step']} | {s['status']} | {s['rc']} | {s['seconds']:.0f} |")
    md.append("")
    md.append(f"Tests: {tests['passed']} passed, {tests['failed']} failed, {tests['skipped']} skipped"
              + (f" (failed: {'; '.join(tests['failed_names'])})" if tests["failed"] else ""))
    md.append(f"compute-sanitizer: {sanitizer['runs']} run(s), {sanitizer['errors']} error(s)")
    md.append("")
    if acc:
        md.append("Acceptance, Vim-B in_proj M=12608 N=3072 K=768: "
                  + ", ".join(f"{k} = {v:.3f}" if isinstance(v, float) else f"{k} = {v}" for k, v in acc.items()))
        md.append("")
    md.append("| model | batch | gemm | M | N | K | tile | ours int8→f16 µs | ours int8→s32 µs | torch _int_mm µs "
              "| ours fp16 µs | torch fp16 µs | int8/ours fp16 | int8/torch fp16 |")
    md.append("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")

    def f(x):
        return f"{x:.1f}" if isinstance(x, (int, float)) else "n/a"

    for r in rows:
        sp1 = r["ours_fp16_us"] / r["ours_int8_f16_us"]
        sp2 = (r["torch_fp16_us"] / r["ours_int8_f16_us"]) if r["torch_fp16_us"] else None
        md.append(f"| {r['model']} | {r['batch']} | {r['gemm']} | {r['M']} | {r['N']} | {r['K']} | {r['tile']} | "
                  f"{f(r['ours_int8_f16_us'])} | {f(r['ours_int8_s32_us'])} | {f(r['torch_int_mm_us'])} | "
                  f"{f(r['ours_fp16_us'])} | {f(r['torch_fp16_us'])} | {sp1:.2f} | {sp2:.2f} |" if sp2 else
                  f"| {r['model']} | {r['batch']} | {r['gemm']} | {r['M']} | {r['N']} | {r['K']} | {r['tile']} | "
                  f"{f(r['ours_int8_f16_us'])} | {f(r['ours_int8_s32_us'])} | {f(r['torch_int_mm_us'])} | "
                  f"{f(r['ours_fp16_us'])} | {f(r['torch_fp16_us'])} | {sp1:.2f} | n/a |")
    md.append("")
    if copy:
        md.append(f"Copy-kernel bandwidth: {copy[0]['gbps']:.0f} GB/s")
    if fused:
        md.append("")
        md.append("| kernel | model | batch | µs | floor µs | × floor |")
        md.append("| --- | --- | --- | --- | --- | --- |")
        for r in fused:
            md.append(f"| {r['kernel']} | {r['model']} | {r['batch']} | {r['us']:.1f} | {r['floor_us']:.1f} | {r['x_floor']:.2f} |")
    if blocks:
        md.append("")
        md.append("| block (one Vim block, our kernels) | batch | INT8 µs | FP16 µs | speedup |")
        md.append("| --- | --- | --- | --- | --- |")
        for r in blocks:
            md.append(f"| {r['model']} | {r['batch']} | {r['int8_us']:.1f} | {r['fp16_us']:.1f} | {r['speedup']:.2f} |")
    if e2e_tests:
        t = e2e_tests[-1]
        md.append("")
        md.append(f"CUDA node tests (scripts/gpu/e2e.sh): {t.get('ok')} ok, {t.get('not_ok')} not ok")
    if e2e:
        md.append("")
        md.append("| end to end (ptq4vm bench) | batch | fp32 ms | fp16 ms | int8 ms | fp16/int8 | device fp16 ms | device int8 ms | device fp16/int8 |")
        md.append("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
        for r in e2e:
            md.append(f"| {r.get('arch')} | {r.get('batch')} | {f(r.get('fp32_ms'))} | {f(r.get('fp16_ms'))} | {f(r.get('int8_ms'))} | "
                      f"{f(r.get('speedup'))} | {f(r.get('fp16_device_ms'))} | {f(r.get('int8_device_ms'))} | {f(r.get('device_speedup'))} |")
    for r in fmnist:
        md.append("")
        md.append("vim-fmnist W8A8: " + json.dumps({k: v for k, v in r.items() if k != "bench"}))
    text = "\n".join(md) + "\n"
    with open(os.path.join(d, "summary.md"), "w") as fh:
        fh.write(text)
    print(text)
    print("SUMMARY_JSON " + json.dumps({"device": info, "steps": {s["step"]: s["status"] for s in steps},
                                        "tests": {k: v for k, v in tests.items() if k != "failed_names"},
                                        "sanitizer_errors": sanitizer["errors"], "acceptance_gemm": acc,
                                        "block": [{k: r[k] for k in ("model", "batch", "speedup")} for r in blocks],
                                        "e2e": [{k: r.get(k) for k in ("arch", "batch", "fp16_ms", "int8_ms", "speedup", "device_speedup")}
                                                for r in e2e]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
