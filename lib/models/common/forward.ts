/** One entry point for the forward pass of every non-Vim backbone. */
import type { BackboneOps, Mat, TapFn } from '../ops.js';
import type { Tensor } from '../../tensor/tensor.js';
import { localVimForward } from '../localvim/graph.js';
import type { LocalVimModel } from '../localvim/model.js';
import { localVMambaForward } from '../localvmamba/graph.js';
import type { LocalVMambaModel } from '../localvmamba/model.js';
import { vmambaForward } from '../vmamba/graph.js';
import type { VMambaModel } from '../vmamba/model.js';

export type BackboneModel = LocalVimModel | VMambaModel | LocalVMambaModel;

/** images [B, C, H, W] (normalized) → logits [B, classes]. */
export function backboneForward<M extends Mat>(ops: BackboneOps<M>, model: BackboneModel, images: Tensor<'F32'>, tap?: TapFn<M>): M {
  switch (model.arch) {
    case 'localvim': return localVimForward(ops, model, images, tap);
    case 'vmamba': return vmambaForward(ops, model, images, tap);
    case 'localvmamba': return localVMambaForward(ops, model, images, tap);
  }
}
