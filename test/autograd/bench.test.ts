// Micro-benchmark of one JLSS step (fake-quant mixer forward + backward, all six linears
// trainable) at the embedded Fashion-MNIST Vim's size and at Vim-Ti's, with the heavy kernels
// timed alone, and the real thing: JLSS on block 0 of the embedded model (calibrate(), 256
// images, W8A8). Skipped unless PTQ4VM_BENCH=1 (it allocates ~2 GB at Vim-Ti size):
//   npx tsc && PTQ4VM_BENCH=1 PTQ4VM_THREADS=2 node --test dist/test/autograd/bench.test.js
// On a shared machine compare CPU time, and wall time only from runs where wall ≈ CPU / threads.
import { describe, it } from 'node:test';
import { performance } from 'node:perf_hooks';

import { BufferPool, Tape, Var, trainKernels } from '../../lib/autograd/index.js';
import { resolveDataset } from '../../lib/data/index.js';
import { loadVimModel } from '../../lib/models/load.js';
import { loadCalibrationImages } from '../../lib/quant/calib-data.js';
import { calibrate } from '../../lib/quant/calibrate.js';
import { vimMixerOnTape } from '../../lib/autograd/vim-mixer.js';
import { mixerParams, quantParams, quantVars, randomArray, randomMixer, randomQuant, rng, type TinyMixerDims } from './gradcheck.js';

const enabled = process.env.PTQ4VM_BENCH === '1';

/** CPU milliseconds of this process (all threads): on a shared machine, wall time lies. */
function cpuMs(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
}

/** Best of `reps` runs: [wall ms, CPU ms]. */
function best(reps: number, fn: () => void): [number, number] {
  let wall = Infinity, cpu = Infinity;
  for (let i = 0; i < reps; i++) {
    const t0 = performance.now(), c0 = cpuMs();
    fn();
    wall = Math.min(wall, performance.now() - t0);
    cpu = Math.min(cpu, cpuMs() - c0);
  }
  return [wall, cpu];
}

function benchBlock(label: string, dims: TinyMixerDims, reps: number): void {
  const mixer = randomMixer(dims, 5);
  const q = randomQuant(mixer, 8, 8, 6);
  const p = mixerParams(mixer, 'f32');
  const qv = quantVars(q, 'f32', dims.seqLen, true);
  const rows = dims.batch * dims.seqLen;
  const r = rng(9);
  const x = Var.constant(randomArray('f32', rows * dims.D, r), [rows, dims.D]);
  const target = Var.constant(randomArray('f32', rows * dims.D, r), [rows, dims.D]);
  // A JLSS loop's step: pooled arrays, released after backward.
  const pool = new BufferPool();
  let fwd: [number, number] = [Infinity, Infinity], bwd: [number, number] = [Infinity, Infinity];
  for (let i = 0; i < reps; i++) {
    for (const v of quantParams(qv)) v.zeroGrad();
    let tape = new Tape({ pool });
    let loss: Var = x;
    const f = best(1, () => {
      tape = new Tape({ pool });
      loss = tape.cosineLoss(vimMixerOnTape(tape, x, p, qv), target);
    });
    const b = best(1, () => tape.backward(loss));
    tape.release();
    fwd = [Math.min(fwd[0], f[0]), Math.min(fwd[1], f[1])];
    bwd = [Math.min(bwd[0], b[0]), Math.min(bwd[1], b[1])];
  }
  // The heavy kernels alone, on this block's shapes (one direction).
  const k = trainKernels();
  const { E, N, K } = dims;
  const L = dims.seqLen, B = dims.batch;
  const u = randomArray('f32', rows * E, r) as Float32Array, delta = randomArray('f32', rows * E, r, -3, 0) as Float32Array;
  const z = randomArray('f32', rows * E, r) as Float32Array;
  const Bm = randomArray('f32', rows * N, r) as Float32Array, Cm = randomArray('f32', rows * N, r) as Float32Array;
  const y = new Float32Array(rows * E), g1 = new Float32Array(rows * E), g2 = new Float32Array(rows * E), g3 = new Float32Array(rows * E);
  const gB = new Float32Array(rows * N), gC = new Float32Array(rows * N);
  const d = p.fwd;
  const scanF = best(3, () => k.trainScan(B, L, E, N, u, delta, d.A as Float32Array, Bm, Cm, d.D, z, d.dtBias, true, false, 1, false, y));
  const scanB = best(3, () => k.trainScanBackward(B, L, E, N, u, delta, d.A, Bm, Cm, d.D, z, d.dtBias, true, false, 1, y, g1, g2, gB, gC, g3, false));
  const convF = best(3, () => k.trainConv1d(B, L, E, K, u, d.convWeight, d.convBias, false, true, y));
  const convB = best(3, () => k.trainConv1dBackward(B, L, E, K, u, d.convWeight, d.convBias, false, true, y, g1, false));
  const qa = qv.x_proj;
  const sm = qa.smooth!.data as Float32Array, sc = qa.ascale.data as Float32Array;
  const dsm = new Float32Array(E), dsc = new Float32Array(L);
  const quantF = best(3, () => k.trainFakeQuantAct(rows, E, L, false, u, sm, sc, qa.azero, 255, y, null));
  const quantB = best(3, () => k.trainFakeQuantActBackward(rows, E, L, false, u, sm, sc, qa.azero, 255, y, g1, dsm, dsc, false));
  const W = randomArray('f32', 2 * E * dims.D, r), xin = x.data, out = new Float32Array(rows * 2 * E);
  const dx = new Float32Array(rows * dims.D), dW = new Float32Array(2 * E * dims.D);
  const gemmF = best(3, () => k.trainGemm(false, true, rows, 2 * E, dims.D, xin, dims.D, W, dims.D, false, out, 2 * E));
  const gemmB = best(3, () => {
    k.trainGemm(false, false, rows, dims.D, 2 * E, out, 2 * E, W, dims.D, true, dx, dims.D);
    k.trainGemm(true, false, 2 * E, dims.D, rows, out, 2 * E, xin, dims.D, true, dW, dims.D);
  });
  const f = ([wall, cpu]: [number, number]) => `${wall.toFixed(1)} ms (cpu ${cpu.toFixed(1)})`;
  console.log(`# ${label}: M = ${rows}, D = ${dims.D}, E = ${E}, N = ${N}, R = ${dims.R}`);
  console.log(`#   step: forward ${f(fwd)}, backward ${f(bwd)}`);
  console.log(`#   scan fwd ${f(scanF)} / bwd ${f(scanB)}; conv+silu fwd ${f(convF)} / bwd ${f(convB)}; act fake-quant [M, E] fwd ${f(quantF)} / bwd ${f(quantB)}; in_proj gemm fwd ${f(gemmF)} / bwd ${f(gemmB)}`);
}

/** Median of steps 1.. (step 0 allocates the pooled arrays). */
function median(a: number[]): number {
  const s = [...a].sort((x, y) => x - y);
  return s[s.length >> 1]!;
}

describe('JLSS step benchmark', { skip: enabled ? false : 'set PTQ4VM_BENCH=1 to run' }, () => {
  it('JLSS on block 0 of the embedded Fashion-MNIST Vim (W8A8, 256 images, 20 steps)', async () => {
    const model = await loadVimModel('vim-fmnist');
    const images = await loadCalibrationImages(model, await resolveDataset('fmnist-train'), 256, 'x', 0);
    model.layers.length = 1;
    const walls: number[] = [], cpus: number[] = [];
    let w0 = 0, c0 = 0;
    calibrate(model, images, {
      method: 'ptq4vm', wbits: 8, abits: 8, steps: 20,
      onProgress: (e) => {
        if (e.kind !== 'jlss-step') return;
        const w = performance.now(), c = cpuMs();
        if (e.step > 0) {
          walls.push(w - w0);
          cpus.push(c - c0);
        }
        w0 = w;
        c0 = c;
      },
    });
    console.log(`# JLSS step (threads ${process.env.PTQ4VM_THREADS ?? 'all'}): wall median ${median(walls).toFixed(1)} ms (min ${Math.min(...walls).toFixed(1)}), cpu median ${median(cpus).toFixed(1)} ms`);
  });
  it('embedded Fashion-MNIST Vim block: 256 images × 50 tokens, D = 96', () => {
    benchBlock('fmnist', { batch: 256, seqLen: 50, D: 96, E: 192, N: 16, R: 6, K: 4 }, 5);
  });
  it('Vim-Ti block: 256 images × 197 tokens, D = 192', () => {
    benchBlock('vim-ti', { batch: 256, seqLen: 197, D: 192, E: 384, N: 16, R: 12, K: 4 }, 3);
  });
});
