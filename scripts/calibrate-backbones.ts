// PTQ4VM on every backbone fixture (../shared/fixtures/backbones), for docs/backbones.md:
//   node dist/scripts/calibrate-backbones.js [--fixtures a,b] [--calib 32] [--steps 20] [--eval 64] [--seed 0]
// Per fixture, method (ptq4vm, ptq4vm-nojlss) and bit width (W8A8, W4A8): calibration time, the
// summed unit loss before/after JLSS, and the INT8 logits against FP32 and against the fake-quant
// simulation on the fixture's reference input plus synthetic images (the heads are random:
// agreement of argmax and cosine of the logit vectors, not accuracy). Calibration and evaluation
// images are at the reference input's size. A table, then one JSON object per row.
import { cpus } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { cpuKernels } from '../lib/backend/cpu-kernels.js';
import { packageRoot } from '../lib/backend/addon.js';
import { readSafetensors } from '../lib/io/safetensors.js';
import { syntheticImages } from '../lib/models/common/random.js';
import { loadAnyModel, type AnyModel } from '../lib/models/load.js';
import { calibrate, type CalibrationMethod } from '../lib/quant/calibrate.js';
import { ModelRunner, type Precision } from '../lib/runtime/forward.js';
import { Tensor } from '../lib/tensor/tensor.js';

const ALL = ['local_vim_small', 'local_vim_small_112pad', 'local_vim_small_midcls_112pad', 'vmamba_v2v_small', 'vmamba_v2v_small_ds4', 'local_vssm_small'];
const { values } = parseArgs({
  options: {
    fixtures: { type: 'string', default: ALL.join(',') }, calib: { type: 'string', default: '32' }, steps: { type: 'string', default: '20' },
    eval: { type: 'string', default: '64' }, seed: { type: 'string', default: '0' },
  },
});
const dir = process.env.PTQ4VM_FIXTURES ?? join(packageRoot(), '..', 'shared', 'fixtures');
const calibN = Number(values.calib), steps = Number(values.steps), evalN = Number(values.eval), seed = Number(values.seed);

function argmaxRows(l: Float32Array, classes: number): number[] {
  return Array.from({ length: l.length / classes }, (_, i) => {
    let best = 0;
    for (let k = 1; k < classes; k++) if (l[i * classes + k]! > l[i * classes + best]!) best = k;
    return best;
  });
}

/** Argmax agreement, mean and min per-image cosine, ‖a − b‖/‖b‖. */
function compare(a: Float32Array, b: Float32Array, classes: number): { argmax: number; meanCos: number; minCos: number; rel: number } {
  const pa = argmaxRows(a, classes), pb = argmaxRows(b, classes);
  let cosSum = 0, minCos = 1, num = 0, den = 0;
  for (let i = 0; i < pa.length; i++) {
    let ab = 0, aa = 0, bb = 0;
    for (let k = 0; k < classes; k++) {
      const x = a[i * classes + k]!, y = b[i * classes + k]!;
      ab += x * y;
      aa += x * x;
      bb += y * y;
      num += (x - y) ** 2;
      den += y * y;
    }
    const c = ab / Math.sqrt(aa * bb);
    cosSum += c;
    minCos = Math.min(minCos, c);
  }
  return { argmax: pa.filter((p, i) => p === pb[i]).length / pa.length, meanCos: cosSum / pa.length, minCos, rel: Math.sqrt(num / den) };
}

const run = (m: AnyModel, precision: Precision, x: Tensor<'F32'>): Float32Array => new ModelRunner(m, { precision }).forward(x).data;

const info = cpuKernels().runtimeInfo();
console.log(`${cpus()[0]?.model.trim()}, ${cpus().length} CPUs, ISA ${info.isa}, ${info.threads} pool threads; `
  + `${calibN} calibration images, ${steps} JLSS steps, ${evalN} evaluation images (reference input first), seed ${seed}`);
const head = ['fixture', 'method', 'bits', 'calib s', 'unit loss before → after', 'argmax vs FP32', 'cos vs FP32 (mean/min)', 'rel err vs FP32', 'argmax INT8 vs FQ', 'rel err INT8 vs FQ'];
const table: string[][] = [head];
const json: string[] = [];
for (const name of values.fixtures!.split(',').map((s) => s.trim())) {
  const path = join(dir, 'backbones', `${name}.safetensors`);
  const ref = (await readSafetensors(join(dir, 'backbones', `${name}.ref.safetensors`))).tensors.get('input')!.toFloat32();
  const [, C, H, W] = ref.shape as [number, number, number, number];
  const calibImages = syntheticImages(calibN, C, H, W, 1000 + seed);
  const extra = syntheticImages(Math.max(0, evalN - ref.dim(0)), C, H, W, 2000 + seed);
  const evalImages = new Tensor('F32', [ref.dim(0) + extra.dim(0), C, H, W]);
  evalImages.data.set(ref.data);
  evalImages.data.set(extra.data, ref.size);
  const fpModel = await loadAnyModel(path);
  const classes = fpModel.config.num_classes;
  const fp = run(fpModel, 'fp32', evalImages);
  for (const method of ['ptq4vm', 'ptq4vm-nojlss'] as CalibrationMethod[]) {
    for (const [wbits, abits] of [[8, 8], [4, 8]]) {
      const model = await loadAnyModel(path);
      const report = calibrate(model, calibImages, { method, wbits: wbits!, abits: abits!, steps: method === 'ptq4vm' ? steps : 0, seed });
      const int8 = run(model, 'int8', evalImages);
      const fake = run(model, 'fake-quant', evalImages);
      const vsFp = compare(int8, fp, classes);
      const vsFake = compare(int8, fake, classes);
      const before = report.blocks.reduce((s, b) => s + b.lossBefore, 0);
      const after = report.blocks.reduce((s, b) => s + b.lossAfter, 0);
      table.push([name, method, `W${wbits}A${abits}`, report.seconds.toFixed(1), `${before.toExponential(2)} → ${after.toExponential(2)}`,
        `${(vsFp.argmax * 100).toFixed(1)} %`, `${vsFp.meanCos.toFixed(4)} / ${vsFp.minCos.toFixed(4)}`, vsFp.rel.toExponential(2),
        `${(vsFake.argmax * 100).toFixed(1)} %`, vsFake.rel.toExponential(2)]);
      console.error(table[table.length - 1]!.join(' | '));
      json.push(JSON.stringify({
        fixture: name, method, wbits, abits, units: report.blocks.length, calib_images: calibN, steps: method === 'ptq4vm' ? steps : 0,
        eval_images: evalImages.dim(0), seconds: Math.round(report.seconds * 100) / 100, loss_before: before, loss_after: after,
        vs_fp32: vsFp, int8_vs_fake_quant: vsFake,
      }));
    }
  }
}
const widths = head.map((_, i) => Math.max(...table.map((r) => r[i]!.length)));
for (const r of table) console.log(r.map((c, i) => c.padEnd(widths[i]!)).join('  '));
for (const l of json) console.log(l);
