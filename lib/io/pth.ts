/**
 * PyTorch checkpoints (torch.save, zip format since torch 1.6) read without Python:
 * `<archive>/data.pkl` is a pickle whose tensors are `torch._utils._rebuild_tensor_v2(storage,
 * offset, size, stride, …)` calls and whose storages are persistent ids
 * ('storage', torch.FloatStorage, key, location, numel) naming the entries `<archive>/data/<key>`.
 *
 * Tensors come back lazy (PthTensor): the pickle and the zip directory are read up front, the
 * bytes of a storage only when a tensor of it is loaded, so optimizer state and EMA copies cost
 * nothing unless asked for. What a Vim model makes of a checkpoint is in pth-model.ts.
 */
import { ITEM_SIZE, allocStorage, viewStorage, type DType } from '../tensor/dtype.js';
import { Tensor, formatShape, type Shape } from '../tensor/tensor.js';
import { ModelFileError, quote } from './errors.js';
import { PickleGlobal, PickleObject, PickleTuple, typeName, unpickle, type GlobalHandler } from './pickle.js';
import { ZipArchive, fileSource, memorySource, type ByteSource } from './zip.js';

export class PthError extends ModelFileError {
  override name = 'PthError';
}

const STORAGE_DTYPES: Readonly<Record<string, DType>> = {
  DoubleStorage: 'F64', FloatStorage: 'F32', HalfStorage: 'F16', BFloat16Storage: 'BF16', LongStorage: 'I64',
  IntStorage: 'I32', ShortStorage: 'I16', CharStorage: 'I8', ByteStorage: 'U8', BoolStorage: 'BOOL',
};

/** Tensors with more elements than their storage (stride-0 expansions) are refused past this. */
const MAX_EXPANDED_ELEMENTS = 1 << 24;

/** One storage of the checkpoint; its bytes are read once, on first use. */
export class PthStorage {
  private bytes: Uint8Array | undefined;
  constructor(
    readonly key: string,
    readonly dtype: DType,
    /** Elements, as the persistent id states. */
    readonly numel: number,
    readonly location: string,
    private readonly checkpoint: { archive: ZipArchive; prefix: string; where: string; verifyCrc: boolean },
  ) {}

  get entryName(): string {
    return `${this.checkpoint.prefix}data/${this.key}`;
  }

  /** The checkpoint's path, for messages. */
  get where(): string {
    return this.checkpoint.where;
  }

  /** The storage's bytes (exactly numel·itemsize of them). */
  data(): Uint8Array {
    if (this.bytes) return this.bytes;
    const { archive, where, verifyCrc } = this.checkpoint;
    const entry = archive.entries.get(this.entryName);
    if (!entry) throw new PthError(where, `storage ${quote(this.entryName)} is missing from the archive`);
    const need = this.numel * ITEM_SIZE[this.dtype];
    if (entry.size < need) {
      throw new PthError(where, `truncated storage ${quote(this.entryName)}: ${entry.size} bytes, but ${this.numel} ${this.dtype} elements need ${need}`);
    }
    const all = archive.read(this.entryName, { verifyCrc });
    this.bytes = all.subarray(0, need);
    return this.bytes;
  }
}

/** A tensor of the checkpoint, not yet read: `load()` reads, checks and builds it. */
export class PthTensor {
  constructor(
    readonly storage: PthStorage,
    /** In elements. */
    readonly storageOffset: number,
    readonly shape: Shape,
    readonly stride: readonly number[],
    readonly requiresGrad: boolean,
  ) {}

  get dtype(): DType {
    return this.storage.dtype;
  }

  /** Reads the tensor into a dense row-major Tensor (a view of the storage when contiguous). */
  load(name = '?'): Tensor {
    const { storage, storageOffset: off, shape, stride } = this;
    const where = storage.where;
    const fail = (msg: string): never => {
      throw new PthError(where, `tensor ${quote(name)}: ${msg}`);
    };
    let n = 1;
    let extent = 1; // 1 + the largest element index reached, relative to the offset
    for (let i = 0; i < shape.length; i++) {
      n *= shape[i]!;
      extent += (shape[i]! - 1) * stride[i]!;
    }
    if (n === 0) return new Tensor(storage.dtype, shape);
    if (!Number.isSafeInteger(n) || !Number.isSafeInteger(extent + off)) fail(`size ${formatShape(shape)} is too large`);
    if (off + extent > storage.numel) {
      fail(`storage ${quote(storage.entryName)} holds ${storage.numel} elements but size ${formatShape(shape)}, stride ${formatShape(stride)}, offset ${off} need ${off + extent}`);
    }
    if (n > storage.numel && n > MAX_EXPANDED_ELEMENTS) fail(`${n} elements expanded from a storage of ${storage.numel} is refused`);
    const item = ITEM_SIZE[storage.dtype];
    const bytes = storage.data();
    const contiguous = isRowMajor(shape, stride);
    if (contiguous) {
      const at = bytes.byteOffset + off * item;
      if (at % item === 0) return new Tensor(storage.dtype, shape, viewStorage(storage.dtype, bytes.buffer, at, n));
      const data = allocStorage(storage.dtype, n);
      new Uint8Array(data.buffer).set(bytes.subarray(off * item, (off + n) * item));
      return new Tensor(storage.dtype, shape, data);
    }
    // Strided: gather into a dense copy, innermost dimension by innermost dimension.
    const src = bytes.byteOffset % item === 0 ? viewStorage(storage.dtype, bytes.buffer, bytes.byteOffset, storage.numel) : alignedCopy(storage.dtype, bytes, storage.numel);
    const dst = allocStorage(storage.dtype, n);
    const rank = shape.length;
    const inner = shape[rank - 1]!;
    const innerStride = stride[rank - 1]!;
    const idx = new Array<number>(rank).fill(0);
    const s = src as unknown as { [i: number]: number | bigint };
    const d = dst as unknown as { [i: number]: number | bigint };
    let o = 0;
    for (;;) {
      let base = off;
      for (let k = 0; k < rank - 1; k++) base += idx[k]! * stride[k]!;
      for (let j = 0; j < inner; j++) d[o++] = s[base + j * innerStride]!;
      let k = rank - 2;
      while (k >= 0) {
        if (++idx[k]! < shape[k]!) break;
        idx[k] = 0;
        k--;
      }
      if (k < 0) break;
    }
    return new Tensor(storage.dtype, shape, dst);
  }
}

function alignedCopy(dtype: DType, bytes: Uint8Array, numel: number) {
  const out = allocStorage(dtype, numel);
  new Uint8Array(out.buffer).set(bytes.subarray(0, numel * ITEM_SIZE[dtype]));
  return out;
}

/** Row-major (C-contiguous) strides; dimensions of size 1 may carry any stride. */
function isRowMajor(shape: Shape, stride: readonly number[]): boolean {
  let expect = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    if (shape[i] !== 1 && stride[i] !== expect) return false;
    expect *= shape[i]!;
  }
  return true;
}

export interface PthCheckpoint {
  readonly path: string;
  /** The unpickled object: Maps, arrays, PickleTuples, PthTensors, PickleObject placeholders… */
  readonly root: unknown;
  /** The archive folder name (`<archive>/` prefix of every entry). */
  readonly archiveName: string;
  /** The `version` record, when present. */
  readonly version: string | undefined;
  /** Releases the file; tensors not yet loaded can no longer be. */
  close(): void;
}

export interface ReadPthOptions {
  /** Check the CRC of every entry read (default true; costs ~20 ms per 100 MB). */
  verifyCrc?: boolean;
}

function openCheckpoint(source: ByteSource, where: string, opts: ReadPthOptions): PthCheckpoint {
  let archive: ZipArchive | undefined;
  try {
    const magic = source.read(0, Math.min(source.size, 4));
    if (magic[0] !== 0x50 || magic[1] !== 0x4b) {
      if (magic[0] === 0x80 && magic[1] !== undefined && magic[1] <= 5) {
        throw new PthError(where, 'legacy (non-zip, torch < 1.6) checkpoint format is not supported; re-save it with torch.save from torch ≥ 1.6');
      }
      if (source.size === 0) throw new PthError(where, 'file is empty');
      throw new PthError(where, 'not a PyTorch checkpoint (not a zip archive)');
    }
    archive = ZipArchive.open(source, where);
    const pkls = [...archive.entries.keys()].filter((k) => /^[^/]+\/data\.pkl$/.test(k));
    if (pkls.length !== 1) {
      throw new PthError(where, pkls.length ? `ambiguous checkpoint: ${pkls.length} data.pkl records` : 'not a PyTorch checkpoint (no <archive>/data.pkl in the zip)');
    }
    const prefix = pkls[0]!.slice(0, -'data.pkl'.length);
    const text = (name: string): string | undefined => (archive!.has(prefix + name) ? Buffer.from(archive!.read(prefix + name)).toString('latin1').trim() : undefined);
    const byteorder = text('byteorder');
    if (byteorder !== undefined && byteorder !== 'little') {
      throw new PthError(where, byteorder === 'big' ? 'big-endian checkpoints are not supported' : `unknown byteorder record ${quote(byteorder)}`);
    }
    const version = text('version');
    const ctx = { archive, prefix, where, verifyCrc: opts.verifyCrc ?? true };
    const storages = new Map<string, PthStorage>();
    const pklWhere = `${where} [${prefix}data.pkl]`;
    const perr = (at: { offset: number }, msg: string): never => {
      throw new PthError(pklWhere, `${msg} at offset ${at.offset}`);
    };

    const persistentLoad = (pid: unknown, at: { offset: number }): unknown => {
      if (!(pid instanceof PickleTuple) || pid.items[0] !== 'storage' || pid.length !== 5) {
        return perr(at, 'unsupported persistent id (expected a (\'storage\', type, key, location, numel) tuple)');
      }
      const [, type, key, location, numel] = pid.items;
      if (!(type instanceof PickleGlobal) || type.module !== 'torch' || !(type.name in STORAGE_DTYPES)) {
        return perr(at, `unsupported storage type ${typeName(type)}`);
      }
      if (typeof key !== 'string' || !/^[A-Za-z0-9_.-]{1,64}$/.test(key) || key.includes('..')) return perr(at, `bad storage key ${typeof key === 'string' ? quote(key, 40) : typeName(key)}`);
      if (typeof numel !== 'number' || !Number.isSafeInteger(numel) || numel < 0) return perr(at, `bad storage size ${typeof numel === 'number' ? numel : typeName(numel)}`);
      const dtype = STORAGE_DTYPES[type.name]!;
      const known = storages.get(key);
      if (known) {
        if (known.dtype !== dtype || known.numel !== numel) return perr(at, `storage ${quote(key)} is declared twice, differently`);
        return known;
      }
      const s = new PthStorage(key, dtype, numel, typeof location === 'string' ? location : '?', ctx);
      storages.set(key, s);
      return s;
    };

    const ints = (v: unknown, what: string, at: { offset: number }): number[] => {
      const items = v instanceof PickleTuple ? v.items : Array.isArray(v) ? v : perr(at, `${what} must be a tuple of integers`);
      if (items.length > 64) perr(at, `${what} has rank ${items.length}`);
      for (const x of items) if (typeof x !== 'number' || !Number.isSafeInteger(x) || x < 0) perr(at, `${what} holds ${typeof x === 'number' ? x : typeName(x)}, not a non-negative integer`);
      return items as number[];
    };
    const rebuildTensor: GlobalHandler = (args, at) => {
      const [storage, offset, size, stride, requiresGrad] = args;
      if (!(storage instanceof PthStorage)) return perr(at, `_rebuild_tensor_v2 expects a storage, got ${typeName(storage)}`);
      if (typeof offset !== 'number' || !Number.isSafeInteger(offset) || offset < 0) return perr(at, `bad storage offset ${typeof offset === 'number' ? offset : typeName(offset)}`);
      const shape = ints(size, 'size', at);
      const strides = ints(stride, 'stride', at);
      if (shape.length !== strides.length) perr(at, `size ${formatShape(shape)} and stride ${formatShape(strides)} differ in rank`);
      return new PthTensor(storage, offset, Object.freeze(shape), Object.freeze(strides), requiresGrad === true);
    };
    const globals: Record<string, GlobalHandler> = {
      'torch._utils._rebuild_tensor_v2': rebuildTensor,
      'torch._utils._rebuild_tensor': rebuildTensor,
      // nn.Parameter(data, requires_grad): the data is all a state dict needs.
      'torch._utils._rebuild_parameter': (args, at) => (args[0] instanceof PthTensor ? args[0] : perr(at, '_rebuild_parameter of a non-tensor')),
      'torch._utils._rebuild_parameter_with_state': (args, at) => (args[0] instanceof PthTensor ? args[0] : perr(at, '_rebuild_parameter of a non-tensor')),
      'torch.Size': (args) => (args[0] instanceof PickleTuple ? args[0] : new PickleTuple([])),
    };
    const root = unpickle(archive.read(`${prefix}data.pkl`, { verifyCrc: ctx.verifyCrc }), { where: pklWhere, globals, persistentLoad });
    const a = archive;
    return { path: where, root, archiveName: prefix.slice(0, -1), version, close: () => a.close() };
  } catch (e) {
    if (archive) archive.close();
    else source.close();
    throw e;
  }
}

/** Opens a checkpoint file: reads its zip directory and pickle (storages stay on disk until used). */
export function openPth(path: string, opts: ReadPthOptions = {}): PthCheckpoint {
  return openCheckpoint(fileSource(path), path, opts);
}

/** The same over bytes in memory (`where` names them in errors). */
export function parsePth(bytes: Uint8Array, where: string, opts: ReadPthOptions = {}): PthCheckpoint {
  return openCheckpoint(memorySource(bytes), where, opts);
}

function describe(v: unknown): string {
  if (v instanceof PthTensor) return 'a tensor';
  if (v instanceof Map) return 'a dict';
  if (v instanceof PickleObject) return `a ${v.global.qualifiedName} object`;
  if (v instanceof PickleTuple) return 'a tuple';
  if (Array.isArray(v)) return 'a list';
  return v === null ? 'None' : typeof v;
}

export interface StateDictChoice {
  /** The key it was found under, or '' for a bare state dict. */
  key: string;
  tensors: Map<string, PthTensor>;
}

/**
 * Picks the state dict of a checkpoint: `root[key]` (key 'model' by default), or the root itself
 * when it is a bare state dict and no key was asked for explicitly.
 */
export function selectStateDict(ckpt: PthCheckpoint, key?: string): StateDictChoice {
  const where = ckpt.path;
  const root = ckpt.root;
  if (!(root instanceof Map)) throw new PthError(where, `checkpoint holds ${describe(root)}, not a dict`);
  const keys = [...root.keys()].map((k) => String(k));
  const listKeys = (): string => keys.slice(0, 12).map((k) => quote(k, 40)).join(', ') + (keys.length > 12 ? ', …' : '');
  const wanted = key ?? 'model';
  let dict: unknown;
  let chosen = wanted;
  if (root.has(wanted)) dict = root.get(wanted);
  else if (key === undefined && root.size > 0 && [...root.values()].every((v) => v instanceof PthTensor)) {
    dict = root;
    chosen = '';
  } else {
    throw new PthError(where, `no ${quote(wanted)} entry in the checkpoint (its keys: ${listKeys()}); choose one with --key`);
  }
  if (!(dict instanceof Map)) throw new PthError(where, `checkpoint entry ${quote(chosen)} is ${describe(dict)}, not a state dict`);
  const tensors = new Map<string, PthTensor>();
  for (const [k, v] of dict) {
    if (typeof k !== 'string') throw new PthError(where, `state dict ${quote(chosen)} has a non-string key (${describe(k)})`);
    if (!(v instanceof PthTensor)) throw new PthError(where, `state dict ${quote(chosen)} entry ${quote(k)} is ${describe(v)}, not a tensor`);
    tensors.set(k, v);
  }
  return { key: chosen, tensors };
}
