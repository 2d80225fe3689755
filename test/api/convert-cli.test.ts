// `ptq4vm convert`: the fixture checkpoints (Vim, and the other backbones saved in the official
// layout) convert and run; bad input fails cleanly.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { packageRoot } from '../../lib/backend/addon.js';
import { readSafetensors } from '../../lib/io/safetensors.js';
import { loadAnyModel, loadVimModel } from '../../lib/models/load.js';
import { VimModel } from '../../lib/models/vim/model.js';
import { InferenceEngine } from '../../lib/runtime/engine.js';
import type { Tensor } from '../../lib/tensor/tensor.js';
import { fixture, NO_FIXTURES, relativeError } from '../helpers.js';
import { writeOfficialPth } from '../models/backbone-pth.js';

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

function cli(args: string[]): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [join(packageRoot(), 'bin', 'ptq4vm.js'), ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

const pth = fixture('vim-ti-d2.pth');
const ref = fixture('vim-ti-d2.ref.safetensors');

describe('ptq4vm convert', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'ptq4vm-convert-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  test('the official-layout fixture converts, loads, and runs to the reference logits', { skip: !pth || !ref ? NO_FIXTURES : false }, async () => {
    const out = join(dir, 'vim-ti-d2.safetensors');
    const r = await cli(['convert', pth!, out, '--json']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stderr, '');
    const summary = JSON.parse(r.stdout.trim().split('\n').at(-1)!) as { key: string; config: Record<string, number>; tensors: number; parameters: number };
    assert.equal(summary.key, 'model');
    assert.equal(summary.config.embed_dim, 192);
    assert.equal(summary.config.depth, 2);
    assert.equal(summary.config.img_size, 224);
    assert.equal(summary.config.num_classes, 1000);
    const model = await loadVimModel(out);
    assert.equal(model.config.embed_dim, 192);
    assert.equal(model.metadata.format, 'ptq4vm-fp/1');
    assert.equal(model.metadata.key, 'model');

    const refFile = await readSafetensors(ref!);
    const input = refFile.tensors.get('input')!.toFloat32();
    const want = refFile.tensors.get('logits')!.toFloat32();
    const engine = await InferenceEngine.start({ model: out, precision: 'fp32' });
    try {
      const { logits } = await engine.forward(input);
      assert.deepEqual(logits.shape, want.shape);
      const err = relativeError(logits.data, want.data);
      assert.ok(err < 1e-4, `relative error ${err}`);
    } finally {
      await engine.dispose();
    }
  });

  test('--key model_ema and --img-size', { skip: !pth ? NO_FIXTURES : false }, async () => {
    const out = join(dir, 'ema.safetensors');
    const r = await cli(['convert', pth!, out, '--key', 'model_ema', '--img-size', '224', '--json']);
    assert.equal(r.code, 0, r.stderr);
    const model = await loadVimModel(out);
    assert.equal(model.metadata.key, 'model_ema');
    assert.equal(model.config.img_size, 224);
    // A 14×14 grid of 16-pixel patches (stride 16) cannot come from 448-pixel images.
    const wrongSize = await cli(['convert', pth!, join(dir, 'y.safetensors'), '--img-size', '448']);
    assert.equal(wrongSize.code, 1);
    assert.match(wrongSize.stderr, /^ptq4vm: .*448/);
    const missing = await cli(['convert', pth!, join(dir, 'x.safetensors'), '--key', 'optimizer_state']);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /^ptq4vm: .*no "optimizer_state" entry/);
  });

  test('bad input: one-line error, exit 1, no output file and no temporary left', { skip: !pth ? NO_FIXTURES : false }, async () => {
    const good = await readFile(pth!);
    const bad: Array<[string, Uint8Array]> = [
      ['random.pth', Uint8Array.from({ length: 4096 }, (_, i) => (i * 2654435761) >>> 24)],
      ['truncated.pth', good.subarray(0, Math.floor(good.length * 0.6))],
      ['empty.pth', new Uint8Array(0)],
    ];
    for (const [name, bytes] of bad) {
      const inPath = join(dir, name);
      await writeFile(inPath, bytes);
      const out = join(dir, `${name}.safetensors`);
      const r = await cli(['convert', inPath, out]);
      assert.equal(r.code, 1, `${name}: ${r.stderr}`);
      assert.equal(r.stderr.split('\n').filter(Boolean).length, 1, `${name}: ${r.stderr}`);
      assert.match(r.stderr, new RegExp(`^ptq4vm: .*${name}`));
      assert.equal(r.stdout, '');
    }
    const notThere = await cli(['convert', join(dir, 'nope.pth'), join(dir, 'nope.safetensors')]);
    assert.equal(notThere.code, 1);
    const left = (await readdir(dir)).filter((f) => f.endsWith('.safetensors') && !['vim-ti-d2.safetensors', 'ema.safetensors'].includes(f) || f.endsWith('.tmp'));
    assert.deepEqual(left, []);
  });

  test('usage errors exit 2', async () => {
    for (const args of [['convert'], ['convert', 'a.pth'], ['convert', 'a.pth', 'b.st', 'c'], ['convert', 'a.pth', 'b.st', '--bogus'],
      ['convert', 'a.pth', 'b.st', '--img-size', 'big'], ['convert', 'a.pth', 'a.pth']]) {
      const r = await cli(args);
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, /^ptq4vm: /);
    }
    const help = await cli(['convert', '--help']);
    assert.equal(help.code, 0);
    assert.match(help.stdout, /Usage: ptq4vm convert IN\.pth OUT\.safetensors/);
  });
});

/** max|a − b| / max|b|: the backbones' acceptance measure. */
function maxRelative(a: Float32Array, b: Float32Array): number {
  assert.equal(a.length, b.length);
  let d = 0;
  let m = 0;
  for (let i = 0; i < a.length; i++) {
    d = Math.max(d, Math.abs(a[i]! - b[i]!));
    m = Math.max(m, Math.abs(b[i]!));
  }
  return d / m;
}

/** Logits of `model` on the reference input of `refPath`, through the inference worker. */
async function runRef(model: string, refPath: string): Promise<{ got: Float32Array; want: Float32Array }> {
  const ref = await readSafetensors(refPath);
  const engine = await InferenceEngine.start({ model });
  try {
    const { logits } = await engine.forward((ref.tensors.get('input') as Tensor).toFloat32());
    return { got: logits.data, want: (ref.tensors.get('logits') as Tensor).toFloat32().data };
  } finally {
    await engine.dispose();
  }
}

describe('ptq4vm convert: LocalVim, VMamba, LocalVMamba checkpoints', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'ptq4vm-convert-bb-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  /** The fixture saved as an official .pth (no config inside); its directions as the fixture's config lists them. */
  async function officialPth(name: string): Promise<{ pth: string; ref: string; directions: string[][] | undefined } | null> {
    const model = fixture(`backbones/${name}.safetensors`);
    const ref = fixture(`backbones/${name}.ref.safetensors`);
    if (!model || !ref) return null;
    const file = await readSafetensors(model);
    const pth = join(dir, `${name}.pth`);
    writeOfficialPth(pth, file.tensors);
    return { pth, ref, directions: (JSON.parse(file.metadata.config!) as { directions?: string[][] }).directions };
  }

  test('LocalVMamba: directions are required, given with --directions; the file runs to the reference logits', async (t) => {
    const f = await officialPth('local_vssm_small');
    if (!f) return t.skip(NO_FIXTURES);
    const out = join(dir, 'local_vssm_small.safetensors');
    const missing = await cli(['convert', f.pth, out]);
    assert.equal(missing.code, 1, missing.stderr);
    assert.equal(missing.stderr.split('\n').filter(Boolean).length, 1, missing.stderr);
    assert.match(missing.stderr, /^ptq4vm: .*local_vssm_small\.pth.*scan directions .* not recorded; give them/);
    assert.equal((await readdir(dir)).filter((n) => n.startsWith('local_vssm_small.safetensors')).length, 0, 'no output after a failure');

    const r = await cli(['convert', f.pth, out, '--directions', JSON.stringify(f.directions), '--json']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stderr, '');
    assert.match(r.stdout, /^.*local_vssm_small\.safetensors: LocalVMamba, dims 24\/48\/96\/192, depths 1\/1\/2\/1, .*v-scan reverse inverse; \d+ tensors, [\d,]+ parameters, from state dict "model"\n/);
    const summary = JSON.parse(r.stdout.trim().split('\n').at(-1)!) as { family: string; key: string; config: { directions: string[][]; v_reverse: string; img_size: number } };
    assert.equal(summary.family, 'localvmamba');
    assert.equal(summary.key, 'model');
    assert.deepEqual(summary.config.directions, f.directions);
    assert.equal(summary.config.v_reverse, 'inverse');
    assert.equal(summary.config.img_size, 224, 'the nominal size defaults to 224');
    const { got, want } = await runRef(out, f.ref);
    const err = maxRelative(got, want);
    assert.ok(err < 1e-5, `max|Δ|/max|ref| ${err}`);

    // --v-reverse official is recorded; on the fixture's square grids it gives the same logits.
    const official = join(dir, 'local_vssm_small.official.safetensors');
    const o = await cli(['convert', f.pth, official, '--directions', JSON.stringify(f.directions), '--v-reverse', 'official', '--img-size', '56']);
    assert.equal(o.code, 0, o.stderr);
    assert.match(o.stdout, /v-scan reverse official/);
    const m = await loadAnyModel(official);
    assert.ok(!(m instanceof VimModel) && m.arch === 'localvmamba');
    assert.equal(m.config.v_reverse, 'official');
    assert.equal(m.config.img_size, 56);
    assert.deepEqual((await runRef(official, f.ref)).got, got);

    // Directions that do not fit the tensors: one line naming the block.
    const wrong = f.directions!.map((d, i) => (i === 1 ? d.slice(0, 2) : d));
    const bad = await cli(['convert', f.pth, join(dir, 'x.safetensors'), '--directions', JSON.stringify(wrong)]);
    assert.equal(bad.code, 1, bad.stderr);
    assert.match(bad.stderr, /^ptq4vm: .*4 scan directions in its tensors, the config lists 2/);
  });

  test('LocalVim (middle class token): directions as one string per layer', async (t) => {
    const f = await officialPth('local_vim_small_midcls_112pad');
    if (!f) return t.skip(NO_FIXTURES);
    const out = join(dir, 'local_vim_midcls.safetensors');
    const r = await cli(['convert', f.pth, out, '--directions', JSON.stringify(f.directions!.map((d) => d.join(' '))), '--json']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /: LocalVim \(middle class token\), 2 layers, embed 64, .*3×112×112 \(patch 16\)/);
    const summary = JSON.parse(r.stdout.trim().split('\n').at(-1)!) as { family: string; config: { img_size: number; cls_token: boolean } };
    assert.equal(summary.family, 'localvim');
    assert.equal(summary.config.img_size, 112, 'from the pos_embed grid');
    assert.equal(summary.config.cls_token, true);
    const { got, want } = await runRef(out, f.ref);
    assert.ok(maxRelative(got, want) < 1e-5, `max|Δ|/max|ref| ${maxRelative(got, want)}`);
    // LocalVim's image size must fit pos_embed (7×7 patches of 16 pixels).
    const wrongSize = await cli(['convert', f.pth, join(dir, 'y.safetensors'), '--directions', JSON.stringify(f.directions), '--img-size', '224']);
    assert.equal(wrongSize.code, 1);
    assert.match(wrongSize.stderr, /^ptq4vm: .*image size 224 gives a 14×14 patch grid, pos_embed has 7×7/);
  });

  test('VMamba v2: no directions needed (and none accepted); runs to the reference logits on its 64×80 input', async (t) => {
    const f = await officialPth('vmamba_v2v_small');
    if (!f) return t.skip(NO_FIXTURES);
    const out = join(dir, 'vmamba.safetensors');
    const r = await cli(['convert', f.pth, out, '--json']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /: VMamba v2 \(v05_noz\), dims 32\/64\/128\/256, depths 1\/1\/2\/1, d_state 1, /);
    assert.equal((JSON.parse(r.stdout.trim().split('\n').at(-1)!) as { family: string }).family, 'vmamba');
    const { got, want } = await runRef(out, f.ref);
    assert.ok(maxRelative(got, want) < 1e-5, `max|Δ|/max|ref| ${maxRelative(got, want)}`);
    for (const extra of [['--directions', '[["h","v","h_flip","v_flip"]]'], ['--v-reverse', 'official']]) {
      const e = await cli(['convert', f.pth, join(dir, 'z.safetensors'), ...extra]);
      assert.equal(e.code, 1, `${extra[0]}: ${e.stderr}`);
      assert.match(e.stderr, /^ptq4vm: .*(fixed scan directions|v-scan reverse option is for LocalVim and LocalVMamba)/);
    }
  });

  test('--directions on a Vim checkpoint is refused, not ignored', { skip: !pth ? NO_FIXTURES : false }, async () => {
    const r = await cli(['convert', pth!, join(dir, 'vim.safetensors'), '--directions', '[["h"],["h"]]']);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /^ptq4vm: .*a Vim has fixed scan directions/);
  });

  test('malformed --directions and --v-reverse are usage errors (exit 2)', async () => {
    for (const args of [['--directions', 'h,v'], ['--directions', '[]'], ['--directions', '{"h":1}'], ['--directions', '[["h","q"]]'],
      ['--directions', '[["h"], 3]'], ['--directions', '[""]'], ['--v-reverse', 'sideways']]) {
      const r = await cli(['convert', 'a.pth', 'b.safetensors', ...args]);
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, /^ptq4vm: --(directions|v-reverse)/);
    }
    const help = await cli(['convert', '--help']);
    assert.match(help.stdout, /--directions JSON/);
    assert.match(help.stdout, /--v-reverse MODE/);
  });
});
