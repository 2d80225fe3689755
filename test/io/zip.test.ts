import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ZipArchive, ZipError, fileSource, memorySource } from '../../lib/io/zip.js';
import { rng, writeZip, type ZipInput } from './torch-writer.js';

const tmp = mkdtempSync(join(tmpdir(), 'ptq4vm-zip-'));
process.on('exit', () => rmSync(tmp, { recursive: true, force: true }));

const rand = rng(7);
const randomBytes = (n: number) => Uint8Array.from({ length: n }, () => Math.floor(rand() * 256));
const inputs: ZipInput[] = [
  { name: 'a/data.pkl', data: randomBytes(333) },
  { name: 'a/data/0', data: randomBytes(4097) },
  { name: 'a/data/1', data: new Uint8Array(5000).fill(42), deflate: true },
  { name: 'a/empty', data: new Uint8Array(0) },
];

const open = (bytes: Uint8Array) => ZipArchive.open(memorySource(bytes), 'test.zip');

function lastIndexOfSig(bytes: Uint8Array, sig: number): number {
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  for (let i = bytes.length - 4; i >= 0; i--) if (v.getUint32(i, true) === sig) return i;
  return -1;
}

function expectZipError(f: () => unknown, pattern: RegExp): void {
  assert.throws(f, (e: unknown) => {
    assert.ok(e instanceof ZipError, `expected a ZipError, got ${String(e)}`);
    assert.match(e.message, pattern);
    assert.ok(e.message.startsWith('test.zip: ') && !e.message.includes('\n'));
    return true;
  });
}

for (const zip64 of [false, true]) {
  test(`stored and deflated entries read back exactly${zip64 ? ' (ZIP64 records)' : ''}, stored ones as views`, () => {
    const bytes = writeZip(inputs, { zip64, comment: 'a trailing comment' });
    const z = open(bytes);
    assert.deepEqual([...z.entries.keys()], inputs.map((e) => e.name));
    for (const e of inputs) assert.deepEqual(z.read(e.name), e.data, e.name);
    const stored = z.read('a/data/0');
    assert.equal(stored.buffer, bytes.buffer, 'a stored entry is a view of the archive');
    assert.equal(stored.byteOffset % 64, 0, 'PyTorch-style 64-byte alignment');
    assert.equal(z.entries.get('a/data/1')!.method, 8);
  });
}

test('a file source reads entries into aligned buffers of their own', () => {
  const path = join(tmp, 'x.zip');
  writeFileSync(path, writeZip(inputs, { align: 1 }));
  const z = ZipArchive.open(fileSource(path), path);
  try {
    for (const e of inputs) {
      const got = z.read(e.name);
      assert.deepEqual(got, e.data);
      assert.equal(got.byteOffset % 8, 0);
    }
  } finally {
    z.close();
  }
});

test('corrupt archives are one-line ZipErrors', () => {
  const good = writeZip(inputs);
  const cd = lastIndexOfSig(good, 0x02014b50); // the last central directory record (a/empty)
  const firstCd = findFirstCentral(good);
  const eocd = lastIndexOfSig(good, 0x06054b50);
  const mutate = (at: number, f: (v: DataView) => void) => {
    const b = good.slice();
    f(new DataView(b.buffer, at));
    return b;
  };
  expectZipError(() => open(new Uint8Array(10)), /too short/);
  expectZipError(() => open(randomBytes(1000)), /no end-of-central-directory record/);
  expectZipError(() => open(good.subarray(0, good.length - 5)), /no end-of-central-directory record/);
  expectZipError(() => open(good.subarray(100)), /central directory .* runs past|damaged/);
  expectZipError(() => open(mutate(eocd, (v) => v.setUint32(16, good.length, true))), /central directory \[\d+, \+\d+\] runs past its end record/);
  expectZipError(() => open(mutate(eocd, (v) => v.setUint16(10, 60000, true))), /60000 entries cannot fit/);
  expectZipError(() => open(mutate(eocd, (v) => v.setUint32(16, 0xffffffff, true))), /ZIP64 values announced but no ZIP64 locator/);
  expectZipError(() => open(mutate(eocd, (v) => v.setUint16(4, 1, true))), /multi-disk/);
  expectZipError(() => open(mutate(cd, (v) => v.setUint32(0, 0x12345678, true))), /central directory entry 3 at offset \d+ is damaged/);
  expectZipError(() => open(mutate(cd, (v) => v.setUint32(42, good.length, true))), /entry "a\/empty" has its local header at \d+, past the data area/);
  expectZipError(() => open(writeZip([inputs[0]!, inputs[1]!, inputs[0]!])), /duplicate entry "a\/data.pkl"/);
  // Entry-level damage shows when the entry is read.
  const z = (b: Uint8Array) => open(b);
  expectZipError(() => z(good).read('nope'), /entry "nope": not in the archive/);
  expectZipError(() => z(mutate(firstCd, (v) => v.setUint16(10, 12, true))).read('a/data.pkl'), /entry "a\/data.pkl": unsupported compression method 12/);
  expectZipError(() => z(mutate(firstCd, (v) => v.setUint16(8, 1, true))).read('a/data.pkl'), /is encrypted/);
  expectZipError(() => z(mutate(firstCd, (v) => v.setUint32(16, 0xdeadbeef, true))).read('a/data.pkl'), /CRC mismatch/);
  assert.deepEqual(z(mutate(firstCd, (v) => v.setUint32(16, 0xdeadbeef, true))).read('a/data.pkl', { verifyCrc: false }), inputs[0]!.data);
  expectZipError(() => z(mutate(firstCd, (v) => v.setUint32(20, 1 << 30, true))).read('a/data.pkl'), /runs past the end of the data area/);
  expectZipError(() => z(mutate(firstCd, (v) => { v.setUint32(20, 10, true); v.setUint32(24, 11, true); })).read('a/data.pkl'), /stored entry has compressed size 10 but size 11/);
  expectZipError(() => z(mutate(0, (v) => v.setUint32(0, 0, true))).read('a/data.pkl'), /no local header at offset 0/);
  expectZipError(() => z(mutate(0, (v) => v.setUint8(30, 0x41))).read('a/data.pkl'), /local header names "A\/data.pkl"/);
  // Deflate stream damage.
  const deflated = z(good).entries.get('a/data/1')!;
  const lh = deflated.localHeaderOffset;
  const lhv = new DataView(good.buffer, lh);
  const start = lh + 30 + lhv.getUint16(26, true) + lhv.getUint16(28, true);
  const broken = good.slice();
  broken.fill(0xff, start, start + 4);
  expectZipError(() => z(broken).read('a/data/1'), /corrupt deflate data|inflated to|CRC mismatch/);
});

function findFirstCentral(bytes: Uint8Array): number {
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  for (let i = 0; i + 4 <= bytes.length; i++) if (v.getUint32(i, true) === 0x02014b50) return i;
  return -1;
}
