import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { copyFile, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { gunzipSync, gzipSync } from 'node:zlib';
import { packageRoot } from '../../lib/backend/addon.js';
import {
  DataError, FASHION_MNIST_CLASSES, IdxDataset, makePreprocess, preprocessFromModel, preprocessImageBuffer, resolveDataset, sampleIndices,
  type Batch, type Dataset,
} from '../../lib/data/index.js';
import { encode } from './images.js';

const root = packageRoot();
const asset = (name: string): string => join(root, 'assets', 'fmnist', name);
// Fashion-MNIST's published normalization (what vim-fmnist's metadata holds).
const FMNIST = makePreprocess({ channels: 1, size: 28, resize: 28, mean: [0.2860405969887955], std: [0.3530242445149223] });

async function collect(ds: Dataset, opts: Parameters<Dataset['batches']>[0]): Promise<Batch[]> {
  const out: Batch[] = [];
  for await (const b of ds.batches(opts)) out.push(b);
  return out;
}

/** An idx file: 0 0 type rank, big-endian u32 dims, body. */
function idx(rank: number, dims: number[], body: Uint8Array, type = 0x08): Buffer {
  const h = Buffer.alloc(4 + 4 * rank);
  h[2] = type;
  h[3] = rank;
  dims.forEach((d, i) => h.writeUInt32BE(d, 4 + 4 * i));
  return Buffer.concat([h, body]);
}

async function rejectsData(p: Promise<unknown>, file: string, pattern: RegExp): Promise<void> {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof DataError, `expected a DataError, got ${String(e)}`);
    assert.ok(e.message.includes(file), `message should name ${file}: ${e.message}`);
    assert.match(e.message, pattern);
    return true;
  });
}

describe('built-in Fashion-MNIST (idx)', () => {
  test('fmnist: 10000 28×28 images, labels match the labels file decoded here', async () => {
    const ds = await resolveDataset('fmnist');
    assert.equal(ds.kind, 'idx');
    assert.equal(ds.length, 10000);
    assert.deepEqual(ds.classNames, FASHION_MNIST_CLASSES);
    assert.ok(ds instanceof IdxDataset);
    assert.equal(ds.rows, 28);
    assert.equal(ds.cols, 28);
    const raw = gunzipSync(readFileSync(asset('t10k-labels-idx1-ubyte.gz')));
    assert.equal(raw.readUInt32BE(0), 0x801);
    assert.equal(raw.readUInt32BE(4), 10000);
    // The published first labels of the Fashion-MNIST test set, and its exact class balance.
    assert.deepEqual([...raw.subarray(8, 18)], [9, 2, 1, 1, 6, 1, 4, 6, 5, 7]);
    const counts = new Array<number>(10).fill(0);
    for (let i = 0; i < 10000; i++) {
      assert.equal(ds.label(i), raw[8 + i]);
      counts[ds.label(i)]!++;
    }
    assert.deepEqual(counts, new Array(10).fill(1000));
  });

  test('fmnist-train: the 2000-image calibration subset', async () => {
    const ds = await resolveDataset('fmnist-train');
    assert.equal(ds.length, 2000);
    const raw = gunzipSync(readFileSync(asset('train-subset2000-labels-idx1-ubyte.gz')));
    const b = (await collect(ds, { preprocess: FMNIST, batchSize: 2000 }))[0]!;
    assert.deepEqual([...b.labels], [...raw.subarray(8)]);
  });

  test('batches: normalized pixels equal (p/255 − mean)/std computed here; ragged last batch; limit', async () => {
    const ds = await resolveDataset('fmnist');
    const pixels = gunzipSync(readFileSync(asset('t10k-images-idx3-ubyte.gz'))).subarray(16);
    const batches = await collect(ds, { preprocess: FMNIST, batchSize: 300, limit: 1000 });
    assert.deepEqual(batches.map((b) => b.images.shape[0]), [300, 300, 300, 100]);
    assert.deepEqual(batches[0]!.images.shape, [300, 1, 28, 28]);
    assert.deepEqual(batches.map((b) => b.indices[0]), [0, 300, 600, 900]);
    let nonzero = 0;
    for (const b of batches) {
      for (let i = 0; i < b.images.size; i++) {
        const p = pixels[b.indices[0]! * 784 + i]!;
        const want = (p / 255 - 0.2860405969887955) / 0.3530242445149223;
        assert.ok(Math.abs(b.images.data[i]! - want) < 1e-6, `pixel ${i}: ${b.images.data[i]} vs ${want}`);
        if (p !== 0) nonzero++;
      }
    }
    assert.ok(nonzero > 100_000, 'the images are not blank');
    const all = await collect(ds, { preprocess: FMNIST, batchSize: 4096 });
    assert.deepEqual(all.map((b) => b.images.shape[0]), [4096, 4096, 1808]);
  });

  test('a chosen subset of images: indices and sampleIndices', async () => {
    const ds = (await resolveDataset('fmnist')) as IdxDataset;
    const pixels = gunzipSync(readFileSync(asset('t10k-images-idx3-ubyte.gz'))).subarray(16);
    const [b] = await collect(ds, { preprocess: FMNIST, indices: [9999, 0, 4321] });
    assert.deepEqual([...b!.indices], [9999, 0, 4321]);
    assert.deepEqual([...b!.labels], [ds.label(9999), ds.label(0), ds.label(4321)]);
    for (const [k, index] of [9999, 0, 4321].entries()) {
      for (const j of [0, 300, 500, 783]) {
        assert.ok(Math.abs(b!.images.data[k * 784 + j]! - (pixels[index * 784 + j]! / 255 - FMNIST.mean[0]!) / FMNIST.std[0]!) < 1e-6);
      }
    }
    const s = sampleIndices(2000, 256, 7);
    assert.equal(s.length, 256);
    assert.equal(new Set(s).size, 256);
    assert.ok(s.every((v, i) => v >= 0 && v < 2000 && (i === 0 || v > s[i - 1]!)));
    assert.deepEqual(sampleIndices(2000, 256, 7), s);
    assert.notDeepEqual(sampleIndices(2000, 256, 8), s);
    assert.ok(s[255]! > 1500 && s[0]! < 100, 'spread over the whole range');
    const sub = await collect(ds, { preprocess: FMNIST, indices: s, batchSize: 100, limit: 250 });
    assert.deepEqual(sub.map((x) => x.labels.length), [100, 100, 50]);
    assert.throws(() => ds.batches({ preprocess: FMNIST, indices: [0, 10000] }), /indices\[1\] = 10000 is not an image index in \[0, 10000\)/);
  });

  test('the model metadata of vim-fmnist gives this preprocessing', async () => {
    const meta = { normalize: '{"mean": [0.2860405969887955], "std": [0.3530242445149223]}', dataset: 'fmnist' };
    const p = preprocessFromModel({ img_size: 28, in_chans: 1 }, meta);
    assert.deepEqual(p, FMNIST);
    const file = join(root, '..', 'shared', 'fixtures', 'vim-fmnist.safetensors');
    if (!existsSync(file)) return; // the shared fixtures are optional
    const buf = readFileSync(file);
    const header = JSON.parse(buf.subarray(8, 8 + Number(buf.readBigUInt64LE(0))).toString()) as { __metadata__: Record<string, string> };
    const cfg = JSON.parse(header.__metadata__.config!) as { img_size: number; in_chans: number };
    assert.deepEqual(preprocessFromModel(cfg, header.__metadata__, file), FMNIST);
  });

  test('an idx image saved as PNG preprocesses to the same tensor (the server path)', async () => {
    const pixels = gunzipSync(readFileSync(asset('t10k-images-idx3-ubyte.gz'))).subarray(16);
    const [b] = await collect(await resolveDataset('fmnist'), { preprocess: FMNIST, batchSize: 3, limit: 3 });
    for (let i = 0; i < 3; i++) {
      const png = await encode(pixels.subarray(i * 784, (i + 1) * 784), 28, 28, 1, 'png');
      const t = await preprocessImageBuffer(png, FMNIST);
      assert.deepEqual(t.shape, [1, 28, 28]);
      assert.deepEqual(t.data, b!.images.data.subarray(i * 784, (i + 1) * 784));
    }
  });

  test('idx data for a model of another size or channel count: error naming the file', async () => {
    const ds = await resolveDataset('fmnist');
    const rgb224 = preprocessFromModel({ img_size: 224, in_chans: 3 });
    assert.throws(() => ds.batches({ preprocess: rgb224 }), (e: unknown) =>
      e instanceof DataError && e.message.includes('t10k-images-idx3-ubyte.gz') && /28×28 grayscale.*224×224 with 3 channels/.test(e.message));
    const gray32 = makePreprocess({ channels: 1, size: 32, mean: [0.5], std: [0.5] });
    assert.throws(() => ds.checkPreprocess(gray32), DataError);
  });
});

describe('idx files: raw, gzip and bad data', () => {
  let dir = '';
  // 5 images of 3×2 with distinct pixels, labels 0..4.
  const body = Uint8Array.from({ length: 30 }, (_, i) => (i * 37) % 256);
  const images = idx(3, [5, 3, 2], body);
  const labels = idx(1, [5], Uint8Array.from([4, 0, 3, 1, 2]));
  const tiny = makePreprocess({ channels: 1, size: 3, resize: 3, mean: [0], std: [1] });

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'ptq4vm-idx-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  async function pair(name: string, img: Uint8Array, lab: Uint8Array | undefined, gz = false): Promise<string> {
    const imagesPath = join(dir, `${name}-images-idx3-ubyte${gz ? '.gz' : ''}`);
    await writeFile(imagesPath, gz ? gzipSync(img) : img);
    if (lab) await writeFile(join(dir, `${name}-labels-idx1-ubyte${gz ? '.gz' : ''}`), gz ? gzipSync(lab) : lab);
    return imagesPath;
  }

  test('raw and gzip files read the same; the shipped file read raw matches', async () => {
    const square = idx(3, [5, 2, 3], body);
    const raw = await resolveDataset(await pair('raw', square, labels));
    const gz = await resolveDataset(await pair('gz', square, labels, true));
    assert.equal(raw.length, 5);
    assert.deepEqual([...(raw as IdxDataset).classNames], ['0', '1', '2', '3', '4']);
    // Non-square images cannot feed a square model: checked, and named.
    assert.throws(() => raw.batches({ preprocess: tiny }), /2×3 grayscale/);
    assert.equal((raw as IdxDataset).label(0), 4);
    assert.equal((gz as IdxDataset).label(2), 3);

    const shipped = join(dir, 'fm-images-idx3-ubyte');
    await writeFile(shipped, gunzipSync(readFileSync(asset('t10k-images-idx3-ubyte.gz'))));
    await copyFile(asset('t10k-labels-idx1-ubyte.gz'), join(dir, 'fm-labels-idx1-ubyte.gz')); // labels stay gzip
    const a = (await collect(await resolveDataset(shipped), { preprocess: FMNIST, batchSize: 64, limit: 64 }))[0]!;
    const b = (await collect(await resolveDataset('fmnist'), { preprocess: FMNIST, batchSize: 64, limit: 64 }))[0]!;
    assert.deepEqual(a.images.data, b.images.data);
    assert.deepEqual(a.labels, b.labels);
  });

  test('square tiny set: pixel values and labels per batch', async () => {
    const sq = idx(3, [5, 3, 3], Uint8Array.from({ length: 45 }, (_, i) => (i * 53 + 7) % 256));
    const ds = await resolveDataset(await pair('sq', sq, labels, true));
    const batches = await collect(ds, { preprocess: tiny, batchSize: 2, prefetch: 0 });
    assert.deepEqual(batches.map((b) => [...b.labels]), [[4, 0], [3, 1], [2]]);
    assert.ok(Math.abs(batches[1]!.images.data[0]! - ((2 * 9 * 53 + 7) % 256) / 255) < 1e-7);
  });

  test('missing labels file', async () => {
    const p = await pair('nolabels', images, undefined);
    await rejectsData(resolveDataset(p), p, /missing labels file .*nolabels-labels-idx1-ubyte/);
  });

  test('label count differs from image count', async () => {
    const p = await pair('count', images, idx(1, [4], Uint8Array.from([0, 1, 2, 3])));
    await rejectsData(resolveDataset(p), p, /4 labels in .* for 5 images/);
  });

  test('bad magic, bad dimensions, truncated and trailing data', async () => {
    const badMagic = await pair('magic', idx(3, [5, 3, 2], body, 0x0d), labels);
    await rejectsData(resolveDataset(badMagic), badMagic, /not an idx images file: magic 0x00000d03/);
    const rank2 = await pair('rank', idx(2, [5, 6], body), labels);
    await rejectsData(resolveDataset(rank2), rank2, /magic 0x00000802, expected 0x00000803/);
    const zero = await pair('zero', idx(3, [5, 0, 2], new Uint8Array(0)), labels);
    await rejectsData(resolveDataset(zero), zero, /zero dimension/);
    const short = await pair('short', idx(3, [5, 3, 2], body.subarray(0, 29)), labels);
    await rejectsData(resolveDataset(short), short, /truncated: dimensions \[5, 3, 2\] need 46 bytes, found 45/);
    const long = await pair('long', idx(3, [5, 3, 2], Uint8Array.from([...body, 1])), labels);
    await rejectsData(resolveDataset(long), long, /trailing bytes/);
    const tooShort = await pair('header', Buffer.from([0, 0, 8, 3, 0]), labels);
    await rejectsData(resolveDataset(tooShort), tooShort, /too short/);
    const badLabels = join(dir, 'badlab-labels-idx1-ubyte');
    await pair('badlab', images, idx(3, [5, 1, 1], Uint8Array.from([0, 1, 2, 3, 4])));
    await rejectsData(resolveDataset(join(dir, 'badlab-images-idx3-ubyte')), badLabels, /not an idx labels file/);
  });

  test('truncated gzip', async () => {
    const gz = gzipSync(images);
    const p = join(dir, 'trunc-images-idx3-ubyte.gz');
    await writeFile(p, gz.subarray(0, gz.length - 12));
    await writeFile(join(dir, 'trunc-labels-idx1-ubyte.gz'), gzipSync(labels));
    await rejectsData(resolveDataset(p), p, /truncated gzip data/);
  });

  test('unknown names and odd file names', async () => {
    await rejectsData(resolveDataset(join(dir, 'nope')), join(dir, 'nope'), /no such file or folder.*fmnist, fmnist-train/);
    await rejectsData(resolveDataset('fmnist-test'), 'fmnist-test', /not a built-in data set/);
    const odd = join(dir, 'pictures.bin');
    await writeFile(odd, images);
    await rejectsData(resolveDataset(odd), odd, /must contain "images-idx3"/);
  });
});
