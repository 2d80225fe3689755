#!/usr/bin/env node
// Builds the native addon (npm install runs this), or verifies an existing build.
//   cmake available -> cmake-js (CUDA kernels too when nvcc is found; PTQ4VM_CUDA=OFF disables)
//   otherwise       -> node-gyp with binding.gyp (CPU only)
// An existing build/Release/ptq4vm.node newer than every native source is kept unless --force.
// A lock directory serialises concurrent builds of the same checkout.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, rmSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const out = join(root, 'build', 'Release', 'ptq4vm.node');
const force = process.argv.includes('--force');
const useGyp = process.argv.includes('--gyp') || process.env.PTQ4VM_BUILD === 'gyp';

function newestSource(dir) {
  let newest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, entry.name);
    if (entry.isDirectory()) newest = Math.max(newest, newestSource(p));
    else newest = Math.max(newest, statSync(p).mtimeMs);
  }
  return newest;
}

function upToDate() {
  if (!existsSync(out)) return false;
  const built = statSync(out).mtimeMs;
  const sources = Math.max(
    newestSource(join(root, 'native')),
    statSync(join(root, 'CMakeLists.txt')).mtimeMs,
  );
  return built >= sources;
}

function have(cmd) {
  return spawnSync(cmd, ['--version'], { stdio: 'ignore' }).status === 0;
}

function run(cmd, args) {
  console.error(`ptq4vm: ${cmd} ${args.join(' ')}`);
  const r = spawnSync(cmd, args, { cwd: root, stdio: 'inherit', env: process.env });
  if (r.status !== 0) {
    console.error(`ptq4vm: addon build failed (${cmd} exited with ${r.status ?? r.signal})`);
    process.exit(1);
  }
}

const lock = join(root, 'build', '.lock');
mkdirSync(join(root, 'build'), { recursive: true });
const deadline = Date.now() + 20 * 60 * 1000;
for (;;) {
  try {
    mkdirSync(lock);
    break;
  } catch {
    // A stale lock (older than 20 minutes) belongs to a build that died.
    try {
      if (Date.now() - statSync(lock).mtimeMs > 20 * 60 * 1000) rmSync(lock, { recursive: true, force: true });
    } catch {}
    if (Date.now() > deadline) {
      console.error(`ptq4vm: waited too long for ${lock}`);
      process.exit(1);
    }
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 500);
  }
}
const release = () => rmSync(lock, { recursive: true, force: true });
process.on('exit', release);

if (!force && upToDate()) {
  console.error('ptq4vm: native addon is up to date');
  process.exit(0);
}

// npm tells install scripts where its bundled node-gyp lives; a local copy also works.
const gypBin = [process.env.npm_config_node_gyp, join(root, 'node_modules', 'node-gyp', 'bin', 'node-gyp.js')].find((p) => p && existsSync(p));
if (!useGyp && have('cmake')) {
  const args = [join(root, 'node_modules', 'cmake-js', 'bin', 'cmake-js'), 'compile', '--out', 'build'];
  if (process.env.PTQ4VM_CUDA) args.push(`--CDPTQ4VM_CUDA=${process.env.PTQ4VM_CUDA}`);
  if (process.env.PTQ4VM_CUDA_ARCHS) args.push(`--CDPTQ4VM_CUDA_ARCHS=${process.env.PTQ4VM_CUDA_ARCHS}`);
  run(process.execPath, args);
} else if (gypBin) {
  run(process.execPath, [gypBin, 'rebuild']);
} else {
  console.error('ptq4vm: cannot build the addon: neither cmake nor node-gyp is available');
  process.exit(1);
}
if (!existsSync(out)) {
  console.error(`ptq4vm: build finished but ${out} is missing`);
  process.exit(1);
}
