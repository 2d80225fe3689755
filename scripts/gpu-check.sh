#!/usr/bin/env bash
# One-command GPU check (issue 6). Needs the CUDA toolkit (nvcc), cmake and python3 (PyTorch
# for the torch baselines); no Node.js, no network. Builds the CUDA kernels for this card,
# runs every CUDA correctness test, the tests under compute-sanitizer memcheck, the kernel
# benchmarks, the torch baselines and (placeholder) the end-to-end bench, then prints one
# summary table + JSON with the card's name.
#
#   bash scripts/gpu-check.sh            # results in build-gpu-check/run/, and in $OUT/gpu-check/ if OUT is set
#
# Every step runs even when an earlier one failed (a GPU run is precious); each step's status,
# exit code and duration are recorded. The whole run keeps to a time budget
# (GPU_CHECK_BUDGET_S, default 450 s): a step that no longer fits is recorded as skipped.
# Other knobs: GPU_CHECK_ARCH (e.g. 90; default from nvidia-smi), GPU_CHECK_JOBS (build jobs).
set -u -o pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD="$ROOT/build-gpu-check"
RUN="$BUILD/run"
BUDGET="${GPU_CHECK_BUDGET_S:-450}"
START="$(date +%s)"
DEADLINE=$((START + BUDGET))
mkdir -p "$RUN"
rm -f "$RUN"/*.txt "$RUN"/*.tap "$RUN"/*.tsv "$RUN"/*.jsonl "$RUN"/*.log "$RUN"/summary.* 2>/dev/null
LOG="$RUN/log.txt"
STEPS="$RUN/steps.tsv"
: >"$LOG"
: >"$STEPS"

say() { echo "$*" | tee -a "$LOG"; }

# record NAME STATUS RC SECONDS
record() { printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" >>"$STEPS"; say "=== [$1] $2 (rc $3, $4 s)"; }

# run_step NAME LIMIT_S STEP_LOG CMD... : runs CMD under timeout, output to STEP_LOG, the log and stdout.
run_step() {
  local name="$1" limit="$2" slog="$3"
  shift 3
  local now left
  now="$(date +%s)"
  left=$((DEADLINE - now))
  if ((left < 10)); then
    record "$name" "skipped-out-of-time" "-" 0
    return 0
  fi
  ((limit > left)) && limit=$left
  say "=== [$name] start (limit ${limit}s): $*"
  local t0 rc status
  t0="$(date +%s)"
  timeout -k 10 "$limit" "$@" 2>&1 | tee -a "$slog" "$LOG"
  rc=${PIPESTATUS[0]}
  case "$rc" in
    0) status="ok" ;;
    124 | 137) status="timeout" ;;
    *) status="failed" ;;
  esac
  record "$name" "$status" "$rc" $(($(date +%s) - t0))
  return 0
}

# ---- 1. what machine is this
GPU_NAME="$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -n1)"
DRIVER="$(nvidia-smi --query-gpu=driver_version --format=csv,noheader 2>/dev/null | head -n1)"
CAP="$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -n1)"
ARCH="${GPU_CHECK_ARCH:-${CAP/./}}"
[[ "$ARCH" =~ ^[0-9]+[a-z]?$ ]] || ARCH="80;90"
if ! command -v nvcc >/dev/null 2>&1; then
  for d in /usr/local/cuda/bin /usr/local/cuda-*/bin; do
    if [ -x "$d/nvcc" ]; then
      export PATH="$d:$PATH"
      break
    fi
  done
fi
export CUDACXX="${CUDACXX:-$(command -v nvcc || true)}"
JOBS="${GPU_CHECK_JOBS:-$(nproc 2>/dev/null || echo 4)}"
SANITIZER="$(command -v compute-sanitizer || true)"
if [ -z "$SANITIZER" ]; then
  for c in "$(dirname "${CUDACXX:-/usr/local/cuda/bin/nvcc}")/compute-sanitizer" /usr/local/cuda/compute-sanitizer/compute-sanitizer; do
    [ -x "$c" ] && SANITIZER="$c" && break
  done
fi
{
  echo "gpu=${GPU_NAME:-unknown}"
  echo "driver=${DRIVER:-unknown}"
  echo "arch=$ARCH"
  echo "nvcc=$(${CUDACXX:-nvcc} --version 2>/dev/null | grep -o 'release [0-9.]*' | head -n1)"
  echo "cmake=$(cmake --version 2>/dev/null | head -n1)"
  echo "torch=$(python3 -c 'import torch; print(torch.__version__, torch.version.cuda)' 2>/dev/null || echo none)"
  echo "sanitizer=${SANITIZER:-none}"
  echo "git=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"
} >"$RUN/info.txt"
cat "$RUN/info.txt" | tee -a "$LOG"
nvidia-smi 2>&1 | head -n 15 >>"$LOG"

# ---- 2. configure + build (Release, this card's architecture, all cores)
run_step configure 120 "$RUN/build.log" cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release \
  -DPTQ4VM_CUDA=ON "-DPTQ4VM_CUDA_ARCHS=$ARCH" -DPTQ4VM_BUILD_TESTS=ON
for target in ptq4vm_cuda_tests bench_cuda_gemm bench_cuda_scan bench_cuda_block; do
  run_step "build:$target" 300 "$RUN/build.log" cmake --build "$BUILD" -j "$JOBS" --target "$target"
done

TESTS="$BUILD/ptq4vm_cuda_tests"
bin_or_fail() { [ -x "$1" ] || { say "missing $1 (build failed)"; return 1; }; }

# ---- 3. correctness tests
if bin_or_fail "$TESTS"; then
  run_step tests 120 "$RUN/tests.tap" "$TESTS"
else
  record tests "not-built" "-" 0
fi

# ---- 4. the tests under compute-sanitizer memcheck, one group per invocation so a slow
# group cannot hide the verdict of the others
if [ -n "$SANITIZER" ] && [ -x "$TESTS" ]; then
  for filter in "gemm_u8s8" "gemm_s8s8" "gemm_f16" "gemm_f32" "quantize" "add_rmsnorm" "conv1d" "patch embed" \
    "elementwise" "selective_scan" "bidirectional_scan" "runtime"; do
    run_step "memcheck:$filter" 90 "$RUN/sanitizer.txt" "$SANITIZER" --tool memcheck --error-exitcode 99 \
      --print-limit 20 "$TESTS" "$filter"
  done
else
  record memcheck "no-compute-sanitizer-or-tests" "-" 0
fi

# ---- 5. kernel benchmarks and torch baselines (same timing method: events, warm-up, median)
for b in bench_cuda_gemm bench_cuda_scan bench_cuda_block; do
  if bin_or_fail "$BUILD/$b"; then
    run_step "$b" 120 "$RUN/bench.log" "$BUILD/$b"
  else
    record "$b" "not-built" "-" 0
  fi
done
run_step torch_baselines 150 "$RUN/bench.log" python3 "$ROOT/scripts/gpu/torch_baselines.py"

# ---- 6. PLACEHOLDER: end-to-end Vim-Ti/S/B FP16 vs INT8 at batch 1, 8, 64 through the Node
# bundle (a node binary + built JS + addon source) that the lead adds later as
# scripts/gpu/e2e.sh; it should print JSON lines with "bench":"e2e".
if [ -x "$ROOT/scripts/gpu/e2e.sh" ]; then
  run_step e2e 240 "$RUN/bench.log" "$ROOT/scripts/gpu/e2e.sh"
else
  record e2e "placeholder-not-provided" "-" 0
fi

# ---- 7. racecheck of the shared-memory kernels (informational, only if time is left)
if [ -n "$SANITIZER" ] && [ -x "$TESTS" ]; then
  for filter in "gemm_u8s8_s32: exact" "bidirectional_scan: every"; do
    run_step "racecheck:$filter" 60 "$RUN/sanitizer.txt" "$SANITIZER" --tool racecheck --error-exitcode 99 \
      --print-limit 20 "$TESTS" "$filter"
  done
fi

# ---- 8. summary
grep -h '^{' "$RUN/bench.log" >"$RUN/bench.jsonl" 2>/dev/null || true
say "=== total $(($(date +%s) - START)) s"
if command -v python3 >/dev/null 2>&1; then
  python3 "$ROOT/scripts/gpu/summarize.py" --dir "$RUN" 2>&1 | tee -a "$LOG"
else
  column -t -s $'\t' "$STEPS" | tee -a "$LOG"
fi

if [ -n "${OUT:-}" ]; then
  mkdir -p "$OUT/gpu-check"
  for f in log.txt summary.json summary.md tests.tap sanitizer.txt bench.jsonl; do
    [ -f "$RUN/$f" ] && cp "$RUN/$f" "$OUT/gpu-check/$f"
  done
fi
exit 0
