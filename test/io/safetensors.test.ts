import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DTYPES, ITEM_SIZE, allocStorage, type DType } from '../../lib/tensor/dtype.js';
import { Tensor, shapeSize } from '../../lib/tensor/tensor.js';
import { SafetensorsError, parseSafetensors, readSafetensors, readSafetensorsHeader, serializeSafetensors, writeSafetensors } from '../../lib/io/safetensors.js';
import { writeFileAtomic, writeAll } from '../../lib/io/atomic.js';
import { parseVimConfig } from '../../lib/models/vim/config.js';
import { fixturesDir, NO_FIXTURES } from '../helpers.js';
import { bytesOf, rng } from './torch-writer.js';

const tmp = mkdtempSync(join(tmpdir(), 'ptq4vm-st-'));
process.on('exit', () => rmSync(tmp, { recursive: true, force: true }));

/** A tensor of random bytes that are valid for its dtype (BOOL 0/1), never all zeros. */
function randomTensor(dtype: DType, shape: number[], rand: () => number): Tensor {
  const n = shapeSize(shape);
  const data = allocStorage(dtype, n);
  const b = bytesOf(data);
  for (let i = 0; i < b.length; i++) b[i] = Math.floor(rand() * 256);
  if (dtype === 'BOOL') for (let i = 0; i < n; i++) b[i] = b[i]! & 1;
  if (dtype === 'F32') for (let i = 0; i < n; i++) (data as Float32Array)[i] = rand() * 2 - 1;
  if (dtype === 'F64') for (let i = 0; i < n; i++) (data as Float64Array)[i] = rand() * 2 - 1;
  if (n > 0 && dtype !== 'BOOL') b[0] = 1; // never all zeros
  return new Tensor(dtype, shape, data);
}

function sameBytes(a: Tensor, b: Tensor): boolean {
  return Buffer.compare(Buffer.from(bytesOf(a.data)), Buffer.from(bytesOf(b.data))) === 0;
}

/** A file from a header given as an object or raw text, a data section and an optional length. */
function craft(header: unknown, data: Uint8Array = new Uint8Array(0), headerLength?: bigint): Uint8Array {
  const json = Buffer.from(typeof header === 'string' ? header : JSON.stringify(header), 'utf8');
  const out = new Uint8Array(8 + json.length + data.length);
  new DataView(out.buffer).setBigUint64(0, headerLength ?? BigInt(json.length), true);
  out.set(json, 8);
  out.set(data, 8 + json.length);
  return out;
}

function expectError(bytes: Uint8Array, pattern: RegExp, name = 'case.safetensors'): SafetensorsError {
  let err: unknown;
  try {
    parseSafetensors(bytes, name);
  } catch (e) {
    err = e;
  }
  assert.ok(err instanceof SafetensorsError, `expected a SafetensorsError matching ${pattern}, got ${String(err)}`);
  assert.match(err.message, pattern);
  assert.ok(err.message.startsWith(`${name}: `), `message names the file: ${err.message}`);
  assert.ok(!/[\r\n]/.test(err.message), 'one line');
  return err;
}

test('round trip of every dtype, ragged and degenerate shapes, through a file', async () => {
  const rand = rng(1);
  const tensors = new Map<string, Tensor>();
  const shapes = [[], [1], [7], [3, 5], [2, 3, 7], [0], [4, 0, 3]];
  for (const dtype of DTYPES) for (const [i, shape] of shapes.entries()) tensors.set(`${dtype.toLowerCase()}.${i}`, randomTensor(dtype, shape, rand));
  const path = join(tmp, 'all.safetensors');
  const metadata = { format: 'test/1', note: 'ünïcode ✓', empty: '' };
  await writeSafetensors(path, tensors, metadata);
  const file = await readSafetensors(path);
  assert.deepEqual(file.metadata, metadata);
  assert.equal(file.tensors.size, tensors.size);
  for (const [name, t] of tensors) {
    const r = file.tensors.get(name);
    assert.ok(r, name);
    assert.equal(r.dtype, t.dtype, name);
    assert.deepEqual(r.shape, t.shape, name);
    assert.ok(r.data instanceof t.data.constructor, `${name}: storage type`);
    assert.ok(sameBytes(r, t), `${name}: bytes`);
  }
  // The writer keeps every tensor aligned, so the reader copies none: all share the file buffer.
  const buffers = new Set([...file.tensors.values()].filter((t) => t.size > 0).map((t) => t.data.buffer));
  assert.equal(buffers.size, 1);
  const raw = readFileSync(path);
  assert.equal((8 + Number(raw.readBigUInt64LE(0))) % 8, 0, 'header padded to 8 bytes');
  const header = await readSafetensorsHeader(path);
  assert.equal(header.entries.length, tensors.size);
  assert.deepEqual(header.metadata, metadata);
  assert.equal(header.fileSize, raw.length);
});

test('the writer is deterministic: insertion order does not matter; names sort within an element size', () => {
  const rand = rng(2);
  const a = randomTensor('F32', [3, 2], rand);
  const b = randomTensor('I8', [5], rand);
  const c = randomTensor('F32', [4], rand);
  const d = randomTensor('U8', [3], rand);
  const one = serializeSafetensors(new Map([['b', b], ['a', a], ['c', c], ['d', d]]), { y: '1', x: '2' });
  const two = serializeSafetensors({ d, c, b, a }, { x: '2', y: '1' });
  assert.deepEqual(one, two);
  const n = Number(new DataView(one.buffer).getBigUint64(0, true));
  const header = Buffer.from(one.subarray(8, 8 + n)).toString();
  assert.ok(header.indexOf('"a"') < header.indexOf('"c"') && header.indexOf('"c"') < header.indexOf('"b"') && header.indexOf('"b"') < header.indexOf('"d"'), header);
  assert.ok(header.startsWith('{"__metadata__":{"x":"2","y":"1"}'), header);
});

test('names JavaScript would reorder (integer-like) or that need escaping survive', () => {
  const rand = rng(3);
  const tensors = new Map<string, Tensor>([['10', randomTensor('F32', [2], rand)], ['2', randomTensor('F32', [1], rand)], ['quote"new\nline', randomTensor('I32', [3], rand)], ['__proto__', randomTensor('U8', [2], rand)]]);
  const file = parseSafetensors(serializeSafetensors(tensors), 'mem');
  for (const [name, t] of tensors) assert.ok(sameBytes(file.tensors.get(name)!, t), name);
});

test('misaligned tensors are copied, aligned ones are views', () => {
  const rand = rng(4);
  const f = randomTensor('F32', [3], rand);
  const u = randomTensor('U8', [3], rand);
  // U8 first, then F32 at data offset 3: misaligned for a Float32Array.
  const header = { u: { dtype: 'U8', shape: [3], data_offsets: [0, 3] }, f: { dtype: 'F32', shape: [3], data_offsets: [3, 15] } };
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - ((8 + json.length) % 8)) % 8);
  const data = new Uint8Array(15);
  data.set(bytesOf(u.data), 0);
  data.set(bytesOf(f.data), 3);
  const bytes = craft(json, data);
  const file = parseSafetensors(bytes, 'mem');
  assert.ok(sameBytes(file.tensors.get('f')!, f));
  assert.ok(sameBytes(file.tensors.get('u')!, u));
  assert.notEqual(file.tensors.get('f')!.data.buffer, bytes.buffer, 'misaligned F32 copied');
  assert.equal(file.tensors.get('u')!.data.buffer, bytes.buffer, 'U8 is a view');
});

test('filter materialises only the selected tensors (but validates all)', () => {
  const rand = rng(5);
  const bytes = serializeSafetensors({ keep: randomTensor('F32', [2], rand), drop: randomTensor('F32', [2], rand) });
  const file = parseSafetensors(bytes, 'mem', { filter: (n) => n === 'keep' });
  assert.deepEqual([...file.tensors.keys()], ['keep']);
});

const T = (dtype: string, shape: unknown, offs: unknown) => ({ dtype, shape, data_offsets: offs });

test('malformed files: each is a one-line SafetensorsError naming the file (and the tensor)', () => {
  const d16 = new Uint8Array(16).fill(1);
  expectError(new Uint8Array(0), /file is empty/);
  expectError(new Uint8Array(5), /too short: 5 bytes/);
  expectError(craft({}, new Uint8Array(0), 2n ** 40n), /header length 1099511627776 exceeds the 100000000-byte limit/);
  expectError(craft({}, new Uint8Array(0), 2n ** 64n - 1n), /exceeds the 100000000-byte limit/);
  expectError(craft({ a: T('F32', [4], [0, 16]) }, d16, 5000n), /header length 5000 exceeds the \d+ bytes after the length field/);
  expectError(craft({ a: T('F32', [4], [0, 16]) }, d16.subarray(0, 12)), /tensor "a": truncated: data ends at byte 16 of the data section but the file holds only 12/);
  expectError(craft('{"a": {"dtype": "F32",', d16), /header is not valid JSON/);
  expectError(craft('[1, 2]'), /header must be a JSON object, got an array/);
  expectError(craft(Buffer.from([0x7b, 0xff, 0xfe, 0x7d]).toString('latin1')), /not valid UTF-8|not valid JSON/);
  expectError(craft({ a: T('F8_E4M3', [16], [0, 16]) }, d16), /tensor "a": unknown or unsupported dtype "F8_E4M3"/);
  expectError(craft({ a: T('f32', [4], [0, 16]) }, d16), /tensor "a": unknown or unsupported dtype "f32"/);
  expectError(craft({ a: T('F32', [2], [0, 8]), b: T('F32', [2], [4, 12]) }, d16.subarray(0, 12)), /tensor "b": data_offsets \[4, 12\] overlap the previous tensor, which ends at 8/);
  expectError(craft({ a: T('F32', [2], [0, 8]), b: T('F32', [1], [12, 16]) }, d16), /tensor "b": data_offsets \[12, 16\] leave a gap after byte 8/);
  expectError(craft({ a: T('F32', [3], [4, 16]) }, d16), /tensor "a": .*leave a gap after byte 0/);
  expectError(craft({ a: T('F32', [2], [0, 8]) }, d16), /8 trailing bytes after the last tensor/);
  expectError(craft({ a: T('F32', [2, 3], [0, 16]) }, d16), /tensor "a": shape \[2, 3\] of F32 needs 24 bytes but data_offsets \[0, 16\] hold 16/);
  expectError(craft({ a: T('F32', [4], [16, 0]) }, d16), /tensor "a": data_offsets \[16, 0\] end before they begin/);
  expectError(craft('{"a": {"dtype": "U8", "shape": [8], "data_offsets": [0, 8]}, "a": {"dtype": "U8", "shape": [8], "data_offsets": [8, 16]}}', d16), /duplicate tensor name "a"/);
  expectError(craft('{"a": {"dtype": "U8", "dtype": "U8", "shape": [16], "data_offsets": [0, 16]}}', d16), /tensor "a": duplicate field "dtype"/);
  expectError(craft('{"__metadata__": {"k": "1", "k": "2"}}'), /duplicate __metadata__ key "k"/);
  expectError(craft({ a: T('F32', [2 ** 40, 2 ** 40], [0, 16]) }, d16), /tensor "a": shape \[1099511627776, 1099511627776\] of F32 is too large/);
  expectError(craft({ a: T('F64', [2 ** 51], [0, 16]) }, d16), /tensor "a": shape .* is too large/);
  expectError(craft({ a: T('F32', [1e300], [0, 16]) }, d16), /tensor "a": shape dimension 1e\+300 is not a non-negative integer/);
  expectError(craft({ a: T('F32', [-4], [0, 16]) }, d16), /shape dimension -4/);
  expectError(craft({ a: T('F32', [2.5], [0, 16]) }, d16), /shape dimension 2.5/);
  expectError(craft({ a: T('F32', '[4]', [0, 16]) }, d16), /shape must be a list of integers/);
  expectError(craft({ a: T('F32', [4], [0]) }, d16), /data_offsets must be two non-negative integers/);
  expectError(craft({ a: T('F32', [4], [0, 2 ** 60]) }, d16), /data_offsets must be two non-negative integers/);
  expectError(craft({ a: { dtype: 'F32', shape: [4], data_offsets: [0, 16], extra: 1 } }, d16), /tensor "a": unknown field "extra"/);
  expectError(craft({ a: { shape: [4], data_offsets: [0, 16] } }, d16), /tensor "a": missing dtype/);
  expectError(craft({ a: 5 }), /tensor "a": entry must be an object/);
  expectError(craft({ __metadata__: { k: 1 } }), /__metadata__ value "k" must be a string, got number/);
  expectError(craft({ __metadata__: ['x'] }), /__metadata__ must be an object of strings, got an array/);
  expectError(craft({ __metadata__: null }), /__metadata__ must be an object of strings, got null/);
  const deep = '['.repeat(200000) + ']'.repeat(200000);
  expectError(craft(`{"a": {"dtype": ${deep}, "shape": [], "data_offsets": [0, 0]}}`), /tensor "a": unknown or unsupported dtype an array|not valid JSON/);
  expectError(craft(`{"a": ${deep}}`), /tensor "a": entry must be an object, got an array|not valid JSON/);
  const e = expectError(craft({ 'evil\nname': T('F32', [9], [0, 16]) }, d16), /tensor "evil\\nname"/);
  assert.ok(!e.message.includes('\n'));
});

test('valid edge cases: empty file body, zero-size tensors sharing an offset, metadata only', () => {
  assert.equal(parseSafetensors(craft({}), 'mem').tensors.size, 0);
  const f = parseSafetensors(craft({ __metadata__: { a: 'b' } }), 'mem');
  assert.deepEqual(f.metadata, { a: 'b' });
  const z = parseSafetensors(craft({ e1: T('F32', [0, 3], [0, 0]), x: T('U8', [2], [0, 2]), e2: T('I64', [0], [2, 2]) }, Uint8Array.of(7, 9)), 'mem');
  assert.deepEqual([...z.tensors.get('x')!.data], [7, 9]);
  assert.equal(z.tensors.get('e2')!.size, 0);
});

test('malformed files on disk: readSafetensors and readSafetensorsHeader reject them too', async () => {
  const path = join(tmp, 'truncated.safetensors');
  const good = serializeSafetensors({ w: Tensor.f32([4], [1, 2, 3, 4]) });
  writeFileSync(path, good.subarray(0, good.length - 3));
  await assert.rejects(readSafetensors(path), (e: Error) => e instanceof SafetensorsError && /truncated\.safetensors: tensor "w": truncated/.test(e.message));
  await assert.rejects(readSafetensorsHeader(path), /tensor "w": truncated/);
  writeFileSync(path, '');
  await assert.rejects(readSafetensorsHeader(path), /file is empty/);
  await assert.rejects(readSafetensors(join(tmp, 'missing.safetensors')), /ENOENT/);
});

test('the writer refuses what it cannot write, and writes atomically', async () => {
  await assert.rejects(writeSafetensors(join(tmp, 'x.safetensors'), { __metadata__: Tensor.f32([1]) }), /cannot be named __metadata__/);
  await assert.rejects(writeSafetensors(join(tmp, 'x.safetensors'), { a: Tensor.f32([1]) }, { k: 5 as unknown as string }), /metadata value "k" must be a string/);
  assert.ok(!existsSync(join(tmp, 'x.safetensors')));
  // A failure after the temporary file exists leaves the old file intact and no temporary behind.
  const path = join(tmp, 'atomic.bin');
  writeFileSync(path, 'old contents');
  await assert.rejects(writeFileAtomic(path, async (fh) => {
    await writeAll(fh, new Uint8Array(1000).fill(3));
    throw new Error('disk on fire');
  }), /disk on fire/);
  assert.equal(readFileSync(path, 'utf8'), 'old contents');
  assert.deepEqual(readdirSync(tmp).filter((f) => f.includes('atomic.bin.')), []);
  // Writing over a directory fails cleanly too.
  await assert.rejects(writeSafetensors(tmp, { a: Tensor.f32([1], [1]) }));
  assert.deepEqual(readdirSync(tmp).filter((f) => f.endsWith('.tmp')), []);
});

test('fuzz: byte flips and truncations never crash, and valid results are consistent', () => {
  const rand = rng(6);
  const tensors = new Map<string, Tensor>();
  for (const dtype of ['F32', 'F16', 'I8', 'U8', 'I64', 'BF16'] as DType[]) tensors.set(`t.${dtype}`, randomTensor(dtype, [1 + Math.floor(rand() * 5), 40], rand));
  const good = serializeSafetensors(tensors, { config: '{"a":1}' });
  const headerEnd = 8 + Number(new DataView(good.buffer).getBigUint64(0, true));
  let errors = 0;
  let valid = 0;
  const start = Date.now();
  for (let iter = 0; iter < 600; iter++) {
    let bytes = good.slice();
    const kind = iter % 3;
    if (kind === 0) bytes = bytes.subarray(0, Math.floor(rand() * good.length));
    else {
      const flips = 1 + Math.floor(rand() * 4);
      for (let k = 0; k < flips; k++) {
        const at = kind === 1 ? Math.floor(rand() * headerEnd) : Math.floor(rand() * bytes.length);
        bytes[at] = rand() < 0.5 ? bytes[at]! ^ (1 << Math.floor(rand() * 8)) : Math.floor(rand() * 256);
      }
    }
    try {
      const f = parseSafetensors(bytes, 'fuzz');
      for (const [name, t] of f.tensors) assert.equal(t.data.byteLength, shapeSize(t.shape) * ITEM_SIZE[t.dtype], name);
      valid++;
    } catch (e) {
      assert.ok(e instanceof SafetensorsError, `unexpected ${String(e)}`);
      assert.ok(!/[\r\n]/.test(e.message));
      errors++;
    }
  }
  assert.ok(errors > 200 && valid > 50, `errors ${errors}, valid ${valid}`);
  assert.ok(Date.now() - start < 5000);
});

test('reads every reference fixture: metadata strings, Vim configs, views not copies, fast', async (t) => {
  const dir = fixturesDir();
  if (!dir) return t.skip(NO_FIXTURES);
  const files = readdirSync(dir).filter((f) => f.endsWith('.safetensors'));
  assert.ok(files.length >= 5);
  for (const name of files) {
    const start = performance.now();
    const file = await readSafetensors(join(dir, name));
    const ms = performance.now() - start;
    t.diagnostic(`${name}: ${file.tensors.size} tensors in ${ms.toFixed(1)} ms`);
    assert.ok(file.tensors.size > 0);
    const buffers = new Set([...file.tensors.values()].map((x) => x.data.buffer));
    assert.equal(buffers.size, 1, `${name}: every tensor is a view of the one file buffer`);
    if (!name.includes('.ref.')) {
      assert.equal(file.metadata.config !== undefined, true, name);
      if (name.startsWith('vim-')) parseVimConfig(file.metadata.config, name);
    }
    const hdr = await readSafetensorsHeader(join(dir, name));
    assert.equal(hdr.entries.length, file.tensors.size);
    // Round trip through our writer gives the same tensors and metadata.
    const again = parseSafetensors(serializeSafetensors(file.tensors, file.metadata), 'again');
    assert.deepEqual(again.metadata, file.metadata);
    for (const [k, v] of file.tensors) assert.ok(sameBytes(again.tensors.get(k)!, v), `${name}: ${k}`);
  }
  // Timing, after warm-up: an 8 MB fixture reads in milliseconds.
  const big = join(dir, 'vim-s-d1-stride8.safetensors');
  if (existsSync(big)) {
    let best = Infinity;
    for (let i = 0; i < 3; i++) {
      const s = performance.now();
      await readSafetensors(big);
      best = Math.min(best, performance.now() - s);
    }
    t.diagnostic(`vim-s-d1-stride8.safetensors (8 MB): best of 3 ${best.toFixed(2)} ms`);
    assert.ok(best < 100, `${best} ms`);
  }
});
