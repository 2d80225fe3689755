/**
 * ptq4vm as a library: load a Vision Mamba model (FP, INT8-quantized or an official .pth) and
 * classify images with it; start the HTTP server; read and write model files.
 */
export {
  checkTopk, loadModel, Model, topPredictions,
  type ClassifyInput, type ClassifyOptions, type Device, type LoadModelOptions, type ModelInfo, type Precision,
  type Prediction, type Preprocess,
} from './api.js';
export { startServer, type ServerOptions, type RunningServer } from './server/index.js';
export { Tensor, type Shape } from './tensor/tensor.js';
export { FASHION_MNIST_CLASSES } from './data/resolve.js';
export { convertAnyPth, convertPth } from './io/pth-model.js';
/** What this build runs on: CPU ISA and threads, CUDA devices (loads the native addon when called). */
export { runtimeInfo, type RuntimeInfo, type CudaDeviceInfo } from './backend/runtime-info.js';

// The errors a caller may want to tell apart. Every message is one line.
/** An image that is not a readable PNG/JPEG/WebP, is truncated or is over the pixel limit. */
export { DataError } from './data/errors.js';
/** Inputs of the wrong shape, dtype or value (tensors, options). */
export { InputError } from './runtime/errors.js';
/** A model that cannot be found or does not match its config. */
export { ModelLoadError } from './models/load.js';
/** A malformed model file (SafetensorsError, PthError are its subclasses). */
export { ModelFileError } from './io/errors.js';
export { SafetensorsError } from './io/errors.js';
export { PthError } from './io/pth.js';
export { ConfigError } from './models/vim/config.js';
/** Raised by the inference worker (its `name` is the original error's); also for calls after dispose. */
export { EngineError } from './runtime/engine.js';
