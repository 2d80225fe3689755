/** Element types, named as safetensors names them. */
export type DType = 'F64' | 'F32' | 'F16' | 'BF16' | 'I64' | 'I32' | 'I16' | 'I8' | 'U8' | 'BOOL';

export const DTYPES: readonly DType[] = ['F64', 'F32', 'F16', 'BF16', 'I64', 'I32', 'I16', 'I8', 'U8', 'BOOL'];

export interface DTypeStorage {
  F64: Float64Array;
  F32: Float32Array;
  F16: Uint16Array;
  BF16: Uint16Array;
  I64: BigInt64Array;
  I32: Int32Array;
  I16: Int16Array;
  I8: Int8Array;
  U8: Uint8Array;
  BOOL: Uint8Array;
}
export type StorageOf<D extends DType> = DTypeStorage[D];
export type AnyStorage = DTypeStorage[DType];

export const ITEM_SIZE: Readonly<Record<DType, number>> = {
  F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, I16: 2, I8: 1, U8: 1, BOOL: 1,
};

export function isDType(s: unknown): s is DType {
  return typeof s === 'string' && (DTYPES as readonly string[]).includes(s);
}

type Ctor = { new (n: number): AnyStorage; new (buf: ArrayBufferLike, off: number, len: number): AnyStorage };
const CTORS: Record<DType, Ctor> = {
  F64: Float64Array, F32: Float32Array, F16: Uint16Array, BF16: Uint16Array, I64: BigInt64Array,
  I32: Int32Array, I16: Int16Array, I8: Int8Array, U8: Uint8Array, BOOL: Uint8Array,
} as unknown as Record<DType, Ctor>;

export function allocStorage<D extends DType>(dtype: D, n: number): StorageOf<D> {
  return new CTORS[dtype](n) as StorageOf<D>;
}

/** A view of `length` elements of `buffer` at byte `offset` (which must be aligned). */
export function viewStorage<D extends DType>(dtype: D, buffer: ArrayBufferLike, offset: number, length: number): StorageOf<D> {
  return new CTORS[dtype](buffer, offset, length) as StorageOf<D>;
}

/** IEEE half → float. */
export function f16ToF32(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0) return s * m * 2 ** -24;
  if (e === 31) return m ? NaN : s * Infinity;
  return s * (1 + m / 1024) * 2 ** (e - 15);
}

const f32Scratch = new Float32Array(1);
const u32Scratch = new Uint32Array(f32Scratch.buffer);

export function bf16ToF32(h: number): number {
  u32Scratch[0] = h << 16;
  return f32Scratch[0]!;
}

/** float → bf16, round to nearest even (NaN stays NaN). */
export function f32ToBf16(x: number): number {
  f32Scratch[0] = x;
  const u = u32Scratch[0]!;
  if ((u & 0x7fffffff) > 0x7f800000) return (u >> 16) | 0x40;
  return ((u + 0x7fff + ((u >> 16) & 1)) >>> 16) & 0xffff;
}

/** float → half, round to nearest even, overflow to ±Inf. */
export function f32ToF16(x: number): number {
  f32Scratch[0] = x;
  const u = u32Scratch[0]!;
  const sign = (u >>> 16) & 0x8000;
  const exp = (u >>> 23) & 0xff;
  let mant = u & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  let e = exp - 127 + 15;
  if (e >= 31) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    const half = 1 << (shift - 1);
    const rem = mant & ((1 << shift) - 1);
    let r = mant >>> shift;
    if (rem > half || (rem === half && (r & 1))) r++;
    return sign | r;
  }
  const rem = mant & 0x1fff;
  let r = (e << 10) | (mant >>> 13);
  if (rem > 0x1000 || (rem === 0x1000 && (r & 1))) r++;
  return sign | r;
}
