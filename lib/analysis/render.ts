import sharp from 'sharp';
import { parse, View } from 'vega';
import { compile, type TopLevelSpec } from 'vega-lite';

/** Pixels per CSS pixel of the PNGs (crisp on high-density screens; the page shows them at 1×). */
export const PIXEL_RATIO = 2;

export interface RenderedChart {
  png: Buffer;
  /** Size in CSS pixels (the PNG has PIXEL_RATIO times as many). */
  width: number;
  height: number;
}

/**
 * Vega-Lite → Vega → SVG (headless View, no canvas) → PNG rasterised by sharp (librsvg). The
 * specs carry their data inline, so nothing is loaded from anywhere.
 */
export async function renderChart(spec: TopLevelSpec): Promise<RenderedChart> {
  const vegaSpec = compile(spec).spec;
  const view = new View(parse(vegaSpec), { renderer: 'none', logLevel: 0 });
  let svg: string;
  try {
    svg = await view.toSVG();
  } finally {
    view.finalize();
  }
  const img = sharp(Buffer.from(svg), { density: 72 * PIXEL_RATIO });
  const { data, info } = await img.png().toBuffer({ resolveWithObject: true });
  return { png: data, width: Math.round(info.width / PIXEL_RATIO), height: Math.round(info.height / PIXEL_RATIO) };
}
