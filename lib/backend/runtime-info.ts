import { cpuKernels, type CpuRuntimeInfo } from './cpu-kernels.js';
import { cudaKernelsOrNull, type CudaDeviceInfo } from './cuda-kernels.js';

export type { CudaDeviceInfo } from './cuda-kernels.js';

/** What the package runs on: the CPU kernels' ISA and threads, and the CUDA devices (or why there are none). */
export interface RuntimeInfo {
  cpu: CpuRuntimeInfo;
  cuda: {
    /** Whether the addon holds the CUDA kernels (nvcc was found when it was built). */
    built: boolean;
    devices: CudaDeviceInfo[];
    /** Why `devices` is empty (null when it is not). */
    reason: string | null;
    /** The CUDA kernel set: 'fast' or 'simple' (PTQ4VM_CUDA_KERNELS); null without CUDA. */
    kernelMode: string | null;
  };
}

export function runtimeInfo(): RuntimeInfo {
  const cuda = cudaKernelsOrNull();
  if (!cuda) {
    return {
      cpu: cpuKernels().runtimeInfo(),
      cuda: { built: false, devices: [], reason: 'the addon was built without CUDA (nvcc was not found at build time)', kernelMode: null },
    };
  }
  const info = cuda.cudaInfo();
  return {
    cpu: cpuKernels().runtimeInfo(),
    cuda: { built: true, devices: info.devices, reason: info.devices.length ? null : info.reason, kernelMode: info.kernelMode },
  };
}

/** Resizes the CPU thread pool; returns the size in effect. */
export function setCpuThreads(n: number): number {
  return cpuKernels().setThreads(n);
}
