#!/usr/bin/env bash
# One-command GPU check (issue 6). Needs the CUDA toolkit (nvcc), cmake and python3 (PyTorch
# for the torch baselines); no Node.js, no network. Builds the CUDA kernels for this card,
# runs every CUDA correctness test, the end-to-end run through the Node package
# (scripts/gpu/e2e.sh with the bundle of scripts/gpu/make-bundle.sh: CUDA node tests on the
# fixtures, `ptq4vm bench --device cuda` for Vim-Ti/S/B, the fmnist scan comparison), the
# kernel benchmarks, the torch baselines and the tests under compute-sanitizer, most important
# first, then prints one summary table + JSON with the card's name.
#
#   bash scripts/gpu-check.sh            # results in build-gpu-check/run/, and in $OUT/gpu-check/ if OUT is set
#
# Every step runs even when an earlier one failed (a GPU run is precious); each step's status,
# exit code and duration are recorded. The whole run keeps to a time budget
# (GPU_CHECK_BUDGET_S, default 420 s): a step that no longer fits is recorded as skipped.
# The addon build of the end-to-end run starts at once, next to the standalone build.
# Other knobs: GPU_CHECK_ARCH (e.g. 90; default from nvidia-smi), GPU_CHECK_JOBS (build jobs),
# GPU_CHECK_E2E=0 (skip the end-to-end run), PTQ4VM_BUNDLE (the bundle's path).
set -u -o pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD="$ROOT/build-gpu-check"
RUN="$BUILD/run"
BUDGET="${GPU_CHECK_BUDGET_S:-420}"
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

# ---- 2. the end-to-end run's addon build, in the background (it compiles the same kernels)
E2E="$ROOT/scripts/gpu/e2e.sh"
E2E_BUILD_PID=""
if [ "${GPU_CHECK_E2E:-1}" != 0 ] && [ -x "$E2E" ]; then
  say "=== [e2e-build] start in the background (log $RUN/e2e-build.log)"
  E2E_T0="$(date +%s)"
  E2E_ARCH="$ARCH" timeout -k 10 300 bash "$E2E" build >"$RUN/e2e-build.jsonl" 2>"$RUN/e2e-build.log" &
  E2E_BUILD_PID=$!
fi

# ---- 3. configure + build the tests (Release, this card's architecture, all cores)
run_step configure 120 "$RUN/build.log" cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release \
  -DPTQ4VM_CUDA=ON "-DPTQ4VM_CUDA_ARCHS=$ARCH" -DPTQ4VM_BUILD_TESTS=ON
run_step "build:ptq4vm_cuda_tests" 300 "$RUN/build.log" cmake --build "$BUILD" -j "$JOBS" --target ptq4vm_cuda_tests

TESTS="$BUILD/ptq4vm_cuda_tests"
bin_or_fail() { [ -x "$1" ] || { say "missing $1 (build failed)"; return 1; }; }

# ---- 4. end to end through the Node package (JSON lines with "bench":"e2e" into bench.log);
# it keeps 150 s of the budget for the kernel tests and benchmarks after it.
if [ -n "$E2E_BUILD_PID" ]; then
  wait "$E2E_BUILD_PID"
  rc=$?
  record e2e-build "$([ $rc = 0 ] && echo ok || echo failed)" "$rc" $(($(date +%s) - E2E_T0))
  cat "$RUN/e2e-build.log" >>"$LOG"
  E2E_LEFT=$((DEADLINE - $(date +%s) - 150))
  if ((E2E_LEFT > 60)); then
    run_step e2e "$E2E_LEFT" "$RUN/bench.log" env E2E_BUDGET_S="$((E2E_LEFT - 5))" bash "$E2E" run
  else
    record e2e "skipped-out-of-time" "-" 0
  fi
else
  record e2e "not-run (GPU_CHECK_E2E=0 or no scripts/gpu/e2e.sh)" "-" 0
fi

# ---- 5. kernel correctness tests, then the benchmark binaries
if bin_or_fail "$TESTS"; then
  run_step tests 120 "$RUN/tests.tap" "$TESTS"
else
  record tests "not-built" "-" 0
fi
for target in bench_cuda_gemm bench_cuda_scan bench_cuda_block; do
  run_step "build:$target" 120 "$RUN/build.log" cmake --build "$BUILD" -j "$JOBS" --target "$target"
done

# ---- 6. kernel benchmarks and torch baselines (same timing method: events, warm-up, median;
# --quick: fewer shapes, this run has the end-to-end numbers to make first)
for b in bench_cuda_gemm bench_cuda_scan bench_cuda_block; do
  if bin_or_fail "$BUILD/$b"; then
    run_step "$b" 90 "$RUN/bench.log" "$BUILD/$b" --quick
  else
    record "$b" "not-built" "-" 0
  fi
done
run_step torch_baselines 120 "$RUN/bench.log" python3 "$ROOT/scripts/gpu/torch_baselines.py" --quick

# ---- 7. the tests under compute-sanitizer memcheck, one group per invocation so a slow
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

# ---- 8. racecheck of the shared-memory kernels (informational, only if time is left)
if [ -n "$SANITIZER" ] && [ -x "$TESTS" ]; then
  for filter in "gemm_u8s8_s32: exact" "bidirectional_scan: every"; do
    run_step "racecheck:$filter" 60 "$RUN/sanitizer.txt" "$SANITIZER" --tool racecheck --error-exitcode 99 \
      --print-limit 20 "$TESTS" "$filter"
  done
fi

# ---- 9. summary
grep -h '^{' "$RUN/bench.log" >"$RUN/bench.jsonl" 2>/dev/null || true
say "=== total $(($(date +%s) - START)) s"
if command -v python3 >/dev/null 2>&1; then
  python3 "$ROOT/scripts/gpu/summarize.py" --dir "$RUN" 2>&1 | tee -a "$LOG"
else
  column -t -s $'\t' "$STEPS" | tee -a "$LOG"
fi

if [ -n "${OUT:-}" ]; then
  mkdir -p "$OUT/gpu-check"
  for f in log.txt summary.json summary.md tests.tap sanitizer.txt bench.jsonl e2e-build.log; do
    [ -f "$RUN/$f" ] && cp "$RUN/$f" "$OUT/gpu-check/$f"
  done
  E2E_DIR="${PTQ4VM_E2E_DIR:-$ROOT/build-e2e}"
  for f in cuda-tests.tap e2e.log; do
    [ -f "$E2E_DIR/$f" ] && cp "$E2E_DIR/$f" "$OUT/gpu-check/e2e-$f"
  done
fi
exit 0
