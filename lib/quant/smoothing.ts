/**
 * SmoothQuant initialisation of the smoothing factors of one linear:
 *   σ_j = clamp(max|X_j|, 1e−3)^α / clamp(max_o |W_oj|, 1e−5)^(1−α)
 * (activations are divided by σ, weights multiplied by it, so the product is unchanged).
 */
export function smoothQuantScales(actAbsMax: Float32Array, weight: Float32Array, out: number, inF: number, alpha: number): Float32Array {
  if (actAbsMax.length !== inF) throw new RangeError(`smoothing: ${actAbsMax.length} activation maxima for ${inF} input channels`);
  const wmax = new Float64Array(inF);
  for (let o = 0; o < out; o++) {
    for (let j = 0; j < inF; j++) {
      const a = Math.abs(weight[o * inF + j]!);
      if (a > wmax[j]!) wmax[j] = a;
    }
  }
  const sigma = new Float32Array(inF);
  for (let j = 0; j < inF; j++) {
    const s = Math.max(actAbsMax[j]!, 1e-3) ** alpha / Math.max(wmax[j]!, 1e-5) ** (1 - alpha);
    sigma[j] = Math.max(s, 1e-5);
  }
  return sigma;
}

/** W·diag(σ) as float32, the weights a smoothed linear quantizes. */
export function smoothedWeight(weight: Float32Array, out: number, inF: number, sigma: Float32Array): Float32Array {
  const w = new Float32Array(out * inF);
  for (let o = 0; o < out; o++) for (let j = 0; j < inF; j++) w[o * inF + j] = weight[o * inF + j]! * sigma[j]!;
  return w;
}
