/**
 * Test-only writers that make PyTorch-style checkpoints without Python: a small pickle writer
 * (protocol 2, the opcodes torch.save emits), a zip writer (stored or deflated entries, 64-byte
 * aligned data like PyTorch's, optional ZIP64 records) and `torchSave`, which lays them out as
 * `<archive>/data.pkl`, `<archive>/data/<key>`, `byteorder`, `version`.
 */
import { crc32, deflateRawSync } from 'node:zlib';

export class Tuple {
  constructor(readonly items: PyValue[]) {}
}
/** Forces a float where the value happens to be an integer. */
export class Float {
  constructor(readonly value: number) {}
}
/** `module.name(*args)` (REDUCE), or `module.name.__new__(*args)` then BUILD(state) (NEWOBJ). */
export class Call {
  constructor(
    readonly module: string,
    readonly name: string,
    readonly args: PyValue[],
    readonly opts: { newobj?: boolean; state?: PyValue } = {},
  ) {}
}
/** collections.OrderedDict, optionally with the `_metadata` attribute torch state dicts carry. */
export class OrderedDict {
  constructor(readonly entries: Map<PyValue, PyValue>, readonly attributes?: Map<PyValue, PyValue>) {}
}
/** A tensor as torch pickles it: `_rebuild_tensor_v2` over a persistent storage id. */
export class TorchTensor {
  constructor(
    readonly storage: { key: string; type: string; numel: number },
    readonly offset: number,
    readonly size: number[],
    readonly stride: number[],
    readonly opts: { parameter?: boolean } = {},
  ) {}
}
export type PyValue = null | boolean | number | bigint | string | Uint8Array | PyValue[] | Tuple | Map<PyValue, PyValue> | Float | Call | OrderedDict | TorchTensor;

const enc = new TextEncoder();

/** Writes pickles the way CPython's protocol-2 pickler does (memoizing globals and containers). */
export class PickleWriter {
  private chunks: Uint8Array[] = [];
  private memoNext = 0;
  private globals = new Map<string, number>();
  /** Containers already written, by identity: written again as a memo reference, as CPython does. */
  private objects = new Map<object, number>();

  constructor(readonly protocol = 2) {}

  private bytes(...b: number[]): void {
    this.chunks.push(Uint8Array.from(b));
  }
  private raw(b: Uint8Array): void {
    this.chunks.push(b);
  }
  private u32(v: number): Uint8Array {
    const b = new Uint8Array(4);
    new DataView(b.buffer).setUint32(0, v, true);
    return b;
  }
  private put(): void {
    const k = this.memoNext++;
    if (k < 256) this.bytes(0x71, k);
    else {
      this.bytes(0x72);
      this.raw(this.u32(k));
    }
  }
  private get(k: number): void {
    if (k < 256) this.bytes(0x68, k);
    else {
      this.bytes(0x6a);
      this.raw(this.u32(k));
    }
  }

  global(module: string, name: string): void {
    const q = `${module} ${name}`;
    const known = this.globals.get(q);
    if (known !== undefined) return this.get(known);
    this.bytes(0x63);
    this.raw(enc.encode(`${module}\n${name}\n`));
    this.globals.set(q, this.memoNext);
    this.put();
  }

  int(v: number | bigint): void {
    if (typeof v === 'number' && Number.isInteger(v) && v >= 0 && v < 256) this.bytes(0x4b, v);
    else if (typeof v === 'number' && Number.isInteger(v) && v >= 0 && v < 65536) this.bytes(0x4d, v & 0xff, v >> 8);
    else if (typeof v === 'number' && Number.isInteger(v) && v >= -(2 ** 31) && v < 2 ** 31) {
      const b = new Uint8Array(5);
      b[0] = 0x4a;
      new DataView(b.buffer).setInt32(1, v, true);
      this.raw(b);
    } else {
      // LONG1: little-endian two's complement, as short as the sign allows.
      let x = BigInt(v);
      const out: number[] = [];
      for (;;) {
        const byte = Number(x & 0xffn);
        out.push(byte);
        x >>= 8n;
        if ((x === 0n && !(byte & 0x80)) || (x === -1n && byte & 0x80)) break;
      }
      this.bytes(0x8a, out.length, ...out);
    }
  }

  value(v: PyValue): void {
    if (v !== null && typeof v === 'object' && !(v instanceof Float) && !(v instanceof Uint8Array) && !(v instanceof TorchTensor)) {
      const known = this.objects.get(v);
      if (known !== undefined) return this.get(known);
    }
    this.valueOnce(v);
  }

  private remember(v: object): void {
    this.objects.set(v, this.memoNext - 1);
  }

  private valueOnce(v: PyValue): void {
    if (v === null) this.bytes(0x4e);
    else if (v === true) this.bytes(0x88);
    else if (v === false) this.bytes(0x89);
    else if (typeof v === 'bigint') this.int(v);
    else if (typeof v === 'number') {
      if (Number.isInteger(v)) this.int(v);
      else this.value(new Float(v));
    } else if (v instanceof Float) {
      const b = new Uint8Array(9);
      b[0] = 0x47;
      new DataView(b.buffer).setFloat64(1, v.value, false);
      this.raw(b);
    } else if (typeof v === 'string') {
      const s = enc.encode(v);
      this.bytes(0x58);
      this.raw(this.u32(s.length));
      this.raw(s);
      this.put();
    } else if (v instanceof Uint8Array) {
      if (v.length < 256) this.bytes(0x43, v.length);
      else {
        this.bytes(0x42);
        this.raw(this.u32(v.length));
      }
      this.raw(v);
      this.put();
    } else if (Array.isArray(v)) {
      this.bytes(0x5d);
      this.put();
      this.remember(v);
      if (v.length === 1) {
        this.value(v[0]!);
        this.bytes(0x61);
      } else if (v.length > 1) {
        this.bytes(0x28);
        for (const x of v) this.value(x);
        this.bytes(0x65);
      }
    } else if (v instanceof Tuple) {
      const op = [0x29, 0x85, 0x86, 0x87][v.items.length];
      if (op === 0x29) this.bytes(0x29);
      else if (op !== undefined) {
        for (const x of v.items) this.value(x);
        this.bytes(op);
      } else {
        this.bytes(0x28);
        for (const x of v.items) this.value(x);
        this.bytes(0x74);
      }
      if (v.items.length) {
        this.put();
        this.remember(v);
      }
    } else if (v instanceof Map) {
      this.bytes(0x7d);
      this.put();
      this.remember(v);
      this.setItems(v);
    } else if (v instanceof OrderedDict) {
      this.global('collections', 'OrderedDict');
      this.bytes(0x29, 0x52);
      this.put();
      this.remember(v);
      this.setItems(v.entries);
      if (v.attributes) {
        this.value(v.attributes);
        this.bytes(0x62);
      }
    } else if (v instanceof Call) {
      this.global(v.module, v.name);
      this.value(new Tuple(v.args));
      this.bytes(v.opts.newobj ? 0x81 : 0x52);
      this.put();
      this.remember(v);
      if (v.opts.state !== undefined) {
        this.value(v.opts.state);
        this.bytes(0x62);
      }
    } else if (v instanceof TorchTensor) {
      if (v.opts.parameter) this.global('torch._utils', '_rebuild_parameter');
      if (v.opts.parameter) this.bytes(0x28);
      this.global('torch._utils', '_rebuild_tensor_v2');
      this.bytes(0x28); // MARK: the arguments
      this.bytes(0x28); // MARK: the persistent id
      this.value('storage');
      this.global('torch', v.storage.type);
      this.value(v.storage.key);
      this.value('cpu');
      this.int(v.storage.numel);
      this.bytes(0x74);
      this.put();
      this.bytes(0x51); // BINPERSID
      this.int(v.offset);
      this.value(new Tuple(v.size));
      this.value(new Tuple(v.stride));
      this.value(false);
      this.value(new OrderedDict(new Map()));
      this.bytes(0x74, 0x52); // TUPLE, REDUCE
      this.put();
      if (v.opts.parameter) {
        this.value(true);
        this.value(new OrderedDict(new Map()));
        this.bytes(0x74, 0x52);
        this.put();
      }
    } else {
      throw new TypeError(`cannot pickle ${String(v)}`);
    }
  }

  private setItems(m: Map<PyValue, PyValue>): void {
    if (m.size === 0) return;
    if (m.size === 1) {
      const [[k, x]] = [...m];
      this.value(k!);
      this.value(x!);
      this.bytes(0x73);
      return;
    }
    this.bytes(0x28);
    for (const [k, x] of m) {
      this.value(k);
      this.value(x);
    }
    this.bytes(0x75);
  }

  /** The whole pickle of `v`: PROTO, the value, STOP. */
  static dump(v: PyValue, protocol = 2): Uint8Array {
    const w = new PickleWriter(protocol);
    w.bytes(0x80, protocol);
    w.value(v);
    w.bytes(0x2e);
    return new Uint8Array(Buffer.concat(w.chunks));
  }
}

export interface ZipInput {
  name: string;
  data: Uint8Array;
  deflate?: boolean;
}

/** A zip archive; entry data aligned to `align` bytes (PyTorch uses 64) via padding extra fields. */
export function writeZip(entries: ZipInput[], opts: { align?: number; zip64?: boolean; comment?: string } = {}): Uint8Array {
  const align = opts.align ?? 64;
  const parts: Uint8Array[] = [];
  const central: Uint8Array[] = [];
  let at = 0;
  const push = (b: Uint8Array): void => {
    parts.push(b);
    at += b.length;
  };
  for (const e of entries) {
    const name = enc.encode(e.name);
    const body = e.deflate ? new Uint8Array(deflateRawSync(e.data)) : e.data;
    const crc = crc32(e.data) >>> 0;
    const offset = at;
    let pad = 0;
    if (align > 1) {
      pad = (align - ((offset + 30 + name.length + 4) % align)) % align;
    }
    const lh = new Uint8Array(30 + name.length + 4 + pad);
    const lv = new DataView(lh.buffer);
    lv.setUint32(0, 0x04034b50, true);
    lv.setUint16(4, opts.zip64 ? 45 : 20, true);
    lv.setUint16(8, e.deflate ? 8 : 0, true);
    lv.setUint32(14, crc, true);
    lv.setUint32(18, body.length, true);
    lv.setUint32(22, e.data.length, true);
    lv.setUint16(26, name.length, true);
    lv.setUint16(28, 4 + pad, true);
    lh.set(name, 30);
    lv.setUint16(30 + name.length, 0x4246, true); // 'FB' padding field, as PyTorch writes
    lv.setUint16(32 + name.length, pad, true);
    push(lh);
    push(body);
    const x64 = opts.zip64 ? 28 : 0;
    const ch = new Uint8Array(46 + name.length + x64);
    const cv = new DataView(ch.buffer);
    cv.setUint32(0, 0x02014b50, true);
    cv.setUint16(4, opts.zip64 ? 45 : 20, true);
    cv.setUint16(6, opts.zip64 ? 45 : 20, true);
    cv.setUint16(10, e.deflate ? 8 : 0, true);
    cv.setUint32(16, crc, true);
    cv.setUint32(20, opts.zip64 ? 0xffffffff : body.length, true);
    cv.setUint32(24, opts.zip64 ? 0xffffffff : e.data.length, true);
    cv.setUint16(28, name.length, true);
    cv.setUint16(30, x64, true);
    cv.setUint32(42, opts.zip64 ? 0xffffffff : offset, true);
    ch.set(name, 46);
    if (opts.zip64) {
      const p = 46 + name.length;
      cv.setUint16(p, 1, true);
      cv.setUint16(p + 2, 24, true);
      cv.setBigUint64(p + 4, BigInt(e.data.length), true);
      cv.setBigUint64(p + 12, BigInt(body.length), true);
      cv.setBigUint64(p + 20, BigInt(offset), true);
    }
    central.push(ch);
  }
  const cdOffset = at;
  for (const c of central) push(c);
  const cdSize = at - cdOffset;
  if (opts.zip64) {
    const rec = new Uint8Array(56);
    const rv = new DataView(rec.buffer);
    rv.setUint32(0, 0x06064b50, true);
    rv.setBigUint64(4, 44n, true);
    rv.setUint16(12, 45, true);
    rv.setUint16(14, 45, true);
    rv.setBigUint64(24, BigInt(entries.length), true);
    rv.setBigUint64(32, BigInt(entries.length), true);
    rv.setBigUint64(40, BigInt(cdSize), true);
    rv.setBigUint64(48, BigInt(cdOffset), true);
    const recAt = at;
    push(rec);
    const loc = new Uint8Array(20);
    const lv = new DataView(loc.buffer);
    lv.setUint32(0, 0x07064b50, true);
    lv.setBigUint64(8, BigInt(recAt), true);
    lv.setUint32(16, 1, true);
    push(loc);
  }
  const comment = enc.encode(opts.comment ?? '');
  const eocd = new Uint8Array(22 + comment.length);
  const ev = new DataView(eocd.buffer);
  ev.setUint32(0, 0x06054b50, true);
  ev.setUint16(8, opts.zip64 ? 0xffff : entries.length, true);
  ev.setUint16(10, opts.zip64 ? 0xffff : entries.length, true);
  ev.setUint32(12, opts.zip64 ? 0xffffffff : cdSize, true);
  ev.setUint32(16, opts.zip64 ? 0xffffffff : cdOffset, true);
  ev.setUint16(20, comment.length, true);
  eocd.set(comment, 22);
  push(eocd);
  return new Uint8Array(Buffer.concat(parts));
}

/** torch.save's zip layout around a pickle and its storages (raw little-endian bytes by key). */
export function torchSave(root: PyValue, storages: ReadonlyMap<string, Uint8Array>, opts: { archive?: string; zip64?: boolean; byteorder?: string | null; pickle?: Uint8Array } = {}): Uint8Array {
  const archive = opts.archive ?? 'checkpoint';
  const entries: ZipInput[] = [{ name: `${archive}/data.pkl`, data: opts.pickle ?? PickleWriter.dump(root) }];
  if (opts.byteorder !== null) entries.push({ name: `${archive}/byteorder`, data: enc.encode(opts.byteorder ?? 'little') });
  for (const [key, bytes] of storages) entries.push({ name: `${archive}/data/${key}`, data: bytes });
  entries.push({ name: `${archive}/version`, data: enc.encode('3\n') });
  return writeZip(entries, { zip64: opts.zip64 });
}

/** Raw bytes of a typed array (little-endian host). */
export function bytesOf(a: ArrayBufferView): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

/** A small deterministic PRNG (mulberry32). */
export function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
