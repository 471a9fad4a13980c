/** Shared types and helpers for the fast cpu kernels. */
import * as tf from "@tensorflow/tfjs";

/** The part of tfjs' MathBackendCPU the kernels use. */
export interface CpuBackend {
  data: {
    get(dataId: tf.DataId): { values?: unknown; refCount?: number };
  };
  makeTensorInfo(shape: number[], dtype: tf.DataType, values?: tf.TypedArray): tf.TensorInfo;
  disposeIntermediateTensorInfo(info: tf.TensorInfo): void;
  incRef(dataId: tf.DataId): void;
}

/** What tfjs passes to a kernelFunc. */
export interface KernelArgs {
  inputs: Record<string, tf.TensorInfo>;
  // deno-lint-ignore no-explicit-any
  attrs?: any;
  backend: unknown;
}

/** A fast kernel: returns null when it does not handle the case (the stock kernel runs). */
export type FastKernel = (args: KernelArgs) => tf.TensorInfo | tf.TensorInfo[] | null;

/** The typed array behind a float32 tensor on the cpu backend, or null. */
export function f32(backend: CpuBackend, t: tf.TensorInfo | undefined): Float32Array | null {
  if (t == null || t.dtype !== "float32") return null;
  const v = backend.data.get(t.dataId).values;
  return v instanceof Float32Array ? v : null;
}

/** The typed array behind any numeric (non-string, non-complex) tensor, or null. */
export function typed(
  backend: CpuBackend,
  t: tf.TensorInfo | undefined,
): Float32Array | Int32Array | Uint8Array | null {
  if (t == null || t.dtype === "string" || t.dtype === "complex64") return null;
  const v = backend.data.get(t.dataId).values;
  return v instanceof Float32Array || v instanceof Int32Array || v instanceof Uint8Array ? v : null;
}

/** Product of the dimensions. */
export function sizeOf(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

/** Whether two shapes are equal. */
export function sameShape(a: readonly number[], b: readonly number[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** Backends a fused op can bring kernels for. */
export type FusedBackend = "cpu" | "webgpu";

/**
 * What one fused-op file registers: its kernels per backend (a kernel returning null passes the
 * call to the stock kernel of that name, if any) and the tape gradients of kernels that the
 * op differentiates through tfjs' registry instead of tf.customGrad.
 */
export interface FusedOp {
  kernels: Partial<Record<FusedBackend, Record<string, FastKernel>>>;
  gradients?: tf.GradConfig[];
}

/** Whether every named kernel is registered for the active backend (then the fused path runs). */
export function hasKernels(...names: string[]): boolean {
  const backend = tf.getBackend();
  return names.every((n) => tf.getKernel(n, backend) !== undefined);
}
