/** Test helper: a state dict saved the way the official training checkpoints are ({model: OrderedDict, epoch}). */
import { writeFileSync } from 'node:fs';
import type { Tensor } from '../../lib/tensor/tensor.js';
import { bytesOf, OrderedDict, TorchTensor, torchSave, type PyValue } from '../io/torch-writer.js';

/** Writes `tensors` (F32, contiguous) as an official-layout checkpoint: no config inside, as the real ones. */
export function writeOfficialPth(path: string, tensors: ReadonlyMap<string, Tensor>): void {
  const storages = new Map<string, Uint8Array>();
  const dict = new Map<PyValue, PyValue>();
  let key = 0;
  for (const [name, t] of tensors) {
    if (t.dtype !== 'F32') throw new Error(`writeOfficialPth: ${name} is ${t.dtype}, only F32 is written`);
    const k = String(key++);
    storages.set(k, bytesOf(t.data).slice());
    const strides: number[] = [];
    let acc = 1;
    for (let i = t.rank - 1; i >= 0; i--) {
      strides.unshift(acc);
      acc *= t.dim(i);
    }
    dict.set(name, new TorchTensor({ key: k, type: 'FloatStorage', numel: t.size }, 0, [...t.shape], strides, { parameter: true }));
  }
  const root = new Map<PyValue, PyValue>([['model', new OrderedDict(dict)], ['epoch', 299]]);
  writeFileSync(path, torchSave(root, storages, { archive: 'checkpoint' }));
}
