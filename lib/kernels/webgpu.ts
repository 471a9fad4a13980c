/**
 * Shared plumbing of the fused WebGPU kernels: a compute program in the shape tfjs' webgpu
 * backend runs (`backend.runWebGPUProgram(program, inputs, dtype, uniforms)`: it declares the
 * output buffer `result`, one read-only buffer per name in `variableNames`, and a `uniforms`
 * struct with the shapes plus the fields named in `uniforms`), in two layouts:
 * - `elementwise`: one invocation per output element, `main(index)` with `index < uniforms.size`;
 * - `rows`: one workgroup of `ROW_THREADS` per row of `rows`, with `row`, `tid` and the
 *   workgroup reductions `rowSum` / `rowMax` (every invocation must call them: they hold
 *   barriers).
 * The package itself is not imported: the backend object is typed here by what is used.
 */
import type * as tf from "@tensorflow/tfjs";

/** A uniform field of a program: WGSL name, type and value. */
export interface Uniform {
  name: string;
  type: "f32" | "i32" | "u32";
  value: number;
}

/** What the kernels use of tfjs' WebGPU backend. */
export interface WebGpuBackend {
  runWebGPUProgram(
    program: WebGpuProgram,
    inputs: tf.TensorInfo[],
    outputDtype: tf.DataType,
    uniforms?: { type: string; data: number[] }[],
  ): tf.TensorInfo;
}

/** tfjs-backend-webgpu's WebGPUProgram fields that a custom program sets. */
export interface WebGpuProgram {
  variableNames: string[];
  outputShape: number[];
  shaderKey: string;
  dispatchLayout: { x: number[] };
  dispatch: [number, number, number];
  workgroupSize: [number, number, number];
  uniforms?: string;
  size?: boolean;
  getUserCode: () => string;
}

/** Threads per workgroup of the row programs (a power of two). */
export const ROW_THREADS = 128;
const FLAT_THREADS = 64;

/** What a fused program computes. */
export interface ProgramSpec {
  /** Cache key of the compiled shader: must change whenever `code` does. */
  key: string;
  /** Inputs by WGSL name, in binding order. */
  inputs: [string, tf.TensorInfo][];
  outShape: number[];
  dtype?: tf.DataType;
  uniforms?: Uniform[];
  /** WGSL: the body of `main` (and helper functions declared before it, in `prelude`). */
  code: string;
  prelude?: string;
}

const TYPE_NAMES = { f32: "float32", i32: "int32", u32: "uint32" } as const;

function run(
  backend: unknown,
  spec: ProgramSpec,
  layout: "elementwise" | "rows",
  rows: number,
): tf.TensorInfo {
  const size = spec.outShape.reduce((a, b) => a * b, 1);
  const threads = layout === "rows" ? ROW_THREADS : FLAT_THREADS;
  const groups = layout === "rows" ? rows : Math.ceil(size / FLAT_THREADS);
  const uniforms = spec.uniforms ?? [];
  const program: WebGpuProgram = {
    variableNames: spec.inputs.map(([n]) => n),
    outputShape: spec.outShape,
    shaderKey: `llm_${layout}_${spec.key}`,
    dispatchLayout: { x: spec.outShape.map((_, i) => i) },
    dispatch: [Math.max(groups, 1), 1, 1],
    workgroupSize: [threads, 1, 1],
    uniforms: uniforms.map((u) => `${u.name} : ${u.type},`).join(" "),
    size: true,
    getUserCode: () =>
      layout === "rows"
        ? `${ROW_REDUCE}\n${spec.prelude ?? ""}\nfn main(index : i32) {
  let row = index / ${ROW_THREADS};
  let tid = i32(localId.x);
  ${spec.code}
}`
        : `${spec.prelude ?? ""}\nfn main(index : i32) {
  if (index >= uniforms.size) { return; }
  ${spec.code}
}`,
  };
  return (backend as WebGpuBackend).runWebGPUProgram(
    program,
    spec.inputs.map(([, t]) => t),
    spec.dtype ?? "float32",
    uniforms.map((u) => ({ type: TYPE_NAMES[u.type], data: [u.value] })),
  );
}

/** Runs a program with one invocation per output element. */
export function elementwise(backend: unknown, spec: ProgramSpec): tf.TensorInfo {
  return run(backend, spec, "elementwise", 0);
}

/**
 * Runs a program with one workgroup per row (`rows` of them). `row` may exceed the last row when
 * the backend folds a large dispatch into 2-D: clamp reads, guard writes.
 */
export function rowwise(backend: unknown, rows: number, spec: ProgramSpec): tf.TensorInfo {
  return run(backend, spec, "rows", rows);
}

/** Workgroup sum and max of one value per invocation (tree reduction over shared memory). */
const ROW_REDUCE = `
var<workgroup> llmShared : array<f32, ${ROW_THREADS}>;
fn rowReduce(tid : i32, value : f32, isMax : bool) -> f32 {
  llmShared[tid] = value;
  workgroupBarrier();
  for (var half = ${ROW_THREADS / 2}; half > 0; half = half / 2) {
    if (tid < half) {
      let other = llmShared[tid + half];
      llmShared[tid] = select(llmShared[tid] + other, max(llmShared[tid], other), isMax);
    }
    workgroupBarrier();
  }
  let total = llmShared[0];
  workgroupBarrier();
  return total;
}
fn rowSum(tid : i32, value : f32) -> f32 { return rowReduce(tid, value, false); }
fn rowMax(tid : i32, value : f32) -> f32 { return rowReduce(tid, value, true); }
`;

/** tanh without the NaN some drivers give for large |x| (as tfjs' own webgpu tanh does). */
export const WGSL_TANH = `
fn llmTanh(a : f32) -> f32 {
  let e = exp(-2.0 * abs(a));
  return sign(a) * (1.0 - e) / (1.0 + e);
}`;
