/**
 * A safe unpickler for the subset of the pickle format (protocols 0–5, binary opcodes and the
 * few text ones torch checkpoints can hold) that describes data: None, bools, ints, floats,
 * strings, bytes, lists, tuples, dicts, sets, memo references, persistent ids.
 *
 * Nothing is ever executed. A global (GLOBAL / STACK_GLOBAL) is only a name: calling it (REDUCE,
 * NEWOBJ) runs a handler from an allowlist given by the caller, and any other call builds an
 * inert PickleObject that records the name, the arguments and whatever state is applied to it.
 *
 * Python values map to: None → null, bool → boolean, int → number (bigint beyond 2^53),
 * float → number, str → string, bytes/bytearray → Uint8Array, list → Array, tuple → PickleTuple,
 * dict → Map, set/frozenset → Set.
 */
import { ModelFileError } from './errors.js';

export class PickleError extends ModelFileError {
  override name = 'PickleError';
}

/** A tuple (immutable in Python; kept apart from lists so that callers can tell them apart). */
export class PickleTuple {
  constructor(readonly items: readonly unknown[]) {}
  get length(): number {
    return this.items.length;
  }
}

/** A reference to a module-level name; never resolved, never imported. */
export class PickleGlobal {
  constructor(readonly module: string, readonly name: string) {}
  get qualifiedName(): string {
    return `${this.module}.${this.name}`;
  }
}

/** What a call of a non-allowlisted global leaves behind: the call, recorded, never performed. */
export class PickleObject {
  /** Keyword arguments (NEWOBJ_EX). */
  kwargs: Map<unknown, unknown> | undefined;
  /** The argument of BUILD (usually the object's __dict__). */
  state: unknown;
  /** Items added by APPEND(S) / SETITEM(S), for list and dict subclasses. */
  readonly listItems: unknown[] = [];
  readonly dictItems = new Map<unknown, unknown>();
  constructor(readonly global: PickleGlobal, readonly args: readonly unknown[]) {}
}

/** A handler for an allowlisted global: receives the call's positional arguments. */
export type GlobalHandler = (args: readonly unknown[], at: { offset: number }) => unknown;

export interface UnpickleOptions {
  /** Names the input in errors (e.g. "ckpt.pth [archive/data.pkl]"). */
  where: string;
  /** Allowlisted callables by "module.name"; these extend (and may override) the defaults. */
  globals?: Readonly<Record<string, GlobalHandler>>;
  /** Resolves a persistent id (PERSID / BINPERSID); without it such ids are an error. */
  persistentLoad?: (pid: unknown, at: { offset: number }) => unknown;
}

/** Calls interpreted by default: harmless constructors of plain data. */
const DEFAULT_GLOBALS: Record<string, GlobalHandler> = {
  'collections.OrderedDict': (args) => {
    const m = new Map<unknown, unknown>();
    const init = args[0];
    if (init instanceof Map) for (const [k, v] of init) m.set(k, v);
    else if (Array.isArray(init)) {
      for (const pair of init) {
        const kv = pair instanceof PickleTuple ? pair.items : pair;
        if (!Array.isArray(kv) || kv.length !== 2) throw new Error('OrderedDict() needs (key, value) pairs');
        m.set(kv[0], kv[1]);
      }
    }
    return m;
  },
  // Protocol-2 pickles of bytes: _codecs.encode(latin-1 text, 'latin1').
  '_codecs.encode': (args) => {
    const [text, enc] = args;
    if (typeof text !== 'string' || (enc !== 'latin1' && enc !== 'latin-1')) throw new Error('only _codecs.encode(str, "latin1") is interpreted');
    return new Uint8Array(Buffer.from(text, 'latin1'));
  },
};

/** Every opcode by byte, for messages; those the switch below lacks are reported as unsupported. */
const OPCODE_NAMES: Record<number, string> = {
  0x28: 'MARK', 0x2e: 'STOP', 0x30: 'POP', 0x31: 'POP_MARK', 0x32: 'DUP', 0x46: 'FLOAT', 0x49: 'INT',
  0x4a: 'BININT', 0x4b: 'BININT1', 0x4c: 'LONG', 0x4d: 'BININT2', 0x4e: 'NONE', 0x50: 'PERSID',
  0x51: 'BINPERSID', 0x52: 'REDUCE', 0x53: 'STRING', 0x54: 'BINSTRING', 0x55: 'SHORT_BINSTRING',
  0x56: 'UNICODE', 0x58: 'BINUNICODE', 0x61: 'APPEND', 0x62: 'BUILD', 0x63: 'GLOBAL', 0x64: 'DICT',
  0x7d: 'EMPTY_DICT', 0x65: 'APPENDS', 0x67: 'GET', 0x68: 'BINGET', 0x69: 'INST', 0x6a: 'LONG_BINGET',
  0x6c: 'LIST', 0x5d: 'EMPTY_LIST', 0x6f: 'OBJ', 0x70: 'PUT', 0x71: 'BINPUT', 0x72: 'LONG_BINPUT',
  0x73: 'SETITEM', 0x74: 'TUPLE', 0x29: 'EMPTY_TUPLE', 0x75: 'SETITEMS', 0x47: 'BINFLOAT',
  0x80: 'PROTO', 0x81: 'NEWOBJ', 0x82: 'EXT1', 0x83: 'EXT2', 0x84: 'EXT4', 0x85: 'TUPLE1', 0x86: 'TUPLE2',
  0x87: 'TUPLE3', 0x88: 'NEWTRUE', 0x89: 'NEWFALSE', 0x8a: 'LONG1', 0x8b: 'LONG4', 0x42: 'BINBYTES',
  0x43: 'SHORT_BINBYTES', 0x8c: 'SHORT_BINUNICODE', 0x8d: 'BINUNICODE8', 0x8e: 'BINBYTES8',
  0x8f: 'EMPTY_SET', 0x90: 'ADDITEMS', 0x91: 'FROZENSET', 0x92: 'NEWOBJ_EX', 0x93: 'STACK_GLOBAL',
  0x94: 'MEMOIZE', 0x95: 'FRAME', 0x96: 'BYTEARRAY8', 0x97: 'NEXT_BUFFER', 0x98: 'READONLY_BUFFER',
};

const utf8 = new TextDecoder('utf-8');
const latin1 = new TextDecoder('latin1');

/** The Python-ish type of an unpickled value, for messages. */
export function typeName(v: unknown): string {
  if (v === null) return 'None';
  if (Array.isArray(v)) return 'list';
  if (v instanceof Map) return 'dict';
  if (v instanceof Set) return 'set';
  if (v instanceof Uint8Array) return 'bytes';
  if (v instanceof PickleTuple) return 'tuple';
  if (v instanceof PickleGlobal) return `global ${v.qualifiedName}`;
  if (v instanceof PickleObject) return `${v.global.qualifiedName} object`;
  if (typeof v === 'object') return (v as object).constructor?.name ?? 'object';
  return typeof v;
}

/** A Python int from little-endian two's-complement bytes (LONG1 / LONG4). */
function decodeLong(b: Uint8Array): number | bigint {
  if (b.length === 0) return 0;
  let hex = '';
  for (let i = b.length - 1; i >= 0; i--) hex += b[i]!.toString(16).padStart(2, '0');
  let v = BigInt('0x' + hex);
  if (b[b.length - 1]! & 0x80) v -= 1n << BigInt(8 * b.length);
  return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
}

/** Unpickles `bytes`; every malformation is a one-line PickleError naming the offset. */
export function unpickle(bytes: Uint8Array, opts: UnpickleOptions): unknown {
  const where = opts.where;
  const globals: Record<string, GlobalHandler> = { ...DEFAULT_GLOBALS, ...opts.globals };
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const n = bytes.byteLength;
  const stack: unknown[] = [];
  const marks: number[] = [];
  const memo = new Map<number, unknown>();
  let pos = 0;
  let opPos = 0;
  let op = 0;

  const fail = (msg: string): never => {
    throw new PickleError(where, `${msg} at offset ${opPos}`);
  };
  const opName = (): string => OPCODE_NAMES[op] ?? `0x${op.toString(16).padStart(2, '0')}`;
  const need = (k: number): void => {
    if (k < 0 || pos + k > n) fail(`truncated pickle: ${opName()} needs ${k} more bytes`);
  };
  const take = (k: number): Uint8Array => {
    need(k);
    const b = bytes.subarray(pos, pos + k);
    pos += k;
    return b;
  };
  const u8 = (): number => (need(1), bytes[pos++]!);
  const u16 = (): number => (need(2), (pos += 2), view.getUint16(pos - 2, true));
  const u32 = (): number => (need(4), (pos += 4), view.getUint32(pos - 4, true));
  const i32 = (): number => (need(4), (pos += 4), view.getInt32(pos - 4, true));
  const u64 = (): number => {
    need(8);
    const v = view.getBigUint64(pos, true);
    pos += 8;
    if (v > BigInt(n)) fail(`${opName()} length ${v} exceeds the pickle`);
    return Number(v);
  };
  const line = (): string => {
    const end = bytes.indexOf(0x0a, pos);
    if (end < 0) fail(`truncated pickle: ${opName()} has no end of line`);
    const s = latin1.decode(bytes.subarray(pos, end));
    pos = end + 1;
    return s;
  };
  /** The stack above the innermost MARK is all an opcode may consume. */
  const fence = (): number => (marks.length ? marks[marks.length - 1]! : 0);
  const pop = (): unknown => {
    if (stack.length <= fence()) fail(`stack underflow in ${opName()}`);
    return stack.pop();
  };
  const top = (): unknown => {
    if (stack.length <= fence()) fail(`stack underflow in ${opName()}`);
    return stack[stack.length - 1];
  };
  const popMark = (): unknown[] => {
    const m = marks.pop();
    if (m === undefined) fail(`${opName()} without a MARK`);
    return stack.splice(m!);
  };
  const intLine = (s: string, what: string): number => {
    const t = s.trim();
    if (!/^-?\d{1,15}$/.test(t)) fail(`bad ${what} ${JSON.stringify(t.slice(0, 30))}`);
    return Number(t);
  };
  const memoGet = (k: number): unknown => {
    if (!memo.has(k)) fail(`memo key ${k} not found`);
    return memo.get(k);
  };
  const memoPut = (k: number): void => {
    memo.set(k, top());
  };
  const call = (callable: unknown, args: unknown, how: string): unknown => {
    if (!(callable instanceof PickleGlobal)) return fail(`${how} of a ${typeName(callable)}, not of a global`);
    if (!(args instanceof PickleTuple)) return fail(`${how} of ${callable.qualifiedName} with ${typeName(args)} arguments, not a tuple`);
    const handler = Object.prototype.hasOwnProperty.call(globals, callable.qualifiedName) ? globals[callable.qualifiedName] : undefined;
    if (!handler) return new PickleObject(callable, args.items);
    try {
      return handler(args.items, { offset: opPos });
    } catch (e) {
      if (e instanceof ModelFileError) throw e;
      return fail(`${callable.qualifiedName}: ${(e as Error).message}`);
    }
  };
  const setItems = (target: unknown, kv: unknown[]): void => {
    if (kv.length % 2) fail(`${opName()} with an odd number of items`);
    const dict = target instanceof Map ? target : target instanceof PickleObject ? target.dictItems : fail(`${opName()} on a ${typeName(target)}`);
    for (let i = 0; i < kv.length; i += 2) dict.set(kv[i], kv[i + 1]);
  };
  const appendItems = (target: unknown, items: unknown[]): void => {
    const list = Array.isArray(target) ? target : target instanceof PickleObject ? target.listItems : fail(`${opName()} on a ${typeName(target)}`);
    for (const it of items) list.push(it);
  };
  const persistent = (pid: unknown): unknown => {
    if (!opts.persistentLoad) return fail('persistent id found but this file type does not allow them');
    return opts.persistentLoad(pid, { offset: opPos });
  };

  try {
    for (;;) {
      opPos = pos;
      if (pos >= n) fail('truncated pickle: no STOP opcode');
      op = bytes[pos++]!;
      switch (op) {
        case 0x80: { // PROTO
          const v = u8();
          if (v > 5) fail(`unsupported pickle protocol ${v}`);
          break;
        }
        case 0x95: // FRAME: frames only chunk the stream; the data follows inline.
          u64();
          break;
        case 0x2e: // STOP
          return pop();
        case 0x28: marks.push(stack.length); break; // MARK
        case 0x30: // POP (of an item, or of an empty MARK)
          if (stack.length > fence()) stack.pop();
          else if (marks.length) marks.pop();
          else fail('stack underflow in POP');
          break;
        case 0x31: popMark(); break; // POP_MARK
        case 0x32: stack.push(top()); break; // DUP
        case 0x4e: stack.push(null); break; // NONE
        case 0x88: stack.push(true); break; // NEWTRUE
        case 0x89: stack.push(false); break; // NEWFALSE
        case 0x4a: stack.push(i32()); break; // BININT
        case 0x4b: stack.push(u8()); break; // BININT1
        case 0x4d: stack.push(u16()); break; // BININT2
        case 0x8a: stack.push(decodeLong(take(u8()))); break; // LONG1
        case 0x8b: { // LONG4
          const k = i32();
          if (k < 0) fail('LONG4 with a negative length');
          stack.push(decodeLong(take(k)));
          break;
        }
        case 0x49: { // INT (text; "01"/"00" are the bools of protocol 0)
          const s = line().trim();
          if (s === '01') stack.push(true);
          else if (s === '00') stack.push(false);
          else {
            if (!/^[-+]?\d{1,400}$/.test(s)) fail(`bad INT ${JSON.stringify(s.slice(0, 30))}`);
            const v = BigInt(s);
            stack.push(v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v);
          }
          break;
        }
        case 0x4c: { // LONG (text, trailing L)
          const s = line().trim().replace(/L$/, '');
          if (!/^[-+]?\d{1,400}$/.test(s)) fail(`bad LONG ${JSON.stringify(s.slice(0, 30))}`);
          const v = BigInt(s);
          stack.push(v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v);
          break;
        }
        case 0x47: // BINFLOAT (big-endian)
          need(8);
          stack.push(view.getFloat64(pos, false));
          pos += 8;
          break;
        case 0x46: { // FLOAT (text)
          const s = line().trim();
          const v = Number(s);
          if (s === '' || (Number.isNaN(v) && !/^[-+]?nan$/i.test(s))) fail(`bad FLOAT ${JSON.stringify(s.slice(0, 30))}`);
          stack.push(v);
          break;
        }
        case 0x58: stack.push(utf8.decode(take(u32()))); break; // BINUNICODE
        case 0x8c: stack.push(utf8.decode(take(u8()))); break; // SHORT_BINUNICODE
        case 0x8d: stack.push(utf8.decode(take(u64()))); break; // BINUNICODE8
        case 0x54: { // BINSTRING (Python 2 str, read as latin-1 text)
          const k = i32();
          if (k < 0) fail('BINSTRING with a negative length');
          stack.push(latin1.decode(take(k)));
          break;
        }
        case 0x55: stack.push(latin1.decode(take(u8()))); break; // SHORT_BINSTRING
        case 0x42: stack.push(new Uint8Array(take(u32()))); break; // BINBYTES
        case 0x43: stack.push(new Uint8Array(take(u8()))); break; // SHORT_BINBYTES
        case 0x8e: // BINBYTES8
        case 0x96: // BYTEARRAY8
          stack.push(new Uint8Array(take(u64())));
          break;
        case 0x5d: stack.push([]); break; // EMPTY_LIST
        case 0x6c: stack.push(popMark()); break; // LIST
        case 0x61: { // APPEND
          const v = pop();
          appendItems(top(), [v]);
          break;
        }
        case 0x65: { // APPENDS
          const items = popMark();
          appendItems(top(), items);
          break;
        }
        case 0x29: stack.push(new PickleTuple([])); break; // EMPTY_TUPLE
        case 0x74: stack.push(new PickleTuple(popMark())); break; // TUPLE
        case 0x85: stack.push(new PickleTuple([pop()])); break; // TUPLE1
        case 0x86: { // TUPLE2
          const b = pop();
          const a = pop();
          stack.push(new PickleTuple([a, b]));
          break;
        }
        case 0x87: { // TUPLE3
          const c = pop();
          const b = pop();
          const a = pop();
          stack.push(new PickleTuple([a, b, c]));
          break;
        }
        case 0x7d: stack.push(new Map()); break; // EMPTY_DICT
        case 0x64: { // DICT
          const m = new Map<unknown, unknown>();
          setItems(m, popMark());
          stack.push(m);
          break;
        }
        case 0x73: { // SETITEM
          const v = pop();
          const k = pop();
          setItems(top(), [k, v]);
          break;
        }
        case 0x75: { // SETITEMS
          const kv = popMark();
          setItems(top(), kv);
          break;
        }
        case 0x8f: stack.push(new Set()); break; // EMPTY_SET
        case 0x90: { // ADDITEMS
          const items = popMark();
          const s = top();
          if (!(s instanceof Set)) fail(`ADDITEMS on a ${typeName(s)}`);
          for (const it of items) (s as Set<unknown>).add(it);
          break;
        }
        case 0x91: stack.push(new Set(popMark())); break; // FROZENSET
        case 0x63: { // GLOBAL
          const module = line();
          const name = line();
          stack.push(new PickleGlobal(module, name));
          break;
        }
        case 0x93: { // STACK_GLOBAL
          const name = pop();
          const module = pop();
          if (typeof module !== 'string' || typeof name !== 'string') fail('STACK_GLOBAL needs two strings');
          stack.push(new PickleGlobal(module as string, name as string));
          break;
        }
        case 0x52: { // REDUCE
          const args = pop();
          const callable = pop();
          stack.push(call(callable, args, 'REDUCE'));
          break;
        }
        case 0x81: { // NEWOBJ: cls.__new__(cls, *args)
          const args = pop();
          const cls = pop();
          stack.push(call(cls, args, 'NEWOBJ'));
          break;
        }
        case 0x92: { // NEWOBJ_EX
          const kwargs = pop();
          const args = pop();
          const cls = pop();
          const obj = call(cls, args, 'NEWOBJ_EX');
          if (obj instanceof PickleObject && kwargs instanceof Map) obj.kwargs = kwargs;
          stack.push(obj);
          break;
        }
        case 0x62: { // BUILD
          const state = pop();
          const obj = top();
          if (obj instanceof PickleObject) obj.state = state;
          // Attribute state of a dict or list (OrderedDict._metadata of a torch state dict,
          // say) carries nothing the data needs: dropped. Host objects ignore it too.
          else if (obj === null || typeof obj !== 'object') fail(`BUILD on a ${typeName(obj)}`);
          break;
        }
        case 0x51: stack.push(persistent(pop())); break; // BINPERSID
        case 0x50: stack.push(persistent(line())); break; // PERSID
        case 0x68: stack.push(memoGet(u8())); break; // BINGET
        case 0x6a: stack.push(memoGet(u32())); break; // LONG_BINGET
        case 0x67: stack.push(memoGet(intLine(line(), 'GET key'))); break; // GET
        case 0x71: memoPut(u8()); break; // BINPUT
        case 0x72: memoPut(u32()); break; // LONG_BINPUT
        case 0x70: memoPut(intLine(line(), 'PUT key')); break; // PUT
        case 0x94: memoPut(memo.size); break; // MEMOIZE
        default:
          fail(OPCODE_NAMES[op] ? `unsupported pickle opcode ${OPCODE_NAMES[op]} (0x${op.toString(16)})` : `unknown pickle opcode 0x${op.toString(16).padStart(2, '0')}`);
      }
    }
  } catch (e) {
    if (e instanceof ModelFileError) throw e;
    // Anything else (a RangeError from a huge allocation, say) still ends as a clean error.
    throw new PickleError(where, `malformed pickle: ${(e as Error).message} at offset ${opPos}`);
  }
}
