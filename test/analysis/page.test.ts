import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { test } from 'node:test';
import sharp from 'sharp';
import type { LinearAnalysis, ModelAnalysis } from '../../lib/analysis/analyze.js';
import { observe } from '../../lib/analysis/observations.js';
import { PIXEL_RATIO } from '../../lib/analysis/render.js';
import { writeReport } from '../../lib/analysis/report.js';
import { channelAbsMax, histogram, tokenStats } from '../../lib/analysis/stats.js';
import { VIM_LINEARS } from '../../lib/models/vim/model.js';
import { findBrowser, loadPage } from './headless-browser.js';
import { gaussian, rng } from './tiny-vim.js';

/** A report's analysis built from random activations (no model, no native code): the page test only needs plots. */
function syntheticAnalysis(): ModelAnalysis {
  const [N, L, cls] = [3, 17, 8];
  const normal = gaussian(rng(21));
  const linears: LinearAnalysis[] = [];
  for (const block of [0, 2]) {
    for (const linear of ['in_proj', 'out_proj'] as const) {
      const C = linear === 'in_proj' ? 9 : 14;
      const x = Float32Array.from({ length: N * L * C }, (_, i) => normal() * (i % C === 4 ? 25 : 1) + (Math.floor(i / C) % L === cls ? 5 : 0));
      const tokens = tokenStats(x, N * L, C, L);
      const absMax = channelAbsMax(x, N * L, C);
      const sigma = absMax.map((a) => Math.sqrt(a));
      const hist = histogram(x, 40);
      linears.push({
        block, linear, site: `layers.${block}.mixer.${linear}`, images: N, seqLen: L, clsPos: cls, channels: C,
        tokens, channelAbsMax: absMax, smoothing: [{ label: 'SmoothQuant σ (α = 0.5)', sigma }], histogram: hist,
        errors: ['RTN per-tensor', 'per-token dynamic', 'PTS', 'PTS+σ', 'JLSS'].map((label, k) => ({ method: label, label, mse: 10 ** -(k + 1), relativeMse: 10 ** -(k + 2), cosine: 1 - 10 ** -(k + 2) })),
        observations: observe(tokens, cls, absMax, [{ label: 'σ', absMax: absMax.map((a, j) => a / sigma[j]!) }], hist),
      });
    }
  }
  return { images: N, seqLen: L, clsPos: cls, depth: 3, wbits: 4, abits: 4, alpha: 0.5, blocks: [0, 2], layers: ['in_proj', 'out_proj'], calibratedLabel: 'JLSS', linears, seconds: 0 };
}

test('index.html opens in a headless browser with no network and every image loads', { timeout: 120000 }, async (t) => {
  const browser = findBrowser();
  if (!browser) {
    const msg = 'NO HEADLESS BROWSER FOUND (chromium, google-chrome; or set PTQ4VM_BROWSER): the report page was NOT checked in a browser';
    process.stderr.write(`\n*** SKIPPED: ${msg} ***\n\n`);
    return t.skip(msg);
  }
  const dir = mkdtempSync(join(tmpdir(), 'ptq4vm-report-'));
  try {
    const analysis = syntheticAnalysis();
    const result = await writeReport(dir, analysis, {
      title: 'page test <&> report', model: 'synthetic', data: 'random',
      calibration: { method: 'ptq4vm', blocks: [0, 1, 2].map((b) => ({ block: b, lossBefore: 0.1 / (b + 1), lossAfter: 0.01 / (b + 1), lossCurve: Array.from({ length: 10 }, (_, s) => 0.1 / (b + 1) / (s + 1)) })) },
    });
    // 2 blocks × (errors + 2 linears × 3) + JLSS curves + block losses
    assert.equal(result.plots.length, 2 * (1 + 2 * 3) + 2);
    const pngs = readdirSync(dir).filter((f) => f.endsWith('.png')).sort();
    assert.equal(pngs.length, result.plots.length);
    for (const p of result.plots) assert.ok(readdirSync(dir).includes(`${p.stem}.json`), `${p.stem}.json beside its plot`);
    const html = readFileSync(join(dir, 'index.html'), 'utf8');
    assert.doesNotMatch(html, /(src|href)\s*=\s*"(https?:)?\/\//i, 'no external links or resources');
    assert.doesNotMatch(html, /<script/i, 'no scripts');
    assert.match(html, /page test &lt;&amp;&gt; report/, 'the title is escaped');

    const page = await loadPage(browser, join(dir, 'index.html'));
    assert.equal(page.title, 'page test <&> report');
    const srcs = page.images.map((i) => decodeURIComponent(new URL(i.src).pathname.split('/').pop()!)).sort();
    assert.deepEqual(srcs, pngs, 'the page shows every PNG of the folder, once');
    for (const img of page.images) {
      assert.ok(img.complete && img.naturalWidth > 0 && img.naturalHeight > 0, `image failed to load: ${img.src}`);
      const stem = decodeURIComponent(new URL(img.src).pathname.split('/').pop()!).replace(/\.png$/, '');
      const plot = result.plots.find((p) => p.stem === stem)!;
      const meta = await sharp(join(dir, `${stem}.png`)).metadata();
      assert.equal(img.naturalWidth, meta.width, `${stem}: decoded width`);
      assert.equal(Math.round(meta.width! / PIXEL_RATIO), plot.width);
    }
    const base = pathToFileURL(dir).href;
    for (const url of page.requests) assert.ok(url.startsWith(base + '/'), `the page requested ${url}, outside its folder`);
    assert.ok(page.requests.length >= pngs.length + 1, `requests seen: ${page.requests.length}`);

    // The check can fail: with one PNG gone, exactly that image is reported broken.
    rmSync(join(dir, pngs[3]!));
    const broken = (await loadPage(browser, join(dir, 'index.html'))).images.filter((i) => !(i.complete && i.naturalWidth > 0));
    assert.deepEqual(broken.map((i) => decodeURIComponent(new URL(i.src).pathname.split('/').pop()!)), [pngs[3]]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

/** Pixels of a PNG within ±12 of an RGB colour on every channel. */
async function countColor(file: string, hex: string): Promise<{ count: number; total: number }> {
  const want = [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16));
  const { data, info } = await sharp(file).removeAlpha().raw().toBuffer({ resolveWithObject: true });
  let count = 0;
  for (let i = 0; i < data.length; i += info.channels) {
    if (Math.abs(data[i]! - want[0]!) <= 12 && Math.abs(data[i + 1]! - want[1]!) <= 12 && Math.abs(data[i + 2]! - want[2]!) <= 12) count++;
  }
  return { count, total: info.width * info.height };
}

test('every plot is a real picture: not blank, sized as recorded', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'ptq4vm-report-'));
  try {
    const result = await writeReport(dir, syntheticAnalysis(), { title: 't', model: 'm', data: 'd' });
    assert.equal(result.plots.length, 2 * (1 + 2 * 3), 'no calibration plots without a calibration');
    for (const p of result.plots) {
      const img = sharp(join(dir, `${p.stem}.png`));
      const [meta, stats] = await Promise.all([img.metadata(), img.stats()]);
      assert.equal(meta.format, 'png');
      assert.ok(p.width >= 300 && p.height >= 150, `${p.stem}: ${p.width}×${p.height}`);
      // Ink on a white background: some channel varies a lot and the picture is not all white.
      assert.ok(stats.channels.slice(0, 3).some((c) => c.stdev > 10), `${p.stem} looks blank`);
      assert.ok(stats.channels[0]!.min < 128, `${p.stem} has no dark pixels (no text or axes)`);
    }
    // The marks themselves are drawn (not just axes and legends): bars, bands and lines cover area.
    for (const p of result.plots) {
      const file = join(dir, `${p.stem}.png`);
      const need: [string, number][] = {
        errors: [['#4c78a8', 3000], ['#f58518', 3000], ['#e45756', 3000], ['#72b7b2', 3000], ['#54a24b', 3000]] as [string, number][],
        histogram: [['#54a24b', 0.05]] as [string, number][],
        channels: [['#4c78a8', 2000]] as [string, number][],
        tokens: [['#f58518', 1500], ['#d62728', 300]] as [string, number][],
      }[p.kind as 'errors'] ?? [];
      for (const [color, min] of need) {
        const { count, total } = await countColor(file, color);
        const threshold = min < 1 ? min * total : min;
        assert.ok(count >= threshold, `${p.stem}: ${count} pixels of ${color}, expected ≥ ${Math.round(threshold)}`);
      }
    }
    assert.ok(VIM_LINEARS.length === 6);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
