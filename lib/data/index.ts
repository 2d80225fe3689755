export { DataError } from './errors.js';
export { sampleIndices, type Batch, type BatchOptions, type Dataset, type SkippedImage } from './dataset.js';
export {
  DEFAULT_CROP_PCT, IMAGENET_MEAN, IMAGENET_STD, makePreprocess, preprocessFromModel, resizeGeometry,
  type ModelInputConfig, type Preprocess, type ResizeGeometry,
} from './preprocess.js';
export { DEFAULT_MAX_PIXELS, preprocessImageBuffer, sniffImageFormat, type DecodeOptions, type ImageFormat } from './decode.js';
export { IdxDataset, idxLabelsPath, readIdxImages, readIdxLabels, type IdxImages } from './idx.js';
export { IMAGE_EXTENSIONS, ImageFolderDataset, scanImageFolder, type ImageFolderScan } from './image-folder.js';
export { BUILTIN_DATASETS, builtinDatasetPath, FASHION_MNIST_CLASSES, resolveDataset } from './resolve.js';
