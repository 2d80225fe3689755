/**
 * Directional scan orders of LocalMamba (LocalVim, LocalVMamba) and VMamba over an H×W token grid
 * (row-major token index p = r·W + c), as index arrays: a direction is "gather these rows (−1: a
 * zero pad) into a sequence, scan it forward, send step t's output to row scatter[t] (−1: drop)".
 * Exact definitions: ../shared/fixtures/backbones/SPEC.md §1; docs/backbones.md.
 */
import type { TokenOrder } from '../ops.js';

/**
 * How the vertical directions (`v`, `v_flip`) are put back onto the grid. 'inverse' (default):
 * the true inverse of the gather. 'official': LocalMamba's code, which rearranges `(h w) → (w h)`
 * (out[c·H + r] = in[r·W + c]); that equals the inverse only when H = W, so the two agree on
 * every square grid (all ImageNet classifiers) and differ on non-square ones.
 */
export type VReverse = 'inverse' | 'official';

export const V_REVERSE_MODES: readonly VReverse[] = ['inverse', 'official'];

export interface DirectionSpec {
  /** 'h' row-major, 'v' column-major, 'w' K×K windows. */
  kind: 'h' | 'v' | 'w';
  /** Window size for 'w'. */
  k: number;
  flip: boolean;
}

const NAME = /^(h|v|w([1-9][0-9]?))(_flip)?$/;

/** Parses 'h', 'v_flip', 'w7', 'w2_flip', …; throws on anything else. */
export function parseDirection(name: string): DirectionSpec {
  const m = NAME.exec(name);
  if (!m) throw new RangeError(`unknown scan direction ${JSON.stringify(name)} (expected h, v, wK, each optionally with _flip)`);
  const kind = m[1]!.startsWith('w') ? 'w' : (m[1] as 'h' | 'v');
  return { kind, k: kind === 'w' ? Number(m[2]) : 1, flip: m[3] !== undefined };
}

export function isDirectionName(name: unknown): name is string {
  return typeof name === 'string' && NAME.test(name);
}

/** The grid positions a direction reads, in scan order (−1: a window pad). */
export function directionSequence(spec: DirectionSpec, H: number, W: number): Int32Array {
  const L = H * W;
  let seq: Int32Array;
  if (spec.kind === 'h') {
    seq = Int32Array.from({ length: L }, (_, t) => t);
  } else if (spec.kind === 'v') {
    seq = Int32Array.from({ length: L }, (_, t) => (t % H) * W + Math.floor(t / H));
  } else {
    const K = spec.k;
    const Hp = Math.ceil(H / K) * K;
    const Wp = Math.ceil(W / K) * K;
    const Wg = Wp / K;
    seq = new Int32Array(Hp * Wp);
    for (let t = 0; t < seq.length; t++) {
      const g = Math.floor(t / (K * K));
      const r = Math.floor((t % (K * K)) / K);
      const c = t % K;
      const row = Math.floor(g / Wg) * K + r;
      const col = (g % Wg) * K + c;
      seq[t] = row < H && col < W ? row * W + col : -1;
    }
  }
  if (spec.flip) seq.reverse();
  return seq;
}

/** Where the official LocalMamba reverse puts scan step t of `v` / `v_flip` (see VReverse). */
function officialVerticalDestination(t: number, flip: boolean, H: number, W: number): number {
  const s = flip ? H * W - 1 - t : t;
  return (s % W) * H + Math.floor(s / W);
}

export interface ScanOrderOptions {
  vReverse?: VReverse;
  /**
   * Middle class token (LocalVim middle-cls variant): the token stream has H·W + 1 rows with the
   * class token at row clsPos, and every scanned sequence gets it inserted at step clsPos (after
   * flipping and padding); its output goes back to row clsPos.
   */
  clsPos?: number | null;
}

/** The TokenOrder of direction `name` over an H×W grid. */
export function scanOrder(name: string, H: number, W: number, opts: ScanOrderOptions = {}): TokenOrder {
  if (!(Number.isInteger(H) && Number.isInteger(W) && H >= 1 && W >= 1)) throw new RangeError(`invalid grid ${H}×${W}`);
  const spec = parseDirection(name);
  const base = directionSequence(spec, H, W);
  const official = (opts.vReverse ?? 'inverse') === 'official' && spec.kind === 'v';
  const baseScatter = official ? base.map((_, t) => officialVerticalDestination(t, spec.flip, H, W)) : base;
  const clsPos = opts.clsPos ?? null;
  if (clsPos === null) {
    return makeOrder(name, H * W, base, baseScatter);
  }
  const L = H * W;
  if (!(Number.isInteger(clsPos) && clsPos >= 0 && clsPos <= L)) throw new RangeError(`class token position ${clsPos} outside [0, ${L}]`);
  const toStream = (p: number): number => (p < 0 ? -1 : p < clsPos ? p : p + 1);
  const withCls = (seq: Int32Array): Int32Array => {
    const out = new Int32Array(seq.length + 1);
    for (let t = 0; t < out.length; t++) out[t] = t < clsPos ? toStream(seq[t]!) : t === clsPos ? clsPos : toStream(seq[t - 1]!);
    return out;
  };
  return makeOrder(name, L + 1, withCls(base), withCls(baseScatter));
}

function makeOrder(name: string, rows: number, gather: Int32Array, scatter: Int32Array): TokenOrder {
  const identity = gather.length === rows && gather.every((v, t) => v === t) && scatter.every((v, t) => v === t);
  return Object.freeze({ name, steps: gather.length, rows, gather, scatter, identity });
}

/** Checks that a direction list names valid directions (used by config parsers). */
export function checkDirections(list: unknown, where: string): string[] {
  if (!Array.isArray(list) || list.length === 0 || !list.every(isDirectionName)) {
    throw new RangeError(`${where}: expected a non-empty list of scan directions (h, v, wK, each optionally with _flip), got ${JSON.stringify(list)}`);
  }
  return [...list];
}
