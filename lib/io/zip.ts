/**
 * A read-only zip reader for the archives torch.save writes: the central directory (with ZIP64
 * records for archives past 4 GB), stored entries (what PyTorch writes) returned as views, and
 * deflated ones inflated with node:zlib. Every offset and size read from the file is checked
 * against the file's bounds before use; CRCs are checked on read unless turned off.
 */
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { crc32, inflateRawSync } from 'node:zlib';
import { constants as bufferConstants } from 'node:buffer';
import { ModelFileError, quote } from './errors.js';

export class ZipError extends ModelFileError {
  override name = 'ZipError';
}

/** Random access to the bytes of a file or a buffer. */
export interface ByteSource {
  readonly size: number;
  /** `length` bytes at `offset` (the caller has checked the range); a fresh buffer or a view. */
  read(offset: number, length: number): Uint8Array;
  close(): void;
}

/** A source over bytes already in memory; reads are views (no copies). */
export function memorySource(bytes: Uint8Array): ByteSource {
  return {
    size: bytes.byteLength,
    read: (offset, length) => bytes.subarray(offset, offset + length),
    close: () => undefined,
  };
}

/** A source over an open file; each read lands in a buffer of its own (8-byte aligned). */
export function fileSource(path: string): ByteSource {
  const fd = openSync(path, 'r');
  let size: number;
  try {
    size = fstatSync(fd).size;
  } catch (e) {
    closeSync(fd);
    throw e;
  }
  let open = true;
  return {
    size,
    read(offset, length) {
      if (length > bufferConstants.MAX_LENGTH) throw new ZipError(path, `cannot read ${length} bytes into one buffer`);
      const out = new Uint8Array(new ArrayBuffer(length));
      let done = 0;
      while (done < length) {
        const n = readSync(fd, out, done, Math.min(length - done, 1 << 30), offset + done);
        if (n === 0) throw new ZipError(path, `file shrank while being read (at byte ${offset + done})`);
        done += n;
      }
      return out;
    },
    close() {
      if (open) closeSync(fd);
      open = false;
    },
  };
}

export interface ZipEntry {
  readonly name: string;
  /** 0 stored, 8 deflate (others are refused when read). */
  readonly method: number;
  readonly flags: number;
  readonly crc32: number;
  readonly compressedSize: number;
  readonly size: number;
  readonly localHeaderOffset: number;
}

const SIG_EOCD = 0x06054b50;
const SIG_ZIP64_LOCATOR = 0x07064b50;
const SIG_ZIP64_EOCD = 0x06064b50;
const SIG_CENTRAL = 0x02014b50;
const SIG_LOCAL = 0x04034b50;
const EOCD_SIZE = 22;
const MAX_COMMENT = 0xffff;

const utf8 = new TextDecoder('utf-8');

export class ZipArchive {
  readonly where: string;
  readonly entries: ReadonlyMap<string, ZipEntry>;
  private readonly source: ByteSource;
  /** Entry data must end before the central directory starts. */
  private readonly dataLimit: number;

  private constructor(source: ByteSource, where: string, entries: Map<string, ZipEntry>, dataLimit: number) {
    this.source = source;
    this.where = where;
    this.entries = entries;
    this.dataLimit = dataLimit;
  }

  /** Reads and checks the central directory. The archive owns `source` from here on. */
  static open(source: ByteSource, where: string): ZipArchive {
    const fail = (msg: string): never => {
      throw new ZipError(where, msg);
    };
    const size = source.size;
    if (size < EOCD_SIZE) fail(`not a zip archive (${size} bytes is too short for one)`);

    // End of central directory: the last record whose comment runs exactly to the end of file.
    const tailLen = Math.min(size, EOCD_SIZE + MAX_COMMENT);
    const tailStart = size - tailLen;
    const tail = source.read(tailStart, tailLen);
    const tv = new DataView(tail.buffer, tail.byteOffset, tail.byteLength);
    let eocd = -1;
    for (let i = tailLen - EOCD_SIZE; i >= 0; i--) {
      if (tv.getUint32(i, true) === SIG_EOCD && i + EOCD_SIZE + tv.getUint16(i + 20, true) === tailLen) {
        eocd = i;
        break;
      }
    }
    if (eocd < 0) fail('corrupt zip: no end-of-central-directory record (not a zip archive, or truncated)');
    const eocdPos = tailStart + eocd;
    const disk = tv.getUint16(eocd + 4, true);
    const cdDisk = tv.getUint16(eocd + 6, true);
    let count = tv.getUint16(eocd + 10, true);
    let cdSize = tv.getUint32(eocd + 12, true);
    let cdOffset = tv.getUint32(eocd + 16, true);
    let cdLimit = eocdPos;
    if (disk !== 0 || cdDisk !== 0) fail('multi-disk zip archives are not supported');

    // ZIP64: a locator just before the EOCD points at the ZIP64 record, whose values win.
    const loc = eocd - 20;
    if (loc >= 0 && tv.getUint32(loc, true) === SIG_ZIP64_LOCATOR) {
      const recPos = big(tv.getBigUint64(loc + 8, true), 'ZIP64 record offset');
      if (recPos + 56 > eocdPos - 20) fail(`corrupt zip: ZIP64 end record offset ${recPos} is out of bounds`);
      const rec = source.read(recPos, 56);
      const rv = new DataView(rec.buffer, rec.byteOffset, 56);
      if (rv.getUint32(0, true) !== SIG_ZIP64_EOCD) fail(`corrupt zip: no ZIP64 end record at offset ${recPos}`);
      if (rv.getUint32(16, true) !== 0 || rv.getUint32(20, true) !== 0) fail('multi-disk zip archives are not supported');
      count = big(rv.getBigUint64(32, true), 'entry count');
      cdSize = big(rv.getBigUint64(40, true), 'central directory size');
      cdOffset = big(rv.getBigUint64(48, true), 'central directory offset');
      cdLimit = recPos;
    } else if (count === 0xffff || cdSize === 0xffffffff || cdOffset === 0xffffffff) {
      fail('corrupt zip: ZIP64 values announced but no ZIP64 locator found');
    }
    if (cdOffset + cdSize > cdLimit) fail(`corrupt zip: central directory [${cdOffset}, +${cdSize}] runs past its end record at ${cdLimit}`);
    if (count * 46 > cdSize) fail(`corrupt zip: ${count} entries cannot fit a ${cdSize}-byte central directory`);

    const cd = source.read(cdOffset, cdSize);
    const cv = new DataView(cd.buffer, cd.byteOffset, cd.byteLength);
    const entries = new Map<string, ZipEntry>();
    let p = 0;
    for (let i = 0; i < count; i++) {
      if (p + 46 > cdSize || cv.getUint32(p, true) !== SIG_CENTRAL) fail(`corrupt zip: central directory entry ${i} at offset ${cdOffset + p} is damaged`);
      const flags = cv.getUint16(p + 8, true);
      const method = cv.getUint16(p + 10, true);
      const crc = cv.getUint32(p + 16, true);
      let compressedSize = cv.getUint32(p + 20, true);
      let uncompressedSize = cv.getUint32(p + 24, true);
      const nameLen = cv.getUint16(p + 28, true);
      const extraLen = cv.getUint16(p + 30, true);
      const commentLen = cv.getUint16(p + 32, true);
      const startDisk = cv.getUint16(p + 34, true);
      let localHeaderOffset = cv.getUint32(p + 42, true);
      const end = p + 46 + nameLen + extraLen + commentLen;
      if (end > cdSize) fail(`corrupt zip: central directory entry ${i} runs past the directory`);
      const name = utf8.decode(cd.subarray(p + 46, p + 46 + nameLen));
      // ZIP64 extended information: 8-byte values for exactly the fields saturated above, in order.
      let x = p + 46 + nameLen;
      const xEnd = x + extraLen;
      while (x + 4 <= xEnd) {
        const id = cv.getUint16(x, true);
        const len = cv.getUint16(x + 2, true);
        if (x + 4 + len > xEnd) fail(`corrupt zip: entry ${quote(name)} has a damaged extra field`);
        if (id === 0x0001) {
          let q = x + 4;
          const take = (what: string): number => {
            if (q + 8 > x + 4 + len) fail(`corrupt zip: entry ${quote(name)} has a short ZIP64 extra field`);
            const v = big(cv.getBigUint64(q, true), what);
            q += 8;
            return v;
          };
          if (uncompressedSize === 0xffffffff) uncompressedSize = take('entry size');
          if (compressedSize === 0xffffffff) compressedSize = take('entry compressed size');
          if (localHeaderOffset === 0xffffffff) localHeaderOffset = take('entry offset');
        }
        x += 4 + len;
      }
      if (startDisk !== 0 && startDisk !== 0xffff) fail(`entry ${quote(name)} is on another disk`);
      if (localHeaderOffset + 30 > cdOffset) fail(`corrupt zip: entry ${quote(name)} has its local header at ${localHeaderOffset}, past the data area`);
      if (entries.has(name)) fail(`corrupt zip: duplicate entry ${quote(name)}`);
      entries.set(name, { name, method, flags, crc32: crc, compressedSize, size: uncompressedSize, localHeaderOffset });
      p = end;
    }
    return new ZipArchive(source, where, entries, cdOffset);

    function big(v: bigint, what: string): number {
      if (v > BigInt(size)) fail(`corrupt zip: ${what} ${v} exceeds the file size ${size}`);
      return Number(v);
    }
  }

  has(name: string): boolean {
    return this.entries.has(name);
  }

  /** The bytes of entry `name` (a view for stored entries read from memory). */
  read(name: string, opts: { verifyCrc?: boolean } = {}): Uint8Array {
    const e = this.entries.get(name);
    const fail = (msg: string): never => {
      throw new ZipError(this.where, `entry ${quote(name)}: ${msg}`);
    };
    if (!e) return fail('not in the archive');
    if (e.flags & 0x1) fail('is encrypted');
    if (e.method !== 0 && e.method !== 8) fail(`unsupported compression method ${e.method}`);
    const lh = this.source.read(e.localHeaderOffset, 30);
    const lv = new DataView(lh.buffer, lh.byteOffset, 30);
    if (lv.getUint32(0, true) !== SIG_LOCAL) fail(`corrupt zip: no local header at offset ${e.localHeaderOffset}`);
    const nameLen = lv.getUint16(26, true);
    const extraLen = lv.getUint16(28, true);
    const dataStart = e.localHeaderOffset + 30 + nameLen + extraLen;
    if (dataStart + e.compressedSize > this.dataLimit) {
      fail(`corrupt zip: data [${dataStart}, +${e.compressedSize}] runs past the end of the data area (${this.dataLimit}); truncated?`);
    }
    const localName = utf8.decode(this.source.read(e.localHeaderOffset + 30, nameLen));
    if (localName !== name) fail(`corrupt zip: local header names ${quote(localName)}`);
    let data: Uint8Array;
    if (e.method === 0) {
      if (e.compressedSize !== e.size) fail(`corrupt zip: stored entry has compressed size ${e.compressedSize} but size ${e.size}`);
      data = this.source.read(dataStart, e.size);
    } else {
      if (e.size > bufferConstants.MAX_LENGTH) fail(`inflated size ${e.size} is too large`);
      const packed = this.source.read(dataStart, e.compressedSize);
      try {
        data = new Uint8Array(inflateRawSync(packed, { maxOutputLength: Math.max(e.size, 1) }));
      } catch (err) {
        return fail(`corrupt deflate data (${(err as Error).message})`);
      }
      if (data.byteLength !== e.size) fail(`corrupt zip: inflated to ${data.byteLength} bytes, the directory says ${e.size}`);
      // A buffer of our own so that typed-array views of it are aligned.
      if (data.byteOffset % 8 !== 0) data = data.slice();
    }
    if ((opts.verifyCrc ?? true) && crc32(data) >>> 0 !== e.crc32) fail('CRC mismatch (corrupt data)');
    return data;
  }

  close(): void {
    this.source.close();
  }
}
