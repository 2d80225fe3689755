import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PickleError, PickleGlobal, PickleObject, PickleTuple, unpickle } from '../../lib/io/pickle.js';
import { Call, Float, OrderedDict, PickleWriter, Tuple, rng, type PyValue } from './torch-writer.js';

/** Assembles a pickle from bytes, ASCII text and little-endian integers. */
function asm(...parts: (number | string | { u32: number } | { u64: number } | { i32: number } | { f64be: number } | Uint8Array)[]): Uint8Array {
  const out: number[] = [];
  for (const p of parts) {
    if (typeof p === 'number') out.push(p);
    else if (typeof p === 'string') out.push(...Buffer.from(p, 'utf8'));
    else if (p instanceof Uint8Array) out.push(...p);
    else {
      const b = Buffer.alloc('u64' in p ? 8 : 'f64be' in p ? 8 : 4);
      if ('u32' in p) b.writeUInt32LE(p.u32);
      else if ('i32' in p) b.writeInt32LE(p.i32);
      else if ('u64' in p) b.writeBigUInt64LE(BigInt(p.u64));
      else b.writeDoubleBE(p.f64be);
      out.push(...b);
    }
  }
  return Uint8Array.from(out);
}

const load = (b: Uint8Array, opts: Partial<Parameters<typeof unpickle>[1]> = {}) => unpickle(b, { where: 'test.pkl', ...opts });

function expectPickleError(b: Uint8Array, pattern: RegExp, opts: Partial<Parameters<typeof unpickle>[1]> = {}): void {
  assert.throws(() => load(b, opts), (e: unknown) => {
    assert.ok(e instanceof PickleError, `expected a PickleError, got ${String(e)}`);
    assert.match(e.message, pattern);
    assert.ok(e.message.startsWith('test.pkl: '));
    return true;
  });
}

test('scalars, containers and memo references written by our protocol-2 writer', () => {
  const shared = new Map([['k', [1, 2]]]);
  const v = load(PickleWriter.dump(new Map<never, never>([
    ['ints', [0, 1, 255, 256, 65535, 65536, -1, -129, 2 ** 31 - 1, -(2 ** 31), 2 ** 31, 2 ** 53 - 1, -(2 ** 53) + 1]],
    ['big', [2n ** 53n, -(2n ** 64n), 2n ** 200n]],
    ['floats', [new Float(3), 0.1, -2.5e-300, Infinity]],
    ['strs', ['', 'ascii', 'ünï ✓ 😀']],
    ['bytes', [new Uint8Array([0, 255, 7]), new Uint8Array(300).fill(9)]],
    ['misc', new Tuple([null, true, false, new Tuple([]), new Tuple([1]), new Tuple([1, 2]), new Tuple([1, 2, 3]), new Tuple([1, 2, 3, 4])])],
    ['a', shared], ['b', shared],
  ] as never))) as Map<string, unknown>;
  assert.ok(v instanceof Map);
  assert.deepEqual(v.get('ints'), [0, 1, 255, 256, 65535, 65536, -1, -129, 2 ** 31 - 1, -(2 ** 31), 2 ** 31, 2 ** 53 - 1, -(2 ** 53) + 1]);
  assert.deepEqual(v.get('big'), [2n ** 53n, -(2n ** 64n), 2n ** 200n]);
  assert.deepEqual(v.get('floats'), [3, 0.1, -2.5e-300, Infinity]);
  assert.deepEqual(v.get('strs'), ['', 'ascii', 'ünï ✓ 😀']);
  assert.deepEqual(v.get('bytes'), [new Uint8Array([0, 255, 7]), new Uint8Array(300).fill(9)]);
  const misc = v.get('misc') as PickleTuple;
  assert.ok(misc instanceof PickleTuple);
  assert.deepEqual(misc.items.slice(0, 3), [null, true, false]);
  assert.deepEqual((misc.items.slice(3) as PickleTuple[]).map((t) => t.items), [[], [1], [1, 2], [1, 2, 3], [1, 2, 3, 4]]);
  // The writer memoizes the dict once and refers to it again: one object, as in Python.
  assert.equal(v.get('a'), v.get('b'));
});

test('globals are never executed: unknown calls become inert placeholders recording their arguments', () => {
  const v = load(PickleWriter.dump(new Map<never, never>([
    ['rm', new Call('os', 'system', ['rm -rf /'])],
    ['ns', new Call('argparse', 'Namespace', [], { newobj: true, state: new Map<PyValue, PyValue>([['lr', new Float(1e-3)], ['model', 'vim']]) })],
    ['od', new OrderedDict(new Map([['x', 1], ['y', 2]]), new Map([['_metadata', new Map()]]))],
  ] as never))) as Map<string, unknown>;
  const rm = v.get('rm');
  assert.ok(rm instanceof PickleObject);
  assert.equal(rm.global.qualifiedName, 'os.system');
  assert.deepEqual(rm.args, ['rm -rf /']);
  const ns = v.get('ns') as PickleObject;
  assert.equal(ns.global.qualifiedName, 'argparse.Namespace');
  assert.deepEqual(ns.state, new Map<string, unknown>([['lr', 1e-3], ['model', 'vim']]));
  // collections.OrderedDict is allowlisted: a Map in insertion order; its BUILD state is dropped.
  assert.deepEqual(v.get('od'), new Map([['x', 1], ['y', 2]]));
});

test('protocol 4/5 and text opcodes: FRAME, MEMOIZE, STACK_GLOBAL, sets, LONG4, BINBYTES8, INT/LONG/FLOAT/PUT/GET', () => {
  const body = asm(
    0x7d, 0x94, // EMPTY_DICT, MEMOIZE (0)
    0x28, // MARK
    0x8c, 1, 'a', 0x94, 0x8f, 0x94, 0x28, 0x4b, 1, 0x4b, 2, 0x90, // 'a': set{1,2}
    0x8c, 1, 'b', 0x28, 0x4b, 3, 0x91, // 'b': frozenset{3}
    0x8c, 1, 'c', 0x8b, { i32: 3 }, 0xff, 0xff, 0x7f, // 'c': LONG4 0x7fffff
    0x8c, 1, 'd', 0x8e, { u64: 2 }, 0x01, 0x02, // 'd': BINBYTES8
    0x8c, 1, 'e', 0x8c, 11, 'collections', 0x8c, 11, 'OrderedDict', 0x93, 0x29, 0x52, // 'e': OrderedDict() via STACK_GLOBAL
    0x8c, 1, 'f', 'I01\n', // True
    0x8c, 1, 'g', 'I-42\n',
    0x8c, 1, 'h', 'L123456789012345678901234567890L\n',
    0x8c, 1, 'i', 'F-1.25\n',
    0x8c, 1, 'j', 'p7\n', 'g7\n', // PUT 7 then GET 7: the key string again, as the value
    0x8c, 1, 'k', 0x8d, { u64: 3 }, 'xyz', // BINUNICODE8
    0x8c, 1, 'l', 0x55, 2, 'hi', // SHORT_BINSTRING
    0x8c, 1, 'm', 0x28, 0x4b, 1, 0x4b, 2, 0x6c, // LIST
    0x8c, 1, 'n', 0x28, 0x4b, 1, 0x4b, 2, 0x64, // DICT {1: 2}
    0x8c, 1, 'o', 0x4b, 5, 0x32, 0x86, // DUP → (5, 5)
    0x8c, 1, 'p', 0x6a, { u32: 0 }, // LONG_BINGET 0: the dict itself
    0x8c, 1, 'q', 0x47, { f64be: 6.5 },
    0x75, // SETITEMS
    0x28, 0x4b, 9, 0x31, // MARK 9 POP_MARK: discarded
    0x4b, 9, 0x30, // 9 POP: discarded
  );
  const v = load(asm(0x80, 4, 0x95, { u64: body.length + 1 }, body, 0x2e)) as Map<string, unknown>;
  assert.deepEqual(v.get('a'), new Set([1, 2]));
  assert.deepEqual(v.get('b'), new Set([3]));
  assert.equal(v.get('c'), 0x7fffff);
  assert.deepEqual(v.get('d'), new Uint8Array([1, 2]));
  assert.deepEqual(v.get('e'), new Map());
  assert.equal(v.get('f'), true);
  assert.equal(v.get('g'), -42);
  assert.equal(v.get('h'), 123456789012345678901234567890n);
  assert.equal(v.get('i'), -1.25);
  assert.equal(v.get('j'), 'j');
  assert.equal(v.get('k'), 'xyz');
  assert.equal(v.get('l'), 'hi');
  assert.deepEqual(v.get('m'), [1, 2]);
  assert.deepEqual(v.get('n'), new Map([[1, 2]]));
  assert.deepEqual((v.get('o') as PickleTuple).items, [5, 5]);
  assert.equal(v.get('p'), v, 'a self-reference is kept as one object');
  assert.equal(v.get('q'), 6.5);
  assert.equal(v.size, 17);
});

test('LONG1 edge cases decode as two\'s complement', () => {
  const long1 = (...b: number[]) => load(asm(0x80, 2, 0x8a, b.length, ...b, 0x2e));
  assert.equal(long1(), 0);
  assert.equal(long1(0xff), -1);
  assert.equal(long1(0x80), -128);
  assert.equal(long1(0xff, 0x00), 255);
  assert.equal(long1(0, 0, 0, 0, 0, 0, 0, 0x80), -(2n ** 63n));
});

test('persistent ids go to the loader; allowlisted globals to their handlers', () => {
  const pid = asm(0x80, 2, 0x28, 0x8c, 7, 'storage', 0x4b, 3, 0x74, 0x51, 0x2e);
  assert.deepEqual(load(pid, { persistentLoad: (p) => ({ got: (p as PickleTuple).items }) }), { got: ['storage', 3] });
  expectPickleError(pid, /persistent id found but this file type does not allow them at offset 15/);
  assert.equal(load(asm(0x80, 2, 'P', 'abc\n', 0x2e), { persistentLoad: (p) => `<${String(p)}>` }), '<abc>');
  const call = asm(0x80, 2, 'c', 'mod\nfn\n', 0x4b, 4, 0x85, 0x52, 0x2e);
  assert.equal(load(call, { globals: { 'mod.fn': (args) => (args[0] as number) * 10 } }), 40);
  const g = load(asm(0x80, 2, 'c', 'torch\nFloatStorage\n', 0x2e));
  assert.ok(g instanceof PickleGlobal && g.qualifiedName === 'torch.FloatStorage');
  // A handler that throws an ordinary error still ends as a clean, located PickleError.
  expectPickleError(call, /mod\.fn: boom at offset 13/, { globals: { 'mod.fn': () => { throw new Error('boom'); } } });
});

test('malformed and unsupported pickles are one-line PickleErrors naming the opcode and offset', () => {
  expectPickleError(asm(0x80, 2, 0x82, 1, 0x2e), /unsupported pickle opcode EXT1 \(0x82\) at offset 2/);
  expectPickleError(asm(0x80, 2, 0x28, 'i', 'os\nsystem\n', 0x2e), /unsupported pickle opcode INST \(0x69\) at offset 3/);
  expectPickleError(asm(0x80, 5, 0x97, 0x2e), /unsupported pickle opcode NEXT_BUFFER \(0x97\) at offset 2/);
  expectPickleError(asm(0x80, 2, 0x4e, 0xff, 0x2e), /unknown pickle opcode 0xff at offset 3/);
  expectPickleError(asm(0x80, 6, 0x4e, 0x2e), /unsupported pickle protocol 6 at offset 0/);
  expectPickleError(asm(0x80, 2, 0x4e), /truncated pickle: no STOP opcode at offset 3/);
  expectPickleError(asm(), /no STOP opcode at offset 0/);
  expectPickleError(asm(0x80, 2, 0x58, { u32: 100 }, 'abc'), /truncated pickle: BINUNICODE needs 100 more bytes at offset 2/);
  expectPickleError(asm(0x80, 4, 0x8d, { u64: 2 ** 62 }, 0x2e), /BINUNICODE8 length \d+ exceeds the pickle/);
  expectPickleError(asm(0x80, 2, 0x61, 0x2e), /stack underflow in APPEND at offset 2/);
  expectPickleError(asm(0x80, 2, 0x5d, 0x28, 0x61, 0x2e), /stack underflow in APPEND at offset 4/);
  expectPickleError(asm(0x80, 2, 0x2e), /stack underflow in STOP/);
  expectPickleError(asm(0x80, 2, 0x65, 0x2e), /APPENDS without a MARK at offset 2/);
  expectPickleError(asm(0x80, 2, 0x68, 5, 0x2e), /memo key 5 not found at offset 2/);
  expectPickleError(asm(0x80, 2, 0x4b, 1, 0x4b, 2, 0x73, 0x2e), /stack underflow in SETITEM/);
  expectPickleError(asm(0x80, 2, 0x4b, 1, 0x4b, 2, 0x4b, 3, 0x73, 0x2e), /SETITEM on a number at offset 8/);
  expectPickleError(asm(0x80, 2, 0x28, 0x4b, 1, 0x64, 0x2e), /DICT with an odd number of items/);
  expectPickleError(asm(0x80, 2, 0x4b, 1, 0x29, 0x52, 0x2e), /REDUCE of a number, not of a global at offset 5/);
  expectPickleError(asm(0x80, 2, 'c', 'a\nb\n', 0x4b, 1, 0x52, 0x2e), /REDUCE of a\.b with number arguments, not a tuple/);
  expectPickleError(asm(0x80, 2, 0x4b, 1, 0x4e, 0x62, 0x2e), /BUILD on a number/);
  expectPickleError(asm(0x80, 2, 'I', '12x\n', 0x2e), /bad INT "12x"/);
  expectPickleError(asm(0x80, 2, 'c', 'no-newline'), /GLOBAL has no end of line/);
  expectPickleError(asm(0x80, 2, 0x8b, { i32: -5 }, 0x2e), /LONG4 with a negative length/);
  expectPickleError(asm(0x80, 4, 0x95, { u64: 1000 }, 0x4e, 0x2e), /FRAME length 1000 exceeds the pickle/);
});

test('fuzz: random pickles and mutations of a valid one end in a value or a PickleError', () => {
  const rand = rng(12345);
  const good = PickleWriter.dump(new Map<never, never>([
    ['a', [1, 2, new Tuple(['x', new Float(0.5)])]],
    ['b', new OrderedDict(new Map([['k', new Uint8Array([1, 2, 3])]]))],
    ['c', new Call('argparse', 'Namespace', [], { newobj: true, state: new Map([['z', 2n ** 80n]]) })],
  ] as never));
  let ok = 0;
  let bad = 0;
  for (let i = 0; i < 3000; i++) {
    let b: Uint8Array;
    if (i % 3 === 0) b = Uint8Array.from({ length: 1 + Math.floor(rand() * 64) }, () => Math.floor(rand() * 256));
    else {
      b = good.slice(0, i % 3 === 1 ? good.length : Math.floor(rand() * good.length));
      for (let k = 0; k < 1 + Math.floor(rand() * 3); k++) b[Math.floor(rand() * b.length)] = Math.floor(rand() * 256);
    }
    try {
      load(b, { persistentLoad: () => null });
      ok++;
    } catch (e) {
      assert.ok(e instanceof PickleError, `input ${Buffer.from(b).toString('hex')}: ${String(e)}`);
      bad++;
    }
  }
  assert.ok(bad > 1000 && ok > 10, `ok ${ok}, errors ${bad}`);
});
