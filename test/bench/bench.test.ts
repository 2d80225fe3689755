import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { dirname, join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { cudaAvailability } from '../../lib/backend/cuda-kernels.js';
import { vimTensorShapes } from '../../lib/models/vim/config.js';
import { vimForward } from '../../lib/models/vim/graph.js';
import { quantizeForSpeed, randomImages, randomVimModel, vimArchConfig } from '../../lib/models/vim/random.js';
import { CpuExecutor, type CpuMat } from '../../lib/runtime/cpu-executor.js';
import { relativeError } from '../helpers.js';

/**
 * Runs `ptq4vm bench ARGS` in a child process (stdout belongs to the test runner here), with
 * the CLI's error handling: exit 2 for usage errors, 1 for others, the message on stderr.
 */
function bench(args: string[]): Promise<{ code: number | null; out: string[]; err: string }> {
  const here = dirname(fileURLToPath(import.meta.url));
  const url = (p: string) => JSON.stringify(pathToFileURL(join(here, p)).href);
  const script = `
    const { benchCommand } = await import(${url('../../lib/cli/commands/bench.js')});
    const { UsageError } = await import(${url('../../lib/cli/command.js')});
    try { process.exitCode = await benchCommand.run(process.argv.slice(1)); }
    catch (e) { process.stderr.write('ptq4vm: ' + e.message + '\\n'); process.exitCode = e instanceof UsageError ? 2 : 1; }`;
  return new Promise((resolve, reject) => {
    execFile(process.execPath, ['--input-type=module', '-e', script, '--', ...args], { timeout: 300_000, maxBuffer: 1 << 24 }, (error, stdout, stderr) => {
      if (error && typeof error.code !== 'number') return reject(error);
      resolve({ code: error ? (error.code as number) : 0, out: stdout.split('\n').filter(Boolean), err: stderr });
    });
  });
}

test('randomVimModel: full-size shapes, deterministic in the seed, Mamba-like initialisation', () => {
  const m = randomVimModel('vim-s', 7, { depth: 2 });
  const cfg = vimArchConfig('vim-s', { depth: 2 });
  assert.deepEqual(m.config, cfg);
  for (const [name, shape] of vimTensorShapes(cfg)) assert.deepEqual(m.tensor(name).shape, shape, name);
  assert.equal(m.dims.seqLen, 197);
  const again = randomVimModel('vim-s', 7, { depth: 2 });
  const other = randomVimModel('vim-s', 8, { depth: 2 });
  const w = m.tensor('layers.1.mixer.in_proj.weight').data;
  assert.deepEqual(again.tensor('layers.1.mixer.in_proj.weight').data, w);
  assert.notDeepEqual(other.tensor('layers.1.mixer.in_proj.weight').data.subarray(0, 64), w.subarray(0, 64));
  // A = −exp(A_log) with A_log = log(1..16) per channel; dt = softplus(bias) in [1e-3, 0.1]; D = 1.
  const A = m.layers[0]!.bwd.A;
  for (let n = 0; n < 16; n++) assert.ok(Math.abs(A[5 * 16 + n]! + (n + 1)) < 1e-5);
  for (const b of m.layers[1]!.fwd.dtBias) {
    const dt = Math.log1p(Math.exp(b));
    assert.ok(dt > 0.99e-3 && dt < 0.101, `dt ${dt}`);
  }
  assert.ok(m.layers[0]!.fwd.D.every((v) => v === 1));
  const maxAbs = (a: Float32Array) => a.reduce((x, v) => Math.max(x, Math.abs(v)), 0);
  // uniform ±1/√fan_in, out_proj also ÷√depth
  assert.ok(Math.abs(maxAbs(w) - 1 / Math.sqrt(384)) < 2e-3);
  assert.ok(Math.abs(maxAbs(m.tensor('layers.0.mixer.out_proj.weight').data) - 1 / Math.sqrt(768) / Math.sqrt(2)) < 2e-3);
});

test('quantizeForSpeed: per-channel weights, per-token activations (backward branch in its own order), close to fp32', () => {
  const model = randomVimModel('vim-ti', 2, { depth: 2, imgSize: 96, numClasses: 20 });
  const L = model.dims.seqLen;
  // The per-token range of x_proj_b's input, in token order, from an FP32 forward of the same images.
  const ops = new CpuExecutor({ quantMode: 'off' });
  const taps = new Map<string, Float32Array>();
  const images = randomImages(model, 1, 1); // quantizeForSpeed's own calibration images (seed 0 + 1)
  const fp = ops.toHost(vimForward(ops, model, images, (n: string, m: CpuMat) => taps.set(n, ops.toHost(m))));
  ops.endForward();
  quantizeForSpeed(model, 8, 8);
  assert.ok(model.isQuantized);
  for (const site of model.allLinears()) {
    const q = site.quant!;
    assert.equal(q.actScale.length, L, site.name);
    assert.equal(q.granularity, 'per-token-static');
    let maxq = 0;
    for (const v of q.qweight) maxq = Math.max(maxq, Math.abs(v));
    assert.equal(maxq, 127, `${site.name}: the largest weight of some row maps to ±127`);
  }
  const site = model.layers[1]!.bwd.xProj;
  const x = taps.get('layers.1.mixer.x_proj_b.in')!;
  const E = site.inFeatures;
  for (const t of [0, 3, L - 1]) {
    let lo = 0;
    let hi = 0;
    for (let j = 0; j < E; j++) {
      lo = Math.min(lo, x[t * E + j]!);
      hi = Math.max(hi, x[t * E + j]!);
    }
    // token t of the forward order is row L−1−t of the backward branch
    assert.ok(Math.abs(site.quant!.actScale[L - 1 - t]! * 255 - (hi - lo)) <= 1e-6 * (hi - lo) + 1e-9, `token ${t}`);
  }
  const fake = new CpuExecutor({ quantMode: 'fake' });
  const q = fake.toHost(vimForward(fake, model, images));
  fake.endForward();
  const err = relativeError(q, fp);
  assert.ok(err > 1e-4 && err < 0.1, `W8A8 vs fp32 relative error ${err}`);
});

test('ptq4vm bench on the CPU: a table, then {"bench":"e2e","arch","batch","device","fp32_ms","int8_ms","speedup",...}', async () => {
  const r = await bench(['--arch', 'vim-ti', '--device', 'cpu', '--batch', '1', '--warmup', '0', '--iters', '1']);
  assert.equal(r.code, 0);
  assert.ok(r.out.some((l) => /^ptq4vm bench: vim-ti \(random weights, seed 0\), 24 blocks, D 192, 224², 1000 classes on cpu: .+ISA .+ threads/.test(l)), r.out.join('\n'));
  assert.ok(r.out.some((l) => /speed-only W8A8/.test(l)));
  const json = JSON.parse(r.out.at(-1)!);
  assert.deepEqual(Object.keys(json).slice(0, 9), ['bench', 'arch', 'batch', 'device', 'fp32_ms', 'int8_ms', 'speedup', 'replay', 'machine']);
  assert.equal(json.replay, process.env.PTQ4VM_CPU_REPLAY === 'off' ? 'off' : 'launches');
  assert.equal(json.bench, 'e2e');
  assert.equal(json.arch, 'vim-ti');
  assert.equal(json.batch, 1);
  assert.equal(json.device, 'cpu');
  assert.ok(json.fp32_ms > 1, `fp32_ms ${json.fp32_ms}`);
  if (json.int8_ms === null) {
    assert.equal(typeof json.errors.int8, 'string'); // the CPU INT8 runtime is not wired yet
    assert.equal(json.speedup, null);
  } else {
    assert.ok(json.int8_ms > 0);
    assert.ok(Math.abs(json.speedup - json.fp32_ms / json.int8_ms) < 0.01 * json.speedup + 1e-3);
  }
});

test('ptq4vm bench --model and --batch lists: one JSON line per batch, the json flag keeps stdout to them', async () => {
  const r = await bench(['--model', 'vim-fmnist', '--device', 'cpu', '--batch', '1,3', '--precision', 'fp32', '--warmup', '0', '--iters', '1', '--json']);
  assert.equal(r.code, 0);
  assert.equal(r.out.length, 2, r.out.join('\n'));
  const rows = r.out.map((l) => JSON.parse(l));
  assert.deepEqual(rows.map((x) => [x.arch, x.batch]), [['vim-fmnist', 1], ['vim-fmnist', 3]]);
  for (const x of rows) assert.ok(x.fp32_ms > 0 && x.int8_ms === null);
  assert.match(r.err, /ptq4vm bench: vim-fmnist, 8 blocks/);
});

test('ptq4vm bench --op gemm on the CPU times fp32 and int8', async () => {
  const r = await bench(['--op', 'gemm', '--m', '67', '--n', '130', '--k', '96', '--device', 'cpu', '--warmup', '1', '--iters', '3']);
  assert.equal(r.code, 0);
  const json = JSON.parse(r.out.at(-1)!);
  assert.equal(json.bench, 'op-gemm');
  assert.deepEqual([json.m, json.n, json.k], [67, 130, 96]);
  assert.ok(json.fp32_ms > 0 && json.int8_ms > 0, JSON.stringify(json));
});

test('ptq4vm bench refuses bad options', async () => {
  const refused = async (args: string[], code: number, re: RegExp) => {
    const r = await bench(args);
    assert.equal(r.code, code, `${args.join(' ')}: ${r.err}`);
    assert.match(r.err, re);
    assert.deepEqual(r.out, []);
  };
  await refused(['--device', 'cpu', '--precision', 'fp16'], 2, /^ptq4vm: fp16 runs on --device cuda only\n$/);
  await refused(['--arch', 'vim-xl'], 2, /--arch must be one of vim-ti, vim-s, vim-b, got "vim-xl"/);
  await refused(['--arch', 'vim-ti', '--model', 'vim-fmnist'], 2, /give --arch or --model, not both/);
  await refused(['--op', 'gemm', '--m', '4'], 2, /--op gemm needs --m, --n and --k/);
  await refused(['--batch', '0'], 2, /--batch must be in \[1, 4096\]/);
  if (!cudaAvailability().device) await refused(['--device', 'cuda'], 1, /^ptq4vm: device cuda is not available: .+\n$/);
});
