import type { ObservationSummary } from './observations.js';

/**
 * index.html of a report: one self-contained page (inline CSS, no scripts, no external
 * resources) that links only to the PNG and JSON files beside it.
 */

export interface PageFigure {
  src: string;
  json: string;
  width: number;
  height: number;
  caption: string;
}

export interface PageSection {
  id: string;
  title: string;
  figures: PageFigure[];
  rows: { title: string; figures: PageFigure[]; table: string[][] }[];
}

export interface PageModel {
  title: string;
  facts: [string, string][];
  observations: ObservationSummary[];
  methods: [string, string][];
  errorDefinition: string;
  sections: PageSection[];
}

export function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);
}

const CSS = `
body { font-family: "DejaVu Sans", Helvetica, Arial, sans-serif; margin: 24px; color: #222; max-width: 1500px; }
h1 { font-size: 22px; } h2 { font-size: 18px; border-bottom: 1px solid #ccc; padding-bottom: 4px; margin-top: 36px; }
h3 { font-size: 15px; margin: 22px 0 6px; }
table { border-collapse: collapse; font-size: 13px; margin: 6px 0 12px; }
td, th { border: 1px solid #ddd; padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: #f4f4f4; }
.num { text-align: right; font-variant-numeric: tabular-nums; }
.row { display: flex; flex-wrap: wrap; gap: 16px; align-items: flex-start; }
figure { margin: 0; }
figure img { border: 1px solid #eee; max-width: 100%; height: auto; }
figcaption { font-size: 12px; color: #555; }
.holds { color: #1a7f37; font-weight: bold; } .fails { color: #b42318; font-weight: bold; }
.note { font-size: 13px; color: #444; }
nav a { margin-right: 12px; }
`;

function figure(f: PageFigure): string {
  return `<figure><img src="${escapeHtml(f.src)}" width="${f.width}" height="${f.height}" alt="${escapeHtml(f.caption)}">` +
    `<figcaption>${escapeHtml(f.caption)} · <a href="${escapeHtml(f.json)}">numbers (JSON)</a></figcaption></figure>`;
}

function observationsTable(obs: ObservationSummary[]): string {
  const names: Record<string, string> = {
    tokenwise: 'token-wise variation', clsToken: 'special class token', channelOutliers: 'channel-wise outliers', longTail: 'long-tailed activations',
  };
  const rows = obs.map((o) => {
    const verdict = o.holds === 0 ? `<span class="fails">does not hold</span>` : o.holds === o.of ? `<span class="holds">holds everywhere</span>` : `<span class="holds">holds in part</span>`;
    const list = (sites: string[]) => sites.length ? sites.map((s) => escapeHtml(s.replace(/^layers\./, '').replace('.mixer.', ' '))).join(', ') : '—';
    return `<tr><td>${names[o.key] ?? o.key}</td><td>${verdict}</td><td class="num">${o.holds} / ${o.of}</td><td>${escapeHtml(o.rule)}</td><td>${list(o.where)}</td><td>${list(o.whereNot)}</td></tr>`;
  });
  return `<table><tr><th>observation (PTQ4VM paper)</th><th>verdict</th><th>inputs</th><th>rule</th><th>holds at</th><th>does not hold at</th></tr>${rows.join('')}</table>`;
}

export function pageHtml(p: PageModel): string {
  const facts = p.facts.map(([k, v]) => `<tr><th>${escapeHtml(k)}</th><td>${escapeHtml(v)}</td></tr>`).join('');
  const methods = p.methods.map(([k, v]) => `<tr><th>${escapeHtml(k)}</th><td>${escapeHtml(v)}</td></tr>`).join('');
  const nav = p.sections.map((s) => `<a href="#${escapeHtml(s.id)}">${escapeHtml(s.title)}</a>`).join('');
  const sections = p.sections.map((s) => {
    const rows = s.rows.map((r) => {
      const table = `<table><tr><th>method</th><th>MSE</th><th>relative MSE</th><th>cosine</th></tr>${r.table.map(([m, ...v]) => `<tr><td>${escapeHtml(m!)}</td>${v.map((x) => `<td class="num">${escapeHtml(x)}</td>`).join('')}</tr>`).join('')}</table>`;
      return `<h3>${escapeHtml(r.title)}</h3>${table}<div class="row">${r.figures.map(figure).join('')}</div>`;
    }).join('');
    return `<section id="${escapeHtml(s.id)}"><h2>${escapeHtml(s.title)}</h2><div class="row">${s.figures.map(figure).join('')}</div>${rows}</section>`;
  }).join('\n');
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escapeHtml(p.title)}</title>
<style>${CSS}</style>
</head>
<body>
<h1>${escapeHtml(p.title)}</h1>
<table>${facts}</table>
<h2>Observations</h2>
<p class="note">Each linear input is tested with the rule shown; the plots below show the data the verdicts come from.</p>
${observationsTable(p.observations)}
<h2>Methods in the error charts</h2>
<p class="note">${escapeHtml(p.errorDefinition)}</p>
<table>${methods}</table>
<nav>${nav}</nav>
${sections}
</body>
</html>
`;
}
