import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { analyzeModel } from '../../lib/analysis/analyze.js';
import { modelQuantizers } from '../../lib/analysis/calibration-report.js';
import { baselineQuant, type BaselineMethod } from '../../lib/analysis/methods.js';
import { writeReport } from '../../lib/analysis/report.js';
import type { LinearSite } from '../../lib/models/ops.js';
import { vimForward } from '../../lib/models/vim/graph.js';
import { VIM_LINEARS } from '../../lib/models/vim/model.js';
import { calibrate } from '../../lib/quant/calibrate.js';
import type { LinearQuant } from '../../lib/quant/params.js';
import { CpuExecutor, type CpuMat } from '../../lib/runtime/cpu-executor.js';
import { tinyImages, tinyVim } from './tiny-vim.js';

// ---- an independent implementation of the documented quantizers (native/include/ptq4vm/quantize.h),
// float32 steps emulated with Math.fround where the formula says fp32, everything else in float64.

const f = Math.fround;

function rhe(x: number): number {
  const r = Math.floor(x);
  const d = x - r;
  if (d > 0.5) return r + 1;
  if (d < 0.5) return r;
  return r % 2 === 0 ? r : r + 1;
}

interface ActParams { scale: number; zero: number }

/** Per-row (dynamic) min–max parameters of v = x·(1/σ). */
function dynamicParams(row: Float32Array, invSmooth: Float32Array, qmax: number): ActParams {
  let lo = 0;
  let hi = 0;
  for (let j = 0; j < row.length; j++) {
    const v = f(row[j]! * invSmooth[j]!);
    lo = Math.min(lo, v);
    hi = Math.max(hi, v);
  }
  let range = f(hi - lo);
  if (!(range >= f(1e-8))) range = f(1e-8);
  const scale = f(range / qmax);
  return { scale, zero: Math.min(qmax, Math.max(0, rhe(f(-lo / scale)))) };
}

/** ŷ = dequant(Q(x/σ))·dequant(Q(W·σ))ᵀ and y = x·Wᵀ for rows of x; returns MSE, relative MSE and mean row cosine. */
function referenceError(site: LinearSite, q: LinearQuant, x: Float32Array, rows: number): { mse: number; relativeMse: number; cosine: number } {
  const inF = site.inFeatures;
  const out = site.outFeatures;
  const W = site.weight.data;
  const qmaxA = 2 ** q.abits - 1;
  const invSmooth = q.smooth.map((s) => f(1 / s));
  const wDeq = new Float64Array(out * inF);
  for (let o = 0; o < out; o++) for (let j = 0; j < inF; j++) wDeq[o * inF + j] = f(q.qweight[o * inF + j]! * q.wscale[o]!);
  let se = 0;
  let yy = 0;
  let cos = 0;
  const xq = new Float64Array(inF);
  for (let r = 0; r < rows; r++) {
    const row = x.subarray(r * inF, (r + 1) * inF);
    let p: ActParams;
    if (q.granularity === 'per-token-dynamic') p = dynamicParams(row, invSmooth, qmaxA);
    else {
      // Per-token parameters of a backward-branch site are stored in its reversed token order.
      const period = q.actScale.length;
      const k = site.reversedTokens && period > 1 ? period - 1 - (r % period) : r % period;
      p = { scale: q.actScale[k]!, zero: q.actZero[k]! };
    }
    const inv = f(1 / p.scale);
    for (let j = 0; j < inF; j++) {
      const v = f(f(row[j]! * invSmooth[j]!) * inv);
      const code = Math.min(qmaxA, Math.max(0, rhe(v) + p.zero));
      xq[j] = f((code - p.zero) * p.scale);
    }
    let ab = 0, aa = 0, bb = 0;
    for (let o = 0; o < out; o++) {
      let y = 0;
      let yq = 0;
      for (let j = 0; j < inF; j++) {
        y += row[j]! * W[o * inF + j]!;
        yq += xq[j]! * wDeq[o * inF + j]!;
      }
      se += (yq - y) ** 2;
      ab += y * yq;
      aa += y * y;
      bb += yq * yq;
    }
    yy += aa;
    cos += ab / Math.max(Math.sqrt(aa * bb), 1e-12);
  }
  return { mse: se / (rows * out), relativeMse: se / yy, cosine: cos / rows };
}

/** Independent RTN parameters: weights per-row absmax, activations one min–max range. */
function referenceRtn(site: LinearSite, x: Float32Array, wbits: number, abits: number, dynamic: boolean): LinearQuant {
  const inF = site.inFeatures;
  const out = site.outFeatures;
  const W = site.weight.data;
  const qmaxW = 2 ** (wbits - 1) - 1;
  const wscale = new Float32Array(out);
  const qweight = new Int8Array(out * inF);
  for (let o = 0; o < out; o++) {
    let m = 0;
    for (let j = 0; j < inF; j++) m = Math.max(m, Math.abs(W[o * inF + j]!));
    wscale[o] = Math.max(m / qmaxW, 1e-8);
    for (let j = 0; j < inF; j++) qweight[o * inF + j] = Math.max(-qmaxW, Math.min(qmaxW, rhe(f(W[o * inF + j]! / wscale[o]!))));
  }
  const qmaxA = 2 ** abits - 1;
  let actScale = new Float32Array(0);
  let actZero = new Int32Array(0);
  if (!dynamic) {
    let lo = 0;
    let hi = 0;
    for (const v of x) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
    const scale = Math.max((hi - lo) / qmaxA, 1e-8);
    actScale = Float32Array.of(scale);
    actZero = Int32Array.of(Math.min(qmaxA, Math.max(0, -rhe(lo / scale))));
  }
  return {
    wbits, abits, granularity: dynamic ? 'per-token-dynamic' : 'per-tensor-static', qweight, wscale,
    smooth: new Float32Array(inF).fill(1), actScale, actZero,
  };
}

const relClose = (a: number, b: number, tol: number, what: string) => assert.ok(Math.abs(a - b) <= tol * Math.abs(b), `${what}: ${a} vs reference ${b}`);

test('analysis JSON of a tiny random Vim matches independent statistics and quantization errors', { timeout: 120000 }, async () => {
  const model = tinyVim(7);
  const images = tinyImages(6, 3);
  const [wbits, abits] = [4, 4];
  // A calibrated model (PTQ4VM without JLSS) provides the last column.
  calibrate(model, images, { method: 'ptq4vm-nojlss', wbits, abits, seed: 0 });
  const calibrated = modelQuantizers(model);
  assert.ok(calibrated, 'the calibrated model exposes its quantizers');
  const analysis = analyzeModel(model, images, { blocks: [1, 0], layers: [...VIM_LINEARS], wbits, abits, alpha: 0.5, seed: 0, histogramBins: 23, calibrated });
  assert.deepEqual(analysis.blocks, [0, 1]);
  const dir = mkdtempSync(join(tmpdir(), 'ptq4vm-analysis-'));
  try {
    const report = await writeReport(dir, analysis, { title: 'tiny', model: 'tiny', data: 'random' });
    assert.equal(report.plots.length, 2 * (1 + 6 * 3));
    const files = readdirSync(dir);
    for (const p of report.plots) for (const ext of ['png', 'json']) assert.ok(files.includes(`${p.stem}.${ext}`), `${p.stem}.${ext}`);
    const json = (stem: string) => JSON.parse(readFileSync(join(dir, `${stem}.json`), 'utf8'));

    // The FP inputs of every linear, taken by the test from a plain forward with taps.
    const ops = new CpuExecutor({ quantMode: 'off' });
    const taps = new Map<string, Float32Array>();
    vimForward(ops, model, images, (name: string, m: CpuMat) => taps.set(name, ops.toHost(m)));
    ops.endForward();
    const N = images.dim(0);
    const L = model.dims.seqLen;
    assert.equal(L, 10);

    for (const block of [0, 1]) {
      const errors = json(`b${block}-errors`);
      assert.equal(errors.errors.length, 6 * 5, 'six linears × five methods');
      for (const linear of VIM_LINEARS) {
        const site = model.linears(block)[linear];
        const x = taps.get(`${site.name}.in`)!;
        const C = site.inFeatures;
        const rows = N * L;
        const where = `${site.name}`;
        // (a) per-token statistics
        const tok = json(`b${block}-${linear}-tokens`);
        assert.equal(tok.clsPos, 4);
        for (let t = 0; t < L; t++) {
          const v: number[] = [];
          for (let b = 0; b < N; b++) for (let j = 0; j < C; j++) v.push(x[(b * L + t) * C + j]!);
          const mean = v.reduce((a, u) => a + u, 0) / v.length;
          const variance = v.reduce((a, u) => a + (u - mean) ** 2, 0) / v.length;
          relClose(tok.mean[t], mean, 1e-6, `${where} mean[${t}]`);
          relClose(tok.variance[t], variance, 1e-6, `${where} variance[${t}]`);
          assert.equal(tok.max[t], Math.max(...v), `${where} max[${t}]`);
          assert.equal(tok.min[t], Math.min(...v), `${where} min[${t}]`);
        }
        // (b) per-channel max|x|, raw and smoothed
        const ch = json(`b${block}-${linear}-channels`);
        for (let j = 0; j < C; j++) {
          let m = 0;
          for (let r = 0; r < rows; r++) m = Math.max(m, Math.abs(x[r * C + j]!));
          assert.equal(ch.absMax[j], m, `${where} channel ${j}`);
          for (const s of ch.smoothing) relClose(s.absMax[j], m / s.sigma[j], 1e-6, `${where} ${s.label} channel ${j}`);
        }
        assert.equal(ch.smoothing.length, 2, 'SmoothQuant σ and the calibrated σ');
        // (c) histogram
        const h = json(`b${block}-${linear}-histogram`);
        const all = Array.from(x);
        const lo = Math.min(...all);
        const hi = Math.max(...all);
        assert.equal(h.lo, lo);
        assert.equal(h.hi, hi);
        assert.equal(h.counts.length, 23);
        const w = (hi - lo) / 23;
        for (let k = 0; k < 23; k++) {
          const c = all.filter((u) => u >= lo + k * w && (k === 22 ? u <= hi : u < lo + (k + 1) * w)).length;
          assert.equal(h.counts[k], c, `${where} bin ${k}`);
        }
        // Errors: RTN baselines fully independent; searched ones from the same parameters.
        const got = (method: string) => errors.errors.find((e: { linear: string; method: string }) => e.linear === linear && e.method === method);
        const check = (method: string, q: LinearQuant) => {
          const ref = referenceError(site, q, x, rows);
          const e = got(method);
          // Relative agreement, with a floor at float32 round-off of the outputs (a 1-channel dt_proj
          // quantizes almost exactly, leaving only that noise).
          const power = ref.mse / ref.relativeMse;
          assert.ok(Math.abs(e.mse - ref.mse) <= 1e-4 * ref.mse + 1e-12 * power, `${where} ${method} mse: ${e.mse} vs reference ${ref.mse}`);
          assert.ok(Math.abs(e.relativeMse - ref.relativeMse) <= 1e-4 * ref.relativeMse + 1e-12, `${where} ${method} relative mse: ${e.relativeMse} vs ${ref.relativeMse}`);
          assert.ok(Math.abs(e.cosine - ref.cosine) < 1e-6, `${where} ${method} cosine ${e.cosine} vs ${ref.cosine}`);
        };
        check('rtn-per-tensor', referenceRtn(site, x, wbits, abits, false));
        check('per-token-dynamic', referenceRtn(site, x, wbits, abits, true));
        const absMax = Float32Array.from(ch.absMax as number[]);
        for (const m of ['pts', 'pts-smooth'] as BaselineMethod[]) {
          check(m, baselineQuant(m, site, x, rows, { wbits, abits, alpha: 0.5, actAbsMax: absMax, seqLen: L, seed: 0 }));
        }
        check('calibrated', site.quant!);
        if (block === 0) {
          // Block 0 sees the same input on the FP and quantized streams, so PTS+σ is exactly the
          // PTQ4VM initialisation the calibration computed.
          assert.equal(got('calibrated').mse, got('pts-smooth').mse, `${where}: PTS+σ equals the calibrated initialisation`);
        }
      }
      // The outlier channels planted in the RMSNorm weights reach in_proj: per-tensor RTN suffers, smoothing helps.
      const inProj = (m: string) => errors.errors.find((e: { linear: string; method: string }) => e.linear === 'in_proj' && e.method === m).mse;
      assert.ok(inProj('rtn-per-tensor') > 2 * inProj('pts-smooth'), `block ${block} in_proj: RTN ${inProj('rtn-per-tensor')} vs PTS+σ ${inProj('pts-smooth')}`);
      const chIn = json(`b${block}-in_proj-channels`);
      assert.deepEqual([...chIn.observations.channelOutliers.outlierChannels].sort(), [3, 7]);
    }
    const summary = JSON.parse(readFileSync(join(dir, 'summary.json'), 'utf8'));
    assert.equal(summary.plots.length, report.plots.length);
    const outliers = summary.observations.find((o: { key: string }) => o.key === 'channelOutliers');
    assert.ok(outliers.where.includes('layers.0.mixer.in_proj') && outliers.where.includes('layers.1.mixer.in_proj'));
    assert.equal(outliers.of, 12);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('analysis checks its arguments', () => {
  const model = tinyVim(3, { depth: 1 });
  const images = tinyImages(2, 1);
  assert.throws(() => analyzeModel(model, images, { blocks: [1], layers: ['in_proj'], wbits: 8, abits: 8, alpha: 0.5, seed: 0 }), /block 1 is out of range/);
  assert.throws(() => analyzeModel(model, images, { blocks: [0], layers: ['nope' as 'in_proj'], wbits: 8, abits: 8, alpha: 0.5, seed: 0 }), /unknown linear nope/);
});
