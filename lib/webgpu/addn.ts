/**
 * `AddN` on tfjs' webgpu backend for any number of inputs. tfjs 4.22's kernel binds one storage
 * buffer per input plus the output in a single shader; past the device's
 * maxStorageBuffersPerShaderStage (8 by WebGPU's default) the pipeline is invalid, WebGPU drops
 * the whole command buffer, and the next read returns stale data. The global gradient norm of
 * clipping sums one square per parameter (30 for a tiny GPT, 148 for GPT-124M) and hit exactly
 * that. Here inputs are summed in groups that fit, then the partial sums likewise.
 */
import * as tf from "@tensorflow/tfjs";

type KernelFunc = tf.KernelConfig["kernelFunc"];

interface WebGPUBackendLike {
  device: GPUDevice;
  disposeData(dataId: tf.DataId): boolean;
}

/** Most inputs one stock AddN shader may bind on this device (the output takes one binding). */
export function addNGroupSize(device: GPUDevice): number {
  return Math.max(2, device.limits.maxStorageBuffersPerShaderStage - 1);
}

/** Replaces the webgpu AddN kernel by one that splits long input lists (once). */
export function registerGroupedAddN(): void {
  const stock = tf.getKernel("AddN", "webgpu");
  if (!stock || (stock.kernelFunc as { grouped?: boolean }).grouped) return;
  const stockFunc = stock.kernelFunc;
  const grouped: KernelFunc = (args) => {
    const backend = args.backend as unknown as WebGPUBackendLike;
    const size = addNGroupSize(backend.device);
    let inputs = args.inputs as unknown as tf.TensorInfo[];
    const partials: tf.TensorInfo[] = [];
    while (inputs.length > size) {
      const next: tf.TensorInfo[] = [];
      for (let i = 0; i < inputs.length; i += size) {
        const group = inputs.slice(i, i + size);
        const sum = group.length === 1 ? group[0] : stockFunc({
          ...args,
          inputs: group as unknown as tf.NamedTensorInfoMap,
        }) as tf.TensorInfo;
        if (sum !== group[0]) partials.push(sum);
        next.push(sum);
      }
      inputs = next;
    }
    const out = stockFunc({ ...args, inputs: inputs as unknown as tf.NamedTensorInfoMap });
    for (const p of partials) backend.disposeData(p.dataId);
    return out;
  };
  (grouped as { grouped?: boolean }).grouped = true;
  tf.unregisterKernel("AddN", "webgpu");
  tf.registerKernel({ ...stock, kernelFunc: grouped });
}
