import { formatShape, Tensor } from '../tensor/tensor.js';
import type { LinearSite } from '../models/ops.js';
import { aQmax, wQmax, type ActGranularity, type LinearQuant } from './params.js';

/** `__metadata__.format` of a quantized model file (DESIGN.md, "Quantized model file"). */
export const QUANT_FORMAT = 'ptq4vm-quant/1';

/** `__metadata__.quant`: how the file was made. */
export interface QuantMetadata {
  method: 'ptq4vm' | 'ptq4vm-nojlss' | 'smoothquant' | 'rtn';
  wbits: number;
  abits: number;
  granularity: ActGranularity;
  weight_granularity: 'per-channel';
  calib_size: number;
  seed: number;
  steps?: number;
  alpha?: number;
  jlss_scope?: 'all' | 'inout';
  calib_data?: string;
  /**
   * VMamba / LocalVMamba: the H×W the model was calibrated for. Per-token parameters follow the
   * stage grids of that size, so a quantized model of these families takes exactly this input.
   */
  input_size?: [number, number];
}

export class QuantFileError extends Error {
  override name = 'QuantFileError';
}

const SUFFIXES = ['qweight', 'wscale', 'smooth', 'act_scale', 'act_zero'] as const;

/** True for the tensor names a quantized file adds next to the FP ones. */
export function isQuantTensorName(name: string): boolean {
  return SUFFIXES.some((s) => name.endsWith('.' + s));
}

/** The tensors that store one site's quantization. */
export function quantTensors(site: LinearSite, q: LinearQuant): [string, Tensor][] {
  const out: [string, Tensor][] = [
    [`${site.name}.qweight`, new Tensor('I8', [site.outFeatures, site.inFeatures], q.qweight)],
    [`${site.name}.wscale`, new Tensor('F32', [site.outFeatures], q.wscale)],
    [`${site.name}.smooth`, new Tensor('F32', [site.inFeatures], q.smooth)],
  ];
  if (q.granularity !== 'per-token-dynamic') {
    out.push([`${site.name}.act_scale`, new Tensor('F32', [q.actScale.length], q.actScale)]);
    out.push([`${site.name}.act_zero`, new Tensor('U8', [q.actZero.length], Uint8Array.from(q.actZero))]);
  }
  return out;
}

export function parseQuantMetadata(raw: string | undefined, where: string): QuantMetadata {
  if (raw === undefined) throw new QuantFileError(`${where}: quantized model without __metadata__.quant`);
  let o: Record<string, unknown>;
  try {
    o = JSON.parse(raw) as Record<string, unknown>;
  } catch {
    throw new QuantFileError(`${where}: __metadata__.quant is not valid JSON`);
  }
  if (typeof o !== 'object' || o === null) throw new QuantFileError(`${where}: __metadata__.quant must be an object`);
  const bits = (k: string, lo: number, hi: number): number => {
    const v = o[k];
    if (typeof v !== 'number' || !Number.isInteger(v) || v < lo || v > hi) throw new QuantFileError(`${where}: quant.${k} must be an integer in [${lo}, ${hi}], got ${JSON.stringify(v)}`);
    return v;
  };
  const gran = o.granularity;
  if (gran !== 'per-token-static' && gran !== 'per-tensor-static' && gran !== 'per-token-dynamic') {
    throw new QuantFileError(`${where}: quant.granularity ${JSON.stringify(gran)} is not per-token-static, per-tensor-static or per-token-dynamic`);
  }
  const method = o.method;
  if (method !== 'ptq4vm' && method !== 'ptq4vm-nojlss' && method !== 'smoothquant' && method !== 'rtn') {
    throw new QuantFileError(`${where}: unknown quant.method ${JSON.stringify(method)}`);
  }
  let inputSize: [number, number] | undefined;
  if (o.input_size !== undefined) {
    const v = o.input_size;
    if (!Array.isArray(v) || v.length !== 2 || !v.every((d) => typeof d === 'number' && Number.isInteger(d) && d >= 1 && d <= 8192)) {
      throw new QuantFileError(`${where}: quant.input_size must be [H, W] with integers in [1, 8192], got ${JSON.stringify(v)}`);
    }
    inputSize = [v[0] as number, v[1] as number];
  }
  return {
    ...(o as object),
    ...(inputSize ? { input_size: inputSize } : {}),
    method, granularity: gran, weight_granularity: 'per-channel',
    wbits: bits('wbits', 2, 8), abits: bits('abits', 2, 8),
    calib_size: typeof o.calib_size === 'number' ? o.calib_size : 0,
    seed: typeof o.seed === 'number' ? o.seed : 0,
  };
}

/**
 * Reads and validates one site's quantization tensors: shapes against the site, finite positive
 * scales, zero points and weight levels in range. `seqLen` is the period of per-token scales.
 */
export function readSiteQuant(tensors: ReadonlyMap<string, Tensor>, name: string, out: number, inF: number, seqLen: number, meta: QuantMetadata, where: string): LinearQuant {
  const get = (suffix: string, dtype: string[], shape: number[]): Tensor => {
    const t = tensors.get(`${name}.${suffix}`);
    if (!t) throw new QuantFileError(`${where}: missing tensor ${name}.${suffix}`);
    if (!dtype.includes(t.dtype)) throw new QuantFileError(`${where}: tensor ${name}.${suffix} has dtype ${t.dtype}, expected ${dtype.join(' or ')}`);
    if (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i])) {
      throw new QuantFileError(`${where}: tensor ${name}.${suffix} has shape ${formatShape(t.shape)}, expected ${formatShape(shape)}`);
    }
    return t;
  };
  const positive = (t: Tensor, what: string): Float32Array => {
    const d = t.data as Float32Array;
    for (let i = 0; i < d.length; i++) {
      if (!(Number.isFinite(d[i]!) && d[i]! > 0)) throw new QuantFileError(`${where}: ${name}.${what}[${i}] = ${d[i]} is not a finite positive number`);
    }
    return d;
  };
  const qweight = get('qweight', ['I8'], [out, inF]).data as Int8Array;
  const lim = wQmax(meta.wbits);
  for (let i = 0; i < qweight.length; i++) {
    if (Math.abs(qweight[i]!) > lim) throw new QuantFileError(`${where}: ${name}.qweight has level ${qweight[i]} outside ±${lim} for ${meta.wbits}-bit weights`);
  }
  const wscale = positive(get('wscale', ['F32'], [out]), 'wscale');
  const smooth = positive(get('smooth', ['F32'], [inF]), 'smooth');
  let actScale: Float32Array = new Float32Array(0);
  let actZero: Int32Array = new Int32Array(0);
  if (meta.granularity !== 'per-token-dynamic') {
    const period = meta.granularity === 'per-token-static' ? seqLen : 1;
    actScale = positive(get('act_scale', ['F32'], [period]), 'act_scale');
    const z = get('act_zero', ['U8', 'I32'], [period]).data as Uint8Array | Int32Array;
    const qmax = aQmax(meta.abits);
    actZero = Int32Array.from(z);
    for (let i = 0; i < actZero.length; i++) {
      if (actZero[i]! < 0 || actZero[i]! > qmax) throw new QuantFileError(`${where}: ${name}.act_zero[${i}] = ${actZero[i]} is outside [0, ${qmax}]`);
    }
  }
  return { wbits: meta.wbits, abits: meta.abits, granularity: meta.granularity, qweight, wscale, smooth, actScale, actZero };
}

/** W ≈ qweight·wscale/σ: FP weights reconstructed for a quantized site (for FP fallbacks and analysis). */
export function reconstructWeight(q: LinearQuant, out: number, inF: number): Tensor<'F32'> {
  const w = new Float32Array(out * inF);
  for (let o = 0; o < out; o++) {
    for (let j = 0; j < inF; j++) w[o * inF + j] = (q.qweight[o * inF + j]! * q.wscale[o]!) / q.smooth[j]!;
  }
  return new Tensor('F32', [out, inF], w);
}

/**
 * Writes a quantized model (DESIGN.md format), atomically: the FP tensors that stay FP, and for
 * every quantized linear its qweight/wscale/smooth/act_scale/act_zero instead of its weight (for
 * VMamba / LocalVMamba, whose per-direction projections are slices of stacked tensors, the stacked
 * `x_proj_weight` / `dt_projs_weight` give way to their slices' sites). Any family.
 */
export async function writeQuantizedModel(path: string, model: import('../models/load.js').AnyModel): Promise<void> {
  const { writeSafetensors } = await import('../io/safetensors.js');
  const { quantizableSites, siteWeightSource } = await import('../models/common/sites.js');
  const meta = model.quantMetadata;
  if (!meta) throw new QuantFileError('writeQuantizedModel: the model is not quantized');
  const size = meta.input_size;
  const tensors = new Map<string, Tensor>();
  const quantized = new Set<string>();
  for (const { site } of quantizableSites(model, size?.[0], size?.[1])) {
    if (!site.quant) throw new QuantFileError(`writeQuantizedModel: ${site.name} has no quantization`);
    quantized.add(siteWeightSource(site.name).tensor);
    for (const [k, t] of quantTensors(site, site.quant)) tensors.set(k, t);
  }
  for (const [k, t] of model.tensors) if (!quantized.has(k) && !isQuantTensorName(k)) tensors.set(k, t);
  const metadata: Record<string, string> = {
    format: QUANT_FORMAT,
    config: JSON.stringify(model.config),
    quant: JSON.stringify(meta),
  };
  for (const k of ['normalize', 'labels', 'dataset']) if (model.metadata[k] !== undefined) metadata[k] = model.metadata[k]!;
  await writeSafetensors(path, tensors, metadata);
}
