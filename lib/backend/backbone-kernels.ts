import { addon } from './addon.js';

/**
 * The native kernels of the hierarchical / local-scan backbones (LocalVim, VMamba, LocalVMamba),
 * typed: token reordering (native/include/ptq4vm/token_permute.h), LayerNorm (layer_norm.h),
 * 2-D convolutions (conv2d.h) and pointwise ops (pointwise.h). Synchronous; every length, stride,
 * dimension and index is validated natively (a bad call throws a one-line TypeError/RangeError
 * naming the function and the argument). Matrices are row-major token-major [tokens, channels]
 * with explicit row strides (`ld*`, in elements). Outputs never overlap inputs, except that the
 * pointwise ops, layerNorm and the position ops accept `out` = an input (same array and stride).
 */
export interface BackboneKernels {
  /** out[b·steps + t] = index[t] ≥ 0 ? x[b·srcLen + index[t]] : 0 (a zero pad). */
  gatherTokensF32(B: number, srcLen: number, steps: number, C: number, x: Float32Array, ldx: number,
    index: Int32Array, out: Float32Array, ldo: number): void;
  /**
   * For index[t] ≥ 0: out[b·dstLen + index[t]] = (accumulate ? that : 0) + y[b·steps + t] · gate[b] (per channel;
   * gate null → 1). Steps with index −1 are dropped; non-negative indices must be distinct.
   */
  scatterTokensF32(B: number, steps: number, dstLen: number, C: number, y: Float32Array, ldy: number,
    index: Int32Array, gate: Float32Array | null, accumulate: boolean, out: Float32Array, ldo: number): void;
  /** Swin 2×2 patch merging of x [B, H, W, C] into out [B, ⌈H/2⌉·⌈W/2⌉, 4C] (zero pad for odd sizes). */
  patchMergeF32(B: number, H: number, W: number, C: number, x: Float32Array, out: Float32Array): void;
  /** LayerNorm over D channels per row (biased variance, eps inside the square root); weight/bias may be null. */
  layerNormF32(rows: number, D: number, x: Float32Array, ldx: number, weight: Float32Array | null,
    bias: Float32Array | null, eps: number, out: Float32Array, ldo: number): void;
  /** out[b] = mean over rows t of image b with (select null or select[t] ≥ 0) of LayerNorm(x row): [B, D]. */
  layerNormTokenMeanF32(B: number, L: number, D: number, x: Float32Array, ldx: number, select: Int32Array | null,
    weight: Float32Array | null, bias: Float32Array | null, eps: number, out: Float32Array): void;
  /**
   * Conv2d (square kernel K, stride S, zero padding P) of images [B, Cin, H, W] (channelsFirst) or
   * tokens [B, H·W, Cin] into tokens out [B, Ho·Wo, Cout]; weight [Cout, Cin, K, K].
   */
  conv2dF32(B: number, Cin: number, H: number, W: number, channelsFirst: boolean, x: Float32Array, Cout: number,
    K: number, S: number, P: number, weight: Float32Array, bias: Float32Array | null, out: Float32Array): void;
  /** Depthwise conv2d (odd K, stride 1, same padding) of tokens [B, H·W, C]; weight [C, 1, K, K]; optional SiLU. */
  depthwiseConv2dF32(B: number, H: number, W: number, C: number, x: Float32Array, ldx: number, K: number,
    weight: Float32Array, bias: Float32Array | null, applySilu: boolean, out: Float32Array, ldo: number): void;
  /** out = gelu(x), the exact erf form. */
  geluF32(rows: number, cols: number, x: Float32Array, ldx: number, out: Float32Array, ldo: number): void;
  sigmoidF32(rows: number, cols: number, x: Float32Array, ldx: number, out: Float32Array, ldo: number): void;
  /** out = x · silu(z). */
  mulSiluF32(rows: number, cols: number, x: Float32Array, ldx: number, z: Float32Array, ldz: number,
    out: Float32Array, ldo: number): void;
  addF32(rows: number, cols: number, a: Float32Array, lda: number, b: Float32Array, ldb: number,
    out: Float32Array, ldo: number): void;
  /** out[b, t] = x[b, t] + table[t] over x [B, L, C], table [L, C]. */
  addPositionsF32(B: number, L: number, C: number, x: Float32Array, ldx: number, table: Float32Array,
    out: Float32Array, ldo: number): void;
  /** Rotary embedding of channel pairs by stored tables cos/sin [L, C] (C even). */
  ropeF32(B: number, L: number, C: number, x: Float32Array, ldx: number, cos: Float32Array, sin: Float32Array,
    out: Float32Array, ldo: number): void;
  /** out[b] = mean over the L rows of image b: [B, C]. */
  tokenMeanF32(B: number, L: number, C: number, x: Float32Array, ldx: number, out: Float32Array): void;

  /** Scalar references of the same contracts (double accumulation), for tests. */
  gatherTokensF32Ref: BackboneKernels['gatherTokensF32'];
  scatterTokensF32Ref: BackboneKernels['scatterTokensF32'];
  patchMergeF32Ref: BackboneKernels['patchMergeF32'];
  layerNormF32Ref: BackboneKernels['layerNormF32'];
  layerNormTokenMeanF32Ref: BackboneKernels['layerNormTokenMeanF32'];
  conv2dF32Ref: BackboneKernels['conv2dF32'];
  depthwiseConv2dF32Ref: BackboneKernels['depthwiseConv2dF32'];
  geluF32Ref: BackboneKernels['geluF32'];
  sigmoidF32Ref: BackboneKernels['sigmoidF32'];
  mulSiluF32Ref: BackboneKernels['mulSiluF32'];
  addF32Ref: BackboneKernels['addF32'];
  addPositionsF32Ref: BackboneKernels['addPositionsF32'];
  ropeF32Ref: BackboneKernels['ropeF32'];
  tokenMeanF32Ref: BackboneKernels['tokenMeanF32'];
}

const BASE = [
  'gatherTokensF32', 'scatterTokensF32', 'patchMergeF32', 'layerNormF32', 'layerNormTokenMeanF32', 'conv2dF32',
  'depthwiseConv2dF32', 'geluF32', 'sigmoidF32', 'mulSiluF32', 'addF32', 'addPositionsF32', 'ropeF32', 'tokenMeanF32',
] as const;
const FUNCTIONS: readonly (keyof BackboneKernels)[] = [...BASE, ...BASE.map((n) => `${n}Ref` as const)];

let cached: BackboneKernels | undefined;

/** The addon narrowed to the backbone kernels; throws if the loaded addon lacks any of them (stale build). */
export function backboneKernels(): BackboneKernels {
  if (cached) return cached;
  const a = addon();
  const missing = FUNCTIONS.filter((name) => typeof a[name] !== 'function');
  if (missing.length > 0) {
    throw new Error(`the native addon lacks ${missing.join(', ')}; rebuild it with "npm run build:addon"`);
  }
  cached = a as unknown as BackboneKernels;
  return cached;
}

/** Float operands of one precision: Float32Array (JLSS) or Float64Array (gradient checks). */
type Floats = Float32Array | Float64Array;

/**
 * The differentiable backbone ops of JLSS (native/include/ptq4vm/train_backbone.h, binding
 * native/binding/train_backbone_binding.cc): forwards and input-gradient backwards over dense
 * token-major operands, all of ONE float type (chosen by the first float array). Backwards
 * overwrite their gradient output unless `accumulate`; a gate gradient is always added into.
 * Indices are validated natively (gather in [−1, rows), scatter distinct in [−1, rows)).
 */
export interface BackboneTrainKernels {
  /** out = LayerNorm over cols (weight/bias null → 1/0). */
  trainLayerNorm(rows: number, cols: number, x: Floats, weight: Floats | null, bias: Floats | null, eps: number, out: Floats): void;
  trainLayerNormBackward(rows: number, cols: number, x: Floats, weight: Floats | null, eps: number, dout: Floats, dx: Floats,
    accumulate: boolean): void;
  /** out [B, C] = mean over the rows t of each image with select null or select[t] ≥ 0 of LayerNorm(x row). */
  trainLayerNormTokenMean(B: number, L: number, C: number, x: Floats, select: Int32Array | null, weight: Floats | null,
    bias: Floats | null, eps: number, out: Floats): void;
  trainLayerNormTokenMeanBackward(B: number, L: number, C: number, x: Floats, select: Int32Array | null, weight: Floats | null,
    eps: number, dout: Floats, dx: Floats, accumulate: boolean): void;
  /** Exact-erf GELU. */
  trainGelu(n: number, x: Floats, out: Floats): void;
  trainGeluBackward(n: number, x: Floats, dout: Floats, dx: Floats, accumulate: boolean): void;
  trainSigmoid(n: number, x: Floats, out: Floats): void;
  /** From the forward's output y: dx = dout·y·(1 − y). */
  trainSigmoidBackward(n: number, y: Floats, dout: Floats, dx: Floats, accumulate: boolean): void;
  /** Depthwise conv2d (odd K, stride 1, same padding) of [B·H·W, C]; weight [C, 1, K, K]; optional SiLU. */
  trainDepthwiseConv2d(B: number, H: number, W: number, C: number, K: number, x: Floats, weight: Floats, bias: Floats | null,
    silu: boolean, out: Floats): void;
  trainDepthwiseConv2dBackward(B: number, H: number, W: number, C: number, K: number, x: Floats, weight: Floats,
    bias: Floats | null, silu: boolean, dout: Floats, dx: Floats, accumulate: boolean): void;
  /** out[b·steps + t] = gather[t] ≥ 0 ? x[b·rows + gather[t]] : 0. */
  trainGatherTokens(B: number, rows: number, steps: number, C: number, x: Floats, gather: Int32Array, out: Floats): void;
  trainGatherTokensBackward(B: number, rows: number, steps: number, C: number, gather: Int32Array, dout: Floats, dx: Floats,
    accumulate: boolean): void;
  /** For scatter[t] ≥ 0: out[b·rows + scatter[t]] = (accumulate ? that : 0) + y[b·steps + t]·gate[b]; other rows kept. */
  trainScatterTokens(B: number, steps: number, rows: number, C: number, y: Floats, scatter: Int32Array, gate: Floats | null,
    accumulate: boolean, out: Floats): void;
  /** dy = dout at the scattered rows · gate (0 for dropped steps); dgate += Σ_t dout·y. */
  trainScatterTokensBackward(B: number, steps: number, rows: number, C: number, y: Floats, scatter: Int32Array,
    gate: Floats | null, dout: Floats, dy: Floats | null, accumulateDy: boolean, dgate: Floats | null): void;
}

const TRAIN_FUNCTIONS: readonly (keyof BackboneTrainKernels)[] = [
  'trainLayerNorm', 'trainLayerNormBackward', 'trainLayerNormTokenMean', 'trainLayerNormTokenMeanBackward', 'trainGelu',
  'trainGeluBackward', 'trainSigmoid', 'trainSigmoidBackward', 'trainDepthwiseConv2d', 'trainDepthwiseConv2dBackward',
  'trainGatherTokens', 'trainGatherTokensBackward', 'trainScatterTokens', 'trainScatterTokensBackward',
];

let cachedTrain: BackboneTrainKernels | undefined;

/** The addon narrowed to the differentiable backbone ops; throws if it lacks any of them (stale build). */
export function backboneTrainKernels(): BackboneTrainKernels {
  if (cachedTrain) return cachedTrain;
  const a = addon();
  const missing = TRAIN_FUNCTIONS.filter((name) => typeof a[name] !== 'function');
  if (missing.length > 0) {
    throw new Error(`the native addon lacks ${missing.join(', ')}; rebuild it with "npm run build:addon"`);
  }
  cachedTrain = a as unknown as BackboneTrainKernels;
  return cachedTrain;
}
