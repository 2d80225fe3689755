/** Helpers the backbone configs and models share: shape checks, linear sites, tensor slices. */
import type { LinearSite } from '../ops.js';
import { formatShape, Tensor, type Shape } from '../../tensor/tensor.js';
import { ConfigError } from '../vim/config.js';

export type ShapeMap = ReadonlyMap<string, Shape>;

/** Checks that `shapes` holds exactly `expected` (names and shapes); `what` names the architecture in messages. */
export function checkTensorShapes(expected: ShapeMap, shapes: ShapeMap, where: string, what: string,
  opts: { allowExtra?: (name: string) => boolean } = {}): void {
  for (const [name, shape] of expected) {
    const got = shapes.get(name);
    if (!got) throw new ConfigError(`${where}: missing tensor ${name} (expected shape ${formatShape(shape)})`);
    if (got.length !== shape.length || got.some((v, i) => v !== shape[i])) {
      throw new ConfigError(`${where}: tensor ${name} has shape ${formatShape(got)}, the config needs ${formatShape(shape)}`);
    }
  }
  for (const name of shapes.keys()) {
    if (!expected.has(name) && !(opts.allowExtra?.(name) ?? false)) {
      throw new ConfigError(`${where}: unexpected tensor ${name} for a ${what} with this config`);
    }
  }
}

/** The shape of tensor `name`, which must exist with the given rank. */
export function needShape(shapes: ShapeMap, name: string, rank: number, where: string, what: string): Shape {
  const s = shapes.get(name);
  if (!s) throw new ConfigError(`${where}: not a ${what} state dict (no tensor ${name})`);
  if (s.length !== rank) throw new ConfigError(`${where}: tensor ${name} has rank ${s.length}, expected ${rank}`);
  return s;
}

/** Counts i = 0, 1, … while `name(i)` exists. */
export function countWhile(shapes: ShapeMap, name: (i: number) => string): number {
  let n = 0;
  while (shapes.has(name(n))) n++;
  return n;
}

export function linearSite(name: string, weight: Tensor<'F32'>, bias: Tensor<'F32'> | null = null): LinearSite {
  if (weight.rank !== 2) throw new Error(`${name}: a linear weight must be 2-D, got ${formatShape(weight.shape)}`);
  return { name, weight, bias, outFeatures: weight.dim(0), inFeatures: weight.dim(1), reversedTokens: false, quant: null };
}

/** −exp(x) elementwise: the SSM's A from A_log. */
export function negExp(x: Float32Array): Float32Array {
  const out = new Float32Array(x.length);
  for (let i = 0; i < out.length; i++) out[i] = -Math.exp(x[i]!);
  return out;
}

/** Slice i of a tensor along its first dimension, as a tensor of the remaining shape (a view, no copy). */
export function slice0(t: Tensor<'F32'>, i: number): Tensor<'F32'> {
  const rest = t.shape.slice(1);
  const n = rest.reduce((a, b) => a * b, 1);
  return new Tensor('F32', rest, t.data.subarray(i * n, (i + 1) * n));
}

/** Rows [r0, r1) of a 2-D tensor (or of its flattening to [dim0, rest]) as raw data (a view). */
export function rows(t: Tensor<'F32'>, r0: number, r1: number): Float32Array {
  const n = t.size / t.dim(0);
  return t.data.subarray(r0 * n, r1 * n);
}

/** A config object: a JSON string or an object, else a ConfigError. */
export function configObject(raw: unknown, where: string): Record<string, unknown> {
  if (typeof raw === 'string') {
    try {
      raw = JSON.parse(raw);
    } catch {
      throw new ConfigError(`${where}: __metadata__.config is not valid JSON`);
    }
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new ConfigError(`${where}: config must be a JSON object`);
  return raw as Record<string, unknown>;
}

export function intField(o: Record<string, unknown>, key: string, where: string, lo: number, hi: number, fallback?: number): number {
  const v = o[key] ?? fallback;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < lo || v > hi) {
    throw new ConfigError(`${where}: config.${key} must be an integer in [${lo}, ${hi}], got ${JSON.stringify(o[key])}`);
  }
  return v;
}

export function intList(o: Record<string, unknown>, key: string, where: string, len: number | null, lo: number, hi: number): number[] {
  const v = o[key];
  if (!Array.isArray(v) || (len !== null && v.length !== len) || v.length === 0 ||
    !v.every((x) => typeof x === 'number' && Number.isInteger(x) && x >= lo && x <= hi)) {
    throw new ConfigError(`${where}: config.${key} must be a list of ${len ?? 'some'} integers in [${lo}, ${hi}], got ${JSON.stringify(v)}`);
  }
  return v as number[];
}

export function epsField(o: Record<string, unknown>, where: string, fallback = 1e-5): number {
  const eps = o.eps ?? fallback;
  if (typeof eps !== 'number' || !(eps > 0 && eps < 1)) throw new ConfigError(`${where}: config.eps must be a number in (0, 1), got ${JSON.stringify(o.eps)}`);
  return eps;
}

/** Dimensions of images [B, C, H, W]: throws a RangeError naming the model when they do not fit. */
export function checkImageBatch(images: Tensor, channels: number, what: string, size?: { H: number; W: number }): void {
  const ok = images.rank === 4 && images.dim(0) >= 1 && images.dim(1) === channels &&
    (!size || (images.dim(2) === size.H && images.dim(3) === size.W));
  if (!ok) {
    const want = size ? `[B, ${channels}, ${size.H}, ${size.W}]` : `[B, ${channels}, H, W]`;
    throw new RangeError(`${what}: images have shape ${formatShape(images.shape)}, the model takes ${want}`);
  }
}
