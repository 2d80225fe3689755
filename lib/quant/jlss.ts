import type { VimLayer, VimLinearName, VimModel } from '../models/vim/model.js';

export interface JlssInput {
  model: VimModel;
  layer: VimLayer;
  /** The block's normalized input on the quantized stream, [rows, D]. */
  normed: Float32Array;
  /** The FP mixer output on the FP stream, [rows, D]. */
  target: Float32Array;
  rows: number;
  trainable: readonly VimLinearName[];
  steps: number;
  lrSmooth: number;
  lrStep: number;
  weightDecay: number;
  clipNorm: number;
  onStep?: (step: number, loss: number) => void;
}

export interface JlssResult {
  /** Loss before each step. */
  losses: number[];
}

export function runJlss(_input: JlssInput): JlssResult {
  throw new Error('JLSS is not available yet: use --method ptq4vm-nojlss');
}
