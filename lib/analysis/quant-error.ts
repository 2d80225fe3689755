import type { LinearSite } from '../models/ops.js';
import type { LinearQuant } from '../quant/params.js';
import { CpuExecutor } from '../runtime/cpu-executor.js';

/**
 * The error a quantizer causes in a linear layer's OUTPUT on a given FP input x:
 * y = x·Wᵀ (+ bias) against ŷ = the executor's fake-quant linear, i.e.
 * dequant(Q(x/σ))·dequant(Q(W·σ))ᵀ (+ bias), the same integers the INT8 kernels compute.
 */
export interface OutputError {
  /** mean over every output element of (ŷ − y)². */
  mse: number;
  /** mse / mean(y²): comparable across layers of different scale. */
  relativeMse: number;
  /** mean over rows (tokens) of cos(ŷ_row, y_row), the complement of the calibration's loss. */
  cosine: number;
}

/** Rows per executor call, rounded down to whole sequences so per-token parameters stay aligned. */
const CHUNK_ROWS = 8192;

export function linearOutputError(site: LinearSite, quant: LinearQuant, x: Float32Array, rows: number, seqLen: number): OutputError {
  const inF = site.inFeatures;
  const out = site.outFeatures;
  if (x.length !== rows * inF) throw new RangeError(`${site.name}: ${x.length} input values for [${rows}, ${inF}]`);
  if (rows % seqLen !== 0) throw new RangeError(`${site.name}: ${rows} rows are not whole sequences of ${seqLen}`);
  const fpSite: LinearSite = { ...site, quant: null };
  const qSite: LinearSite = { ...site, quant };
  const ops = new CpuExecutor({ quantMode: 'fake' });
  const chunk = Math.max(seqLen, Math.floor(CHUNK_ROWS / seqLen) * seqLen);
  let se = 0;
  let yy = 0;
  let cosSum = 0;
  for (let r0 = 0; r0 < rows; r0 += chunk) {
    const n = Math.min(chunk, rows - r0);
    const xm = ops.fromHost(x.subarray(r0 * inF, (r0 + n) * inF), n, inF);
    const y = ops.toHost(ops.linear({ fp: xm }, fpSite));
    const yq = ops.toHost(ops.linear({ fp: xm }, qSite));
    ops.endForward();
    for (let r = 0; r < n; r++) {
      let ab = 0;
      let aa = 0;
      let bb = 0;
      for (let o = 0; o < out; o++) {
        const a = y[r * out + o]!;
        const b = yq[r * out + o]!;
        const d = b - a;
        se += d * d;
        ab += a * b;
        aa += a * a;
        bb += b * b;
      }
      yy += aa;
      cosSum += ab / Math.max(Math.sqrt(aa * bb), 1e-12);
    }
  }
  const count = rows * out;
  return { mse: se / count, relativeMse: yy > 0 ? se / yy : 0, cosine: cosSum / rows };
}
