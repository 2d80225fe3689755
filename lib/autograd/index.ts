/**
 * The differentiable machinery of JLSS: a small reverse-mode tape over native ops (float32 for
 * training, float64 for gradient checks). See tape.ts for the ops and their gradients.
 */
export { TapeExecutor, tapeMat, type LinearFakeQuant, type TapeExecutorOptions, type TapeMat } from './tape-ops.js';
export { Tape, COSINE_EPS, type ActQuantOptions, type ScanConstants, type ScanDirection, type ScanOptions, type TapeOptions, type WeightQuantOptions } from './tape.js';
export { BufferPool } from './pool.js';
export { Var, toPrecision, type Precision } from './var.js';
export { trainKernels, type FloatArray, type TrainKernels } from './native.js';
export { vimMixerOnTape, type MixerDirection, type MixerLinearName, type MixerParams } from './vim-mixer.js';
