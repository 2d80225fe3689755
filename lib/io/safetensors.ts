/**
 * The safetensors format: 8-byte little-endian header length N, N bytes of JSON header
 * ({name: {dtype, shape, data_offsets: [begin, end]}, __metadata__?: {string: string}}), then the
 * data section, in which tensors lie back to back, row-major and little-endian.
 *
 * The reader validates strictly (every violation is a one-line SafetensorsError naming the file
 * and the tensor) and reads the file once into one buffer of which tensors are views, except
 * where a tensor's offset is misaligned for its element type (then that tensor alone is copied).
 */
import { endianness } from 'node:os';
import { constants as bufferConstants } from 'node:buffer';
import { open } from 'node:fs/promises';
import { ITEM_SIZE, allocStorage, isDType, viewStorage, type DType } from '../tensor/dtype.js';
import { Tensor, formatShape, shapeSize, type Shape } from '../tensor/tensor.js';
import { writeAll, writeFileAtomic } from './atomic.js';
import { SafetensorsError, quote } from './errors.js';

export { SafetensorsError } from './errors.js';

/** Largest header accepted (the limit of the reference implementation). */
export const MAX_HEADER_BYTES = 100_000_000;

/** One tensor as the header describes it; offsets are relative to the start of the data section. */
export interface SafetensorsEntry {
  readonly name: string;
  readonly dtype: DType;
  readonly shape: Shape;
  readonly begin: number;
  readonly end: number;
}

export interface SafetensorsHeader {
  readonly path: string;
  /** Size of the JSON header in bytes (the data section starts at 8 + headerSize). */
  readonly headerSize: number;
  readonly fileSize: number;
  /** Entries in data order (ascending offsets). */
  readonly entries: readonly SafetensorsEntry[];
  readonly metadata: Record<string, string>;
}

export interface SafetensorsFile {
  readonly path: string;
  readonly tensors: Map<string, Tensor>;
  readonly metadata: Record<string, string>;
}

export interface ReadSafetensorsOptions {
  /** Materialise only the tensors this accepts (the whole file is still validated). */
  filter?: (name: string) => boolean;
}

function assertLittleEndianHost(): void {
  if (endianness() !== 'LE') throw new Error('ptq4vm: safetensors I/O needs a little-endian host');
}

const HEADER_FIELDS = new Set(['dtype', 'shape', 'data_offsets']);
const utf8Strict = new TextDecoder('utf-8', { fatal: true });

/**
 * Finds a key that appears twice in one JSON object of `text` (already known to be valid JSON).
 * JSON.parse silently keeps the last value of a repeated key, which would hide a second tensor
 * of the same name, so the header text itself is scanned.
 */
function findDuplicateKey(text: string): { key: string; parent: string | undefined } | undefined {
  interface Frame { keys: Set<string> | undefined; expectKey: boolean; lastKey: string | undefined; parentKey: string | undefined }
  const stack: Frame[] = [];
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x22 /* " */) {
      const start = i;
      for (i++; i < text.length; i++) {
        const d = text.charCodeAt(i);
        if (d === 0x5c /* \ */) i++;
        else if (d === 0x22) break;
      }
      const top = stack[stack.length - 1];
      if (top?.keys && top.expectKey) {
        const key = JSON.parse(text.slice(start, i + 1)) as string;
        if (top.keys.has(key)) return { key, parent: top.parentKey };
        top.keys.add(key);
        top.lastKey = key;
        top.expectKey = false;
      }
    } else if (c === 0x7b /* { */ || c === 0x5b /* [ */) {
      const parentKey = stack[stack.length - 1]?.lastKey;
      stack.push({ keys: c === 0x7b ? new Set() : undefined, expectKey: c === 0x7b, lastKey: undefined, parentKey });
    } else if (c === 0x7d /* } */ || c === 0x5d /* ] */) {
      stack.pop();
    } else if (c === 0x2c /* , */) {
      const top = stack[stack.length - 1];
      if (top?.keys) top.expectKey = true;
    }
  }
  return undefined;
}

function describeJson(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  return typeof v === 'object' ? 'an object' : `${typeof v} ${show(v)}`;
}

/**
 * A short rendering of a JSON value for messages; never recursive (a hostile header may nest
 * arrays a million deep, which JSON.stringify would overflow on).
 */
function show(v: unknown): string {
  if (v === null || typeof v !== 'object') return (JSON.stringify(v) ?? String(v)).slice(0, 40);
  if (Array.isArray(v) && v.length <= 4 && v.every((x) => x === null || typeof x !== 'object')) return `[${v.map(show).join(', ')}]`;
  return describeJson(v);
}

/**
 * Validates a header (the JSON bytes after the 8-byte length) against the file's total size and
 * returns its entries in data order.
 */
export function parseSafetensorsHeader(headerBytes: Uint8Array, fileSize: number, where: string): SafetensorsHeader {
  const fail = (msg: string): never => {
    throw new SafetensorsError(where, msg);
  };
  let text: string;
  try {
    text = utf8Strict.decode(headerBytes);
  } catch {
    return fail('header is not valid UTF-8');
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (e) {
    return fail(`header is not valid JSON (${(e as Error).message})`);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) fail(`header must be a JSON object, got ${describeJson(parsed)}`);
  const dup = findDuplicateKey(text);
  if (dup) {
    if (dup.parent === undefined) fail(`duplicate tensor name ${quote(dup.key)} in header`);
    else if (dup.parent === '__metadata__') fail(`duplicate __metadata__ key ${quote(dup.key)}`);
    else fail(`tensor ${quote(dup.parent)}: duplicate field ${quote(dup.key)}`);
  }

  const dataSize = fileSize - 8 - headerBytes.byteLength;
  const metadata: Record<string, string> = {};
  const entries: SafetensorsEntry[] = [];
  for (const [name, raw] of Object.entries(parsed as Record<string, unknown>)) {
    if (name === '__metadata__') {
      if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) fail(`__metadata__ must be an object of strings, got ${describeJson(raw)}`);
      for (const [k, v] of Object.entries(raw as Record<string, unknown>)) {
        if (typeof v !== 'string') fail(`__metadata__ value ${quote(k)} must be a string, got ${describeJson(v)}`);
        metadata[k] = v as string;
      }
      continue;
    }
    const t = `tensor ${quote(name)}`;
    if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) fail(`${t}: entry must be an object, got ${describeJson(raw)}`);
    const e = raw as Record<string, unknown>;
    for (const k of Object.keys(e)) if (!HEADER_FIELDS.has(k)) fail(`${t}: unknown field ${quote(k)}`);
    if (!isDType(e.dtype)) {
      fail(e.dtype === undefined ? `${t}: missing dtype` : `${t}: unknown or unsupported dtype ${show(e.dtype)}`);
    }
    const dtype = e.dtype as DType;
    const shape = e.shape;
    if (!Array.isArray(shape)) fail(`${t}: shape must be a list of integers, got ${describeJson(shape)}`);
    let elems = 1n;
    for (const d of shape as unknown[]) {
      if (typeof d !== 'number' || !Number.isSafeInteger(d) || d < 0) fail(`${t}: shape dimension ${show(d)} is not a non-negative integer`);
      elems *= BigInt(d as number);
    }
    const nbytes = elems * BigInt(ITEM_SIZE[dtype]);
    if (nbytes > BigInt(Number.MAX_SAFE_INTEGER)) fail(`${t}: shape ${formatShape(shape as number[])} of ${dtype} is too large (${nbytes} bytes)`);
    const offs = e.data_offsets;
    if (!Array.isArray(offs) || offs.length !== 2 || !offs.every((o) => typeof o === 'number' && Number.isSafeInteger(o) && o >= 0)) {
      fail(`${t}: data_offsets must be two non-negative integers [begin, end], got ${show(offs)}`);
    }
    const [begin, end] = offs as [number, number];
    if (end < begin) fail(`${t}: data_offsets [${begin}, ${end}] end before they begin`);
    if (BigInt(end - begin) !== nbytes) {
      fail(`${t}: shape ${formatShape(shape as number[])} of ${dtype} needs ${nbytes} bytes but data_offsets [${begin}, ${end}] hold ${end - begin}`);
    }
    entries.push({ name, dtype, shape: Object.freeze([...(shape as number[])]), begin, end });
  }

  // Contiguity: sorted by begin (empty tensors first at a shared offset), each tensor must start
  // where the previous ended, the first at 0 and the last at the end of the file.
  entries.sort((a, b) => a.begin - b.begin || a.end - b.end);
  let expected = 0;
  for (const e of entries) {
    const t = `tensor ${quote(e.name)}`;
    if (e.begin < expected) fail(`${t}: data_offsets [${e.begin}, ${e.end}] overlap the previous tensor, which ends at ${expected}`);
    if (e.begin > expected) fail(`${t}: data_offsets [${e.begin}, ${e.end}] leave a gap after byte ${expected} of the data section`);
    if (e.end > dataSize) fail(`${t}: truncated: data ends at byte ${e.end} of the data section but the file holds only ${Math.max(dataSize, 0)}`);
    expected = e.end;
  }
  if (expected !== dataSize) fail(`${dataSize - expected} trailing bytes after the last tensor (data section is ${dataSize} bytes, tensors cover ${expected})`);
  return { path: where, headerSize: headerBytes.byteLength, fileSize, entries, metadata };
}

/** Reads the 8-byte prefix; checks the header length against the limit and the file size. */
function headerLength(prefix: Uint8Array, fileSize: number, where: string): number {
  if (fileSize === 0) throw new SafetensorsError(where, 'file is empty');
  if (fileSize < 8) throw new SafetensorsError(where, `file too short: ${fileSize} bytes, the header length alone needs 8`);
  const n = new DataView(prefix.buffer, prefix.byteOffset, 8).getBigUint64(0, true);
  if (n > BigInt(MAX_HEADER_BYTES)) throw new SafetensorsError(where, `header length ${n} exceeds the ${MAX_HEADER_BYTES}-byte limit`);
  if (n > BigInt(fileSize - 8)) throw new SafetensorsError(where, `header length ${n} exceeds the ${fileSize - 8} bytes after the length field (truncated file?)`);
  if (n < 2n) throw new SafetensorsError(where, `header length ${n} is too small for a JSON object`);
  return Number(n);
}

function materialise(bytes: Uint8Array, dataStart: number, e: SafetensorsEntry): Tensor {
  const n = shapeSize(e.shape);
  const item = ITEM_SIZE[e.dtype];
  const abs = bytes.byteOffset + dataStart + e.begin;
  if (abs % item === 0) return new Tensor(e.dtype, e.shape, viewStorage(e.dtype, bytes.buffer, abs, n));
  // Misaligned for this element type: a typed-array view is impossible, copy this tensor only.
  const data = allocStorage(e.dtype, n);
  new Uint8Array(data.buffer, data.byteOffset, data.byteLength).set(bytes.subarray(dataStart + e.begin, dataStart + e.end));
  return new Tensor(e.dtype, e.shape, data);
}

/** Parses a whole safetensors file held in memory; tensors are views into `bytes` where aligned. */
export function parseSafetensors(bytes: Uint8Array, where: string, opts: ReadSafetensorsOptions = {}): SafetensorsFile {
  assertLittleEndianHost();
  const n = headerLength(bytes, bytes.byteLength, where);
  const header = parseSafetensorsHeader(bytes.subarray(8, 8 + n), bytes.byteLength, where);
  const tensors = new Map<string, Tensor>();
  for (const e of header.entries) {
    if (opts.filter && !opts.filter(e.name)) continue;
    tensors.set(e.name, materialise(bytes, 8 + n, e));
  }
  return { path: where, tensors, metadata: header.metadata };
}

async function readWholeFile(path: string): Promise<Uint8Array> {
  const fh = await open(path, 'r');
  try {
    const { size } = await fh.stat();
    if (size > bufferConstants.MAX_LENGTH) throw new SafetensorsError(path, `file of ${size} bytes is larger than this Node can hold in one buffer`);
    // A buffer of our own (byteOffset 0, never pooled) so that alignment in the file is alignment in memory.
    const bytes = new Uint8Array(new ArrayBuffer(size));
    let done = 0;
    while (done < size) {
      const { bytesRead } = await fh.read(bytes, done, Math.min(size - done, 1 << 30), done);
      if (bytesRead === 0) throw new SafetensorsError(path, `file shrank while being read (${done} of ${size} bytes)`);
      done += bytesRead;
    }
    return bytes;
  } finally {
    await fh.close();
  }
}

/** Reads and validates a safetensors file. */
export async function readSafetensors(path: string, opts: ReadSafetensorsOptions = {}): Promise<SafetensorsFile> {
  return parseSafetensors(await readWholeFile(path), path, opts);
}

/** Reads and validates only the header (for `info`): the data section is never read. */
export async function readSafetensorsHeader(path: string): Promise<SafetensorsHeader> {
  const fh = await open(path, 'r');
  try {
    const { size } = await fh.stat();
    const prefix = new Uint8Array(8);
    if (size >= 8) await fh.read(prefix, 0, 8, 0);
    const n = headerLength(prefix, size, path);
    const header = new Uint8Array(n);
    const { bytesRead } = await fh.read(header, 0, n, 8);
    if (bytesRead !== n) throw new SafetensorsError(path, `file shrank while being read`);
    return parseSafetensorsHeader(header, size, path);
  } finally {
    await fh.close();
  }
}

export type TensorCollection = ReadonlyMap<string, Tensor> | Readonly<Record<string, Tensor>>;

interface Layout {
  header: Uint8Array;
  order: [string, Tensor][];
  dataSize: number;
}

function bytesOf(t: Tensor): Uint8Array {
  return new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
}

/**
 * Plans a file: tensors sorted by element size (largest first), then by name, which is
 * deterministic and keeps every tensor aligned for its type (the header is padded with spaces
 * to a multiple of 8), so that reading gives views, never copies.
 */
function layout(tensors: TensorCollection, metadata: Readonly<Record<string, string>>): Layout {
  const list: [string, Tensor][] = tensors instanceof Map ? [...tensors.entries()] : Object.entries(tensors as Record<string, Tensor>);
  for (const [name, t] of list) {
    if (name === '__metadata__') throw new TypeError('a tensor cannot be named __metadata__');
    if (name.length === 0) throw new TypeError('a tensor name cannot be empty');
    if (!(t instanceof Tensor) || !isDType(t.dtype)) throw new TypeError(`tensor ${quote(name)} is not a Tensor`);
    if (t.data.length !== shapeSize(t.shape) || t.data.BYTES_PER_ELEMENT !== ITEM_SIZE[t.dtype]) {
      throw new TypeError(`tensor ${quote(name)}: storage does not match ${t.dtype} ${formatShape(t.shape)}`);
    }
  }
  list.sort(([a, ta], [b, tb]) => ITEM_SIZE[tb.dtype] - ITEM_SIZE[ta.dtype] || (a < b ? -1 : a > b ? 1 : 0));
  const parts: string[] = [];
  const metaKeys = Object.keys(metadata).sort();
  if (metaKeys.length > 0) {
    const fields = metaKeys.map((k) => {
      const v = metadata[k];
      if (typeof v !== 'string') throw new TypeError(`metadata value ${quote(k)} must be a string`);
      return `${JSON.stringify(k)}:${JSON.stringify(v)}`;
    });
    parts.push(`"__metadata__":{${fields.join(',')}}`);
  }
  let offset = 0;
  for (const [name, t] of list) {
    const end = offset + t.data.byteLength;
    parts.push(`${JSON.stringify(name)}:{"dtype":"${t.dtype}","shape":[${t.shape.join(',')}],"data_offsets":[${offset},${end}]}`);
    offset = end;
  }
  let json = Buffer.from(`{${parts.join(',')}}`, 'utf8');
  const pad = (8 - (json.byteLength % 8)) % 8;
  if (pad) json = Buffer.concat([json, Buffer.alloc(pad, 0x20)]);
  if (json.byteLength > MAX_HEADER_BYTES) throw new RangeError(`safetensors header of ${json.byteLength} bytes exceeds the ${MAX_HEADER_BYTES}-byte limit`);
  const header = new Uint8Array(8 + json.byteLength);
  new DataView(header.buffer).setBigUint64(0, BigInt(json.byteLength), true);
  header.set(json, 8);
  return { header, order: list, dataSize: offset };
}

/** The file's bytes in memory (for small files, tests and network replies). */
export function serializeSafetensors(tensors: TensorCollection, metadata: Readonly<Record<string, string>> = {}): Uint8Array {
  assertLittleEndianHost();
  const { header, order, dataSize } = layout(tensors, metadata);
  const out = new Uint8Array(header.byteLength + dataSize);
  out.set(header, 0);
  let at = header.byteLength;
  for (const [, t] of order) {
    out.set(bytesOf(t), at);
    at += t.data.byteLength;
  }
  return out;
}

/** Writes a safetensors file atomically (temp file in the same directory, then rename). */
export async function writeSafetensors(path: string, tensors: TensorCollection, metadata: Readonly<Record<string, string>> = {}): Promise<void> {
  assertLittleEndianHost();
  const { header, order } = layout(tensors, metadata);
  await writeFileAtomic(path, async (fh) => {
    await writeAll(fh, header);
    for (const [, t] of order) await writeAll(fh, bytesOf(t));
  });
}
