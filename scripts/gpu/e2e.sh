#!/usr/bin/env bash
# End-to-end GPU run through the Node package, on a box with the CUDA toolkit and cmake but
# without Node.js and without network: unpacks the bundle of scripts/gpu/make-bundle.sh, builds
# the addon with CUDA for this card, runs the CUDA node tests on the fixtures, benches Vim-Ti/S/B
# (fp32, fp16, int8) at batch 1, 8, 64 and evaluates the calibrated vim-fmnist W8A8 through the
# worker engine with the fused quantized scan and with the FP scan. Results are JSON lines on
# stdout with "bench" = "e2e" (one per arch × batch, from `ptq4vm bench`), "e2e-info",
# "e2e-tests", "fmnist-scan" and "fmnist-eval"; logs and the TAP output go to $WORK.
#
#   bash scripts/gpu/e2e.sh [all|build|run]      # build: unpack + addon; run: the rest
#
# Knobs: PTQ4VM_BUNDLE (default build-bundle/ptq4vm-gpu-bundle.tar.xz), PTQ4VM_E2E_DIR (default
# build-e2e), E2E_ARCH (e.g. 90; default from nvidia-smi), E2E_ARCHS ("vim-ti vim-s vim-b"),
# E2E_BATCHES (1,8,64), E2E_ITERS / E2E_WARMUP (bench), E2E_BUDGET_S (default 330: steps that
# no longer fit are skipped, vim-b's bench last), E2E_CUDA=OFF (build a CPU-only addon: to
# test the bundle on a machine without a GPU).
set -u -o pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BUNDLE="${PTQ4VM_BUNDLE:-$ROOT/build-bundle/ptq4vm-gpu-bundle.tar.xz}"
WORK="${PTQ4VM_E2E_DIR:-$ROOT/build-e2e}"
PHASE="${1:-all}"
BUDGET="${E2E_BUDGET_S:-330}"
START="$(date +%s)"
NODE="$WORK/node/bin/node"
PKG="$WORK/ptq4vm"
LOG="$WORK/e2e.log"

say() { echo "e2e: $*" >&2; [ -d "$WORK" ] && echo "e2e: $*" >>"$LOG"; }
left() { echo $((START + BUDGET - $(date +%s))); }
# step NAME LIMIT CMD...: runs CMD (stdout to ours, stderr to the log), bounded by the budget.
step() {
  local name="$1" limit="$2"
  shift 2
  local l
  l="$(left)"
  if ((l < 15)); then
    say "[$name] skipped: out of time"
    echo "{\"bench\":\"e2e-step\",\"step\":\"$name\",\"status\":\"skipped-out-of-time\"}"
    return 0
  fi
  ((limit > l)) && limit=$l
  say "[$name] start (limit ${limit}s)"
  local t0 rc
  t0="$(date +%s)"
  # bash -c: CMD may be one of the exported functions below.
  timeout -k 5 "$limit" bash -c '"$@"' _ "$@" 2>>"$LOG"
  rc=$?
  say "[$name] rc $rc in $(($(date +%s) - t0)) s"
  echo "{\"bench\":\"e2e-step\",\"step\":\"$name\",\"rc\":$rc,\"seconds\":$(($(date +%s) - t0))}"
  return 0
}

find_nvcc() {
  if ! command -v nvcc >/dev/null 2>&1; then
    for d in /usr/local/cuda/bin /usr/local/cuda-*/bin; do
      if [ -x "$d/nvcc" ]; then
        export PATH="$d:$PATH"
        break
      fi
    done
  fi
  export CUDACXX="${CUDACXX:-$(command -v nvcc || true)}"
}

do_build() {
  if [ ! -f "$BUNDLE" ]; then
    echo "e2e: bundle $BUNDLE not found (make it with scripts/gpu/make-bundle.sh and carry it)" >&2
    echo '{"bench":"e2e-step","step":"unpack","status":"no-bundle"}'
    return 1
  fi
  rm -rf "$WORK"
  mkdir -p "$WORK"
  : >"$LOG"
  tar -C "$WORK" -xJf "$BUNDLE" || { say "unpacking failed"; return 1; }
  cat "$WORK/MANIFEST.txt" >>"$LOG"
  if ! "$NODE" --version >>"$LOG" 2>&1; then
    say "the bundled node does not run here: $(ldd --version 2>&1 | head -n1); see $LOG"
    echo '{"bench":"e2e-step","step":"node","status":"does-not-run"}'
    return 1
  fi
  [ -e "$PKG/assets" ] || ln -s "$ROOT/assets" "$PKG/assets"
  find_nvcc
  local cap arch
  cap="$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -n1)"
  arch="${E2E_ARCH:-${cap/./}}"
  [[ "$arch" =~ ^[0-9]+[a-z]?$ ]] || arch="90"
  say "building the addon with CUDA for sm_$arch (nvcc: ${CUDACXX:-none})"
  (cd "$PKG" && PATH="$WORK/node/bin:$PATH" PTQ4VM_CUDA="${E2E_CUDA:-ON}" PTQ4VM_CUDA_ARCHS="$arch" \
    CMAKE_BUILD_PARALLEL_LEVEL="$(nproc 2>/dev/null || echo 8)" \
    step addon-build 300 quiet "$NODE" scripts/build-addon.mjs --force)
  [ -f "$PKG/build/Release/ptq4vm.node" ] || { say "the addon was not built (see $LOG)"; return 1; }
}

# CMD with its stdout in the log too (builds print there).
quiet() { "$@" >>"$LOG" 2>&1; }

# Runs the bench command (through the CLI when it registers it, else directly).
bench() {
  if (cd "$PKG" && "$NODE" bin/ptq4vm.js help bench >/dev/null 2>&1); then
    (cd "$PKG" && "$NODE" bin/ptq4vm.js bench "$@")
  else
    (cd "$PKG" && "$NODE" --input-type=module -e \
      "const { benchCommand } = await import('./dist/lib/cli/commands/bench.js'); process.exitCode = await benchCommand.run(process.argv.slice(1));" -- "$@")
  fi
}

do_run() {
  [ -f "$PKG/build/Release/ptq4vm.node" ] || { say "no addon in $PKG (run the build phase)"; return 1; }
  cd "$PKG" || return 1
  export PTQ4VM_FIXTURES="$WORK/fixtures"
  local cal="$WORK/fixtures/vim-fmnist-w8a8.safetensors"
  export PTQ4VM_FMNIST_W8A8="$cal"
  "$NODE" --input-type=module -e "
    const { runtimeInfo } = await import('./dist/lib/backend/runtime-info.js');
    const r = runtimeInfo();
    console.log(JSON.stringify({ bench: 'e2e-info', node: process.version, cpu: r.cpu.isa + ' x' + r.cpu.threads, cuda: r.cuda }));" 2>>"$LOG"

  # 1. the CUDA node tests (fixtures, binding, replay, fmnist scan accuracy)
  step cuda-node-tests 200 "$NODE" --test --test-reporter=tap dist/test/cuda/gpu.test.js dist/test/cuda/no-gpu.test.js >"$WORK/cuda-tests.tap"
  grep -E '^# (Subtest|pass|fail|skip)|^not ok|^ok|relative error|top-1|SKIP' "$WORK/cuda-tests.tap" >&2
  grep -o '{"bench":"fmnist-scan".*}' "$WORK/cuda-tests.tap" | head -n1
  local pass fail
  pass="$(grep -c '^ok ' "$WORK/cuda-tests.tap")"
  fail="$(grep -c '^not ok ' "$WORK/cuda-tests.tap")"
  echo "{\"bench\":\"e2e-tests\",\"tap\":\"$WORK/cuda-tests.tap\",\"ok\":$pass,\"not_ok\":$fail}"

  # 2. end-to-end benchmarks (JSON lines with "bench":"e2e")
  for arch in ${E2E_ARCHS:-vim-ti vim-s vim-b}; do
    step "bench:$arch" 150 bench --device cuda --arch "$arch" --batch "${E2E_BATCHES:-1,8,64}" \
      --warmup "${E2E_WARMUP:-3}" --iters "${E2E_ITERS:-10}" --json
  done

  # 3. the calibrated model through the worker engine: fused quantized scan vs FP scan
  for scan in quantized fp; do
    local line
    line="$(PTQ4VM_CUDA_SCAN=$scan step "eval:$scan" 60 "$NODE" bin/ptq4vm.js eval --model "$cal" --data fmnist --device cuda --batch 250 --json | grep -E '^\{"top1"' | tail -n1)"
    [ -n "$line" ] && echo "{\"bench\":\"fmnist-eval\",\"scan\":\"$scan\",${line#\{}"
  done
  say "done in $(($(date +%s) - START)) s"
}

export LOG NODE PKG WORK
export -f quiet bench

case "$PHASE" in
  build) do_build ;;
  run) do_run ;;
  all) do_build && do_run ;;
  *) echo "usage: e2e.sh [all|build|run]" >&2; exit 2 ;;
esac
exit 0
