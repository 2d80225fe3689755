#!/usr/bin/env bash
# Packs what a GPU box without Node.js and without network needs to build the addon with CUDA
# and run the CUDA node tests and `ptq4vm bench --device cuda` (scripts/gpu/e2e.sh unpacks it):
#   node/bin/node          this machine's node binary (x86-64 Linux, glibc >= 2.28, GLIBCXX >= 3.4.21)
#   ptq4vm/                package.json, bin/, dist/ (compiled here: lib + the CUDA tests), the
#                          native sources + CMakeLists.txt + scripts/build-addon.mjs, and the
#                          node_modules needed to build the addon (cmake-js and its dependencies,
#                          node-addon-api, node-api-headers). sharp, fastify, vega and vega-lite
#                          are replaced by stubs that throw when used (bench, eval on idx data
#                          and the CUDA tests never use them).
#   fixtures/              vim-ti-d2 (+ reference) and a calibrated vim-fmnist W8A8 made here
#   MANIFEST.txt
# assets/ (the Fashion-MNIST files and vim-fmnist) are NOT packed: they are tracked in the
# repository, and e2e.sh links the checkout's copy (PTQ4VM_BUNDLE_ASSETS=1 packs them anyway).
#
#   bash scripts/gpu/make-bundle.sh [OUT]     # default build-bundle/ptq4vm-gpu-bundle.tar.xz (git-ignored)
#
# Knobs: PTQ4VM_BUNDLE_NO_TSC=1 (use dist/ as it is), PTQ4VM_BUNDLE_CALIB_METHOD (default
# ptq4vm; falls back to ptq4vm-nojlss when JLSS is unavailable), PTQ4VM_BUNDLE_EXTRA_FIXTURES
# (space-separated fixture names to add, e.g. "vim-s-d1-stride8"), PTQ4VM_FIXTURES.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
OUT="${1:-$ROOT/build-bundle/ptq4vm-gpu-bundle.tar.xz}"
FIXTURES="${PTQ4VM_FIXTURES:-$ROOT/../shared/fixtures}"
NODE="$(node -e 'process.stdout.write(process.execPath)')"
STAGE="$(mktemp -d "${TMPDIR:-/tmp}/ptq4vm-bundle.XXXXXX")"
trap 'rm -rf "$STAGE"' EXIT
say() { echo "make-bundle: $*" >&2; }

cd "$ROOT"
if [ "${PTQ4VM_BUNDLE_NO_TSC:-0}" != 1 ]; then
  say "compiling TypeScript (tsc -p tsconfig.json)"
  node node_modules/typescript/bin/tsc -p tsconfig.json
fi
for f in dist/lib/cli/commands/bench.js dist/lib/runtime/cuda-executor.js dist/test/cuda/gpu.test.js; do
  [ -f "$f" ] || { say "missing $f (compile first)"; exit 1; }
done

# ---- node
mkdir -p "$STAGE/node/bin"
cp "$NODE" "$STAGE/node/bin/node"
chmod 755 "$STAGE/node/bin/node"

# ---- the package
PKG="$STAGE/ptq4vm"
mkdir -p "$PKG/dist/test" "$PKG/scripts/gpu" "$PKG/node_modules"
cp package.json CMakeLists.txt "$PKG/"
[ -f binding.gyp ] && cp binding.gyp "$PKG/"
cp -r bin native "$PKG/"
cp -r dist/lib "$PKG/dist/lib"
cp -r dist/test/cuda "$PKG/dist/test/cuda"
cp dist/test/helpers.js "$PKG/dist/test/"
cp scripts/build-addon.mjs "$PKG/scripts/"
cp scripts/gpu/e2e.sh "$PKG/scripts/gpu/"
if [ "${PTQ4VM_BUNDLE_ASSETS:-0}" = 1 ]; then cp -r assets "$PKG/assets"; fi
find "$PKG/dist" -name '*.map' -delete

# node_modules: the dependency closure of what builds the addon (hoisted layout).
DEPS="$(node --input-type=module -e '
import { readFileSync, existsSync } from "node:fs";
const seen = new Set();
const visit = (n) => {
  if (seen.has(n)) return;
  if (!existsSync(`node_modules/${n}/package.json`)) throw new Error(`node_modules/${n} is missing (run npm install)`);
  seen.add(n);
  const pj = JSON.parse(readFileSync(`node_modules/${n}/package.json`, "utf8"));
  for (const d of Object.keys(pj.dependencies ?? {})) visit(d);
};
for (const n of ["cmake-js", "node-addon-api", "node-api-headers"]) visit(n);
console.log([...seen].sort().join("\n"));
')"
for d in $DEPS; do
  mkdir -p "$PKG/node_modules/$(dirname "$d")"
  cp -r "node_modules/$d" "$PKG/node_modules/$d"
done
mkdir -p "$PKG/node_modules/.bin"
ln -s ../cmake-js/bin/cmake-js "$PKG/node_modules/.bin/cmake-js"

# Stubs for the heavy runtime dependencies nothing on the GPU box uses (ESM, named exports as imported).
stub() { # stub NAME EXPORTS...
  local dir="$PKG/node_modules/$1" name="$1"
  shift
  mkdir -p "$dir"
  printf '{"name":"%s","version":"0.0.0-ptq4vm-gpu-bundle-stub","type":"module","main":"index.js"}\n' "$name" >"$dir/package.json"
  {
    echo "const missing = () => { throw new Error('$name is not in the ptq4vm GPU bundle (scripts/gpu/make-bundle.sh); this command needs a full npm install'); };"
    echo "export default missing;"
    for e in "$@"; do echo "export const $e = missing;"; done
  } >"$dir/index.js"
}
stub sharp
stub fastify LogController
stub vega parse View
stub vega-lite compile

# ---- fixtures
mkdir -p "$STAGE/fixtures"
for name in vim-ti-d2 ${PTQ4VM_BUNDLE_EXTRA_FIXTURES:-}; do
  for f in "$name.safetensors" "$name.ref.safetensors"; do
    if [ -f "$FIXTURES/$f" ]; then cp "$FIXTURES/$f" "$STAGE/fixtures/"; else say "warning: fixture $f not found in $FIXTURES"; fi
  done
done
CAL="$STAGE/fixtures/vim-fmnist-w8a8.safetensors"
METHOD="${PTQ4VM_BUNDLE_CALIB_METHOD:-ptq4vm}"
say "calibrating vim-fmnist W8A8 ($METHOD)"
if ! node bin/ptq4vm.js calibrate --model vim-fmnist --calib fmnist-train --wbits 8 --abits 8 --method "$METHOD" --out "$CAL" >"$STAGE/calibrate.log" 2>&1; then
  say "calibration with $METHOD failed ($(tail -n1 "$STAGE/calibrate.log")); using ptq4vm-nojlss"
  METHOD=ptq4vm-nojlss
  node bin/ptq4vm.js calibrate --model vim-fmnist --calib fmnist-train --wbits 8 --abits 8 --method "$METHOD" --out "$CAL" >"$STAGE/calibrate.log" 2>&1
fi

# ---- manifest
{
  echo "ptq4vm GPU bundle"
  echo "made:        $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "git:         $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet 2>/dev/null || echo ' (with uncommitted changes)')"
  echo "node:        $("$NODE" --version) ($NODE), needs glibc $(objdump -T "$NODE" 2>/dev/null | grep -o 'GLIBC_[0-9.]*' | sort -uV | tail -n1 || echo '?'), $(objdump -T "$NODE" 2>/dev/null | grep -o 'GLIBCXX_[0-9.]*' | sort -uV | tail -n1 || echo '?')"
  echo "calibration: vim-fmnist W8A8, method $METHOD"
  echo "fixtures:    $(cd "$STAGE/fixtures" && ls | tr '\n' ' ')"
  echo "assets:      $([ -d "$PKG/assets" ] && echo packed || echo 'linked from the checkout by e2e.sh')"
  echo "node_modules: $(echo $DEPS | wc -w) packages for the addon build + stubs (sharp fastify vega vega-lite)"
} >"$STAGE/MANIFEST.txt"
cat "$STAGE/MANIFEST.txt" >&2

mkdir -p "$(dirname "$OUT")"
say "compressing (xz -9)"
tar -C "$STAGE" -cf - MANIFEST.txt node ptq4vm fixtures | xz -9 -T0 >"$OUT.tmp"
mv "$OUT.tmp" "$OUT"
say "wrote $OUT ($(du -h "$OUT" | cut -f1))"
