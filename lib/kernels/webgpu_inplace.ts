/**
 * An elementwise WGSL pass that rewrites tensors' own GPU buffers (`read_write` storage bindings)
 * instead of making new outputs as tfjs' `runWebGPUProgram` does: what AdamW needs to update a
 * parameter and its two moments without allocating three new buffers per parameter and step.
 *
 * The pass is recorded on tfjs' webgpu backend's own command encoder and compute pass, so it is
 * ordered with tfjs' work before and after it; its tensors join `commandQueueOwnedIds`, so a
 * gradient disposed right after the step keeps its buffer until the command buffer is
 * submitted. Copy on write, as the cpu kernels do: a written tensor whose storage is shared
 * (refCount > 1, or bound twice) is copied first and the copy updated and returned.
 *
 * Sizes: a binding may not exceed the device's `maxStorageBufferBindingSize` (128 MiB on
 * lavapipe; GPT-2 medium's embedding is 206 MB) and a dispatch 65,535 workgroups per dimension;
 * a large tensor is therefore updated in chunks, each bound as a range of the buffers.
 * The backend object is typed here by what is used of tfjs-backend-webgpu 4.22's WebGPUBackend.
 */
import * as tf from "@tensorflow/tfjs";
import { sizeOf } from "./util.ts";

/** A tensor's entry in the backend's `tensorMap`. */
interface TensorData {
  resource: unknown;
  values: unknown;
  refCount: number;
  dtype: tf.DataType;
}

/** The part of tfjs' WebGPUBackend an in-place pass uses. */
interface WebGpuInternals {
  device: GPUDevice;
  tensorMap: { get(id: tf.DataId): TensorData };
  commandEncoder: GPUCommandEncoder | null;
  computePassEncoder: GPUComputePassEncoder | null;
  commandQueueOwnedIds: WeakSet<object>;
  dispatchCountInPass: number;
  uploadToGPU(id: tf.DataId): void;
  ensureCommandEncoderReady(): void;
  endComputePassEncoder(): void;
  submitQueue(): void;
  makeUniforms(u: { type: string; data: number[] }[]): GPUBufferBinding;
  makeTensorInfo(shape: number[], dtype: tf.DataType): tf.TensorInfo;
  incRef(id: tf.DataId): void;
}

/** One f32 uniform of an in-place pass (the element count `n` is always there). */
export interface F32Uniform {
  name: string;
  value: number;
}

/** What an in-place pass computes, element `i` of equally sized float32 tensors. */
export interface InPlaceSpec {
  /** Cache key of the compiled pipeline: must change whenever `code` does. */
  key: string;
  /** Tensors the pass rewrites (bound read_write), by WGSL name. */
  write: [string, tf.TensorInfo][];
  /** Tensors it only reads. */
  read: [string, tf.TensorInfo][];
  uniforms: F32Uniform[];
  /** WGSL body of `main`, with `i` (u32) the element and `uniforms.<name>` the values. */
  code: string;
}

const THREADS = 64;
const pipelines = new WeakMap<GPUDevice, Map<string, GPUComputePipeline>>();

/**
 * Runs `spec` in place: returns one tensor info per written tensor (the same storage, or its
 * updated copy when shared), or a reason string when the pass cannot run here (then the caller
 * takes the stock path).
 */
export function runInPlace(backend: unknown, spec: InPlaceSpec): tf.TensorInfo[] | string {
  const be = backend as WebGpuInternals;
  const all = [...spec.write, ...spec.read].map(([, t]) => t);
  const n = sizeOf(all[0].shape);
  if (all.some((t) => t.dtype !== "float32" || sizeOf(t.shape) !== n)) {
    return "the tensors must be float32 of one size";
  }
  if (typeof be.tensorMap?.get !== "function" || typeof be.makeUniforms !== "function") {
    return "not tfjs 4.22's webgpu backend";
  }
  for (const t of all) be.uploadToGPU(t.dataId);
  if (!all.every((t) => be.tensorMap.get(t.dataId).resource instanceof GPUBuffer)) {
    return "a tensor is not in a GPU buffer";
  }
  const outs = spec.write.map(([, t], k) => target(be, t, all, k, n));
  if (n > 0) dispatch(be, spec, outs, n);
  return outs;
}

/** The tensor to write for `t`: itself when it owns its storage, else a copy of it. */
function target(
  be: WebGpuInternals,
  t: tf.TensorInfo,
  all: tf.TensorInfo[],
  k: number,
  n: number,
): tf.TensorInfo {
  const data = be.tensorMap.get(t.dataId);
  const boundTwice = all.some((u, j) => j !== k && u.dataId === t.dataId);
  if (data.refCount <= 1 && !boundTwice) {
    be.incRef(t.dataId); // the output aliases the input, as Identity does
    data.values = null; // a copy cached on the host by an earlier read is stale from now on
    return { dataId: t.dataId, shape: t.shape.slice(), dtype: t.dtype };
  }
  const copy = be.makeTensorInfo(t.shape.slice(), t.dtype);
  be.uploadToGPU(copy.dataId);
  if (n > 0) {
    be.ensureCommandEncoderReady();
    be.endComputePassEncoder(); // a copy is recorded outside a compute pass
    be.commandEncoder!.copyBufferToBuffer(bufferOf(be, t), 0, bufferOf(be, copy), 0, n * 4);
  }
  return copy;
}

function bufferOf(be: WebGpuInternals, t: tf.TensorInfo): GPUBuffer {
  return be.tensorMap.get(t.dataId).resource as GPUBuffer;
}

/** Elements per chunk: within one binding and one row of workgroups, at an aligned offset. */
export function chunkElements(limits: GPUSupportedLimits): number {
  const align = Math.max(1, limits.minStorageBufferOffsetAlignment / 4);
  const most = Math.min(
    Math.floor(limits.maxStorageBufferBindingSize / 4),
    limits.maxComputeWorkgroupsPerDimension * THREADS,
  );
  return Math.max(align, Math.floor(most / align) * align);
}

/** Records the pass, one dispatch per chunk, on tfjs' compute pass; submits as tfjs would. */
function dispatch(be: WebGpuInternals, spec: InPlaceSpec, outs: tf.TensorInfo[], n: number) {
  const pipeline = pipelineFor(be.device, spec);
  const tensors = [...outs, ...spec.read.map(([, t]) => t)];
  const buffers = tensors.map((t) => bufferOf(be, t));
  for (const t of [...tensors, ...spec.write.map(([, t]) => t)]) {
    be.commandQueueOwnedIds.add(t.dataId);
  }
  const chunk = chunkElements(be.device.limits);
  for (let start = 0; start < n; start += chunk) {
    const len = Math.min(chunk, n - start);
    const uniforms = be.makeUniforms([
      { type: "uint32", data: [len] },
      ...spec.uniforms.map((u) => ({ type: "float32", data: [u.value] })),
    ]);
    const entries: GPUBindGroupEntry[] = [{ binding: 0, resource: uniforms }];
    buffers.forEach((buffer, j) => {
      entries.push({ binding: j + 1, resource: { buffer, offset: start * 4, size: len * 4 } });
    });
    const group = be.device.createBindGroup({ layout: pipeline.getBindGroupLayout(0), entries });
    be.ensureCommandEncoderReady();
    be.computePassEncoder ??= be.commandEncoder!.beginComputePass();
    be.computePassEncoder.setPipeline(pipeline);
    be.computePassEncoder.setBindGroup(0, group);
    be.computePassEncoder.dispatchWorkgroups(Math.ceil(len / THREADS));
    be.dispatchCountInPass++;
  }
  if (be.dispatchCountInPass >= Number(tf.env().get("WEBGPU_DEFERRED_SUBMIT_BATCH_SIZE"))) {
    be.endComputePassEncoder();
    be.submitQueue();
  }
}

function pipelineFor(device: GPUDevice, spec: InPlaceSpec): GPUComputePipeline {
  let cache = pipelines.get(device);
  if (!cache) pipelines.set(device, cache = new Map());
  const key = `${spec.key}:${spec.write.length}:${spec.read.length}`;
  let pipeline = cache.get(key);
  if (!pipeline) {
    const module = device.createShaderModule({ code: shader(spec) });
    pipeline = device.createComputePipeline({ layout: "auto", compute: { module } });
    cache.set(key, pipeline);
  }
  return pipeline;
}

/** The WGSL of a pass: uniforms at binding 0, then the written and the read-only arrays. */
function shader(spec: InPlaceSpec): string {
  const fields = spec.uniforms.map((u) => `${u.name} : f32,`).join(" ");
  const arrays = [
    ...spec.write.map(([name]) => [name, "read_write"]),
    ...spec.read.map(([name]) => [name, "read"]),
  ].map(([name, access], j) =>
    `@group(0) @binding(${j + 1}) var<storage, ${access}> ${name} : array<f32>;`
  );
  return `struct Uniforms { n : u32, ${fields} };
@group(0) @binding(0) var<uniform> uniforms : Uniforms;
${arrays.join("\n")}
@compute @workgroup_size(${THREADS})
fn main(@builtin(global_invocation_id) gid : vec3<u32>) {
  let i = gid.x;
  if (i >= uniforms.n) { return; }
  ${spec.code}
}`;
}
