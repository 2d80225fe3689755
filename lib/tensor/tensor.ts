import { allocStorage, bf16ToF32, f16ToF32, type DType, type StorageOf } from './dtype.js';

export type Shape = readonly number[];

export function shapeSize(shape: Shape): number {
  let n = 1;
  for (const d of shape) {
    if (!Number.isSafeInteger(d) || d < 0) throw new RangeError(`invalid dimension ${d} in shape [${shape.join(', ')}]`);
    n *= d;
    if (!Number.isSafeInteger(n)) throw new RangeError(`shape [${shape.join(', ')}] is too large`);
  }
  return n;
}

export function shapeEquals(a: Shape, b: Shape): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

export function formatShape(shape: Shape): string {
  return `[${shape.join(', ')}]`;
}

/**
 * A dense, row-major tensor in host memory. The storage may be a view into a larger buffer
 * (a memory-mapped model file, say); `reshape` shares it, `clone` copies it.
 */
export class Tensor<D extends DType = DType> {
  readonly dtype: D;
  readonly shape: Shape;
  readonly data: StorageOf<D>;

  constructor(dtype: D, shape: Shape, data?: StorageOf<D>) {
    const n = shapeSize(shape);
    this.dtype = dtype;
    this.shape = Object.freeze([...shape]);
    if (data === undefined) {
      this.data = allocStorage(dtype, n);
    } else {
      if (data.length !== n) {
        throw new RangeError(`tensor data has ${data.length} elements, shape ${formatShape(shape)} needs ${n}`);
      }
      this.data = data;
    }
  }

  static zeros<D extends DType>(dtype: D, shape: Shape): Tensor<D> {
    return new Tensor(dtype, shape);
  }

  static f32(shape: Shape, data?: Float32Array | readonly number[]): Tensor<'F32'> {
    if (data === undefined) return new Tensor('F32', shape);
    return new Tensor('F32', shape, data instanceof Float32Array ? data : Float32Array.from(data));
  }

  get size(): number {
    return this.data.length;
  }

  get rank(): number {
    return this.shape.length;
  }

  dim(i: number): number {
    const d = this.shape[i < 0 ? this.shape.length + i : i];
    if (d === undefined) throw new RangeError(`dimension ${i} out of range for shape ${formatShape(this.shape)}`);
    return d;
  }

  reshape(shape: Shape): Tensor<D> {
    const n = shapeSize(shape);
    if (n !== this.size) {
      throw new RangeError(`cannot reshape ${formatShape(this.shape)} to ${formatShape(shape)}`);
    }
    return new Tensor(this.dtype, shape, this.data);
  }

  clone(): Tensor<D> {
    return new Tensor(this.dtype, this.shape, this.data.slice() as StorageOf<D>);
  }

  /** Values as float32 (a copy for every dtype but F32, which is returned as is). */
  toFloat32(): Tensor<'F32'> {
    if (this.dtype === 'F32') return this as unknown as Tensor<'F32'>;
    const out = new Float32Array(this.size);
    const src = this.data;
    if (this.dtype === 'F16') for (let i = 0; i < out.length; i++) out[i] = f16ToF32((src as Uint16Array)[i]!);
    else if (this.dtype === 'BF16') for (let i = 0; i < out.length; i++) out[i] = bf16ToF32((src as Uint16Array)[i]!);
    else if (this.dtype === 'I64') for (let i = 0; i < out.length; i++) out[i] = Number((src as BigInt64Array)[i]!);
    else for (let i = 0; i < out.length; i++) out[i] = (src as Exclude<typeof src, BigInt64Array>)[i]!;
    return new Tensor('F32', this.shape, out);
  }
}
