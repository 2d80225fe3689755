import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { packageRoot } from '../backend/addon.js';
import type { Dataset } from './dataset.js';
import { DataError, describeError } from './errors.js';
import { IdxDataset } from './idx.js';
import { ImageFolderDataset } from './image-folder.js';

export const FASHION_MNIST_CLASSES: readonly string[] = Object.freeze([
  'T-shirt/top', 'Trouser', 'Pullover', 'Dress', 'Coat', 'Sandal', 'Shirt', 'Sneaker', 'Bag', 'Ankle boot',
]);

/** Data sets shipped in the package (assets/), by name. */
export const BUILTIN_DATASETS: Readonly<Record<string, { file: string; what: string }>> = Object.freeze({
  fmnist: { file: 'assets/fmnist/t10k-images-idx3-ubyte.gz', what: 'Fashion-MNIST test set, 10,000 images' },
  'fmnist-train': { file: 'assets/fmnist/train-subset2000-images-idx3-ubyte.gz', what: 'Fashion-MNIST calibration subset, 2,000 training images' },
});

/** The images file of a built-in data set, or undefined when `name` is not one. */
export function builtinDatasetPath(name: string): string | undefined {
  const b = Object.hasOwn(BUILTIN_DATASETS, name) ? BUILTIN_DATASETS[name] : undefined;
  return b && join(packageRoot(), b.file);
}

/**
 * A data set from a built-in name (`fmnist`, `fmnist-train`; a name wins over a same-named path:
 * write ./fmnist for the folder), an idx images file (gzip or raw) or an image folder.
 */
export async function resolveDataset(nameOrPath: string): Promise<Dataset> {
  const builtin = builtinDatasetPath(nameOrPath);
  if (builtin) return IdxDataset.open(builtin, { classNames: FASHION_MNIST_CLASSES });
  let isDir: boolean;
  try {
    isDir = (await stat(nameOrPath)).isDirectory();
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    const names = Object.keys(BUILTIN_DATASETS).join(', ');
    throw new DataError(
      code === 'ENOENT' ? `no such file or folder (and not a built-in data set: ${names})` : `cannot open: ${describeError(e)}`,
      nameOrPath, { cause: e },
    );
  }
  return isDir ? ImageFolderDataset.open(nameOrPath) : IdxDataset.open(nameOrPath);
}
