/**
 * One torch.optim.AdamW step of one parameter and its two moments: the op `adamwUpdate` (what
 * lib/train/adamw.ts calls), its composite fallback in torch's order of operations, and the fused
 * kernel `LlmAdamW` with its registration. The kernels (cpu and WebGPU) update in place:
 *
 *   const [p2, m2, v2] = tf.engine().runKernel("LlmAdamW", {param, grad, m, v},
 *     {lr, beta1, beta2, eps, weightDecay, step}) as tf.Tensor[];
 *   param.assign(p2); m.assign(m2); v.assign(v2);   // no-ops when updated in place
 *
 * Math (torch.optim.AdamW, step t counted from 1):
 *   p *= 1 - lr*wd;  m = b1*m + (1-b1)*g;  v = b2*v + (1-b2)*g*g;
 *   denom = sqrt(v)/sqrt(1-b2^t) + eps;  p -= (lr/(1-b1^t)) * m / denom
 * computed in float32 with WebAssembly SIMD, as torch does (float64 JS loop for small tensors);
 * on WebGPU in one WGSL pass over the variables' own buffers (see stepWebGpu below).
 *
 * In place: when `param`, `m` and `v` own their storage (refCount 1), the kernel rewrites the
 * typed arrays behind them (`backend.data.get(dataId).values`; on WebGPU their GPU buffers,
 * without a read back) and returns them again as
 * outputs on the same storage (like tfjs' Identity: no copy, no allocation); assigning those
 * outputs is a no-op and disposing them (or a surrounding tf.tidy) is enough.
 *
 * Copy on write: tfjs shares storage more than one expects on cpu (`tf.variable(t)` shares `t`'s
 * while `t` lives; `tf.clone(x)`, `x.reshape()` and identity casts share `x`'s). A buffer with
 * refCount > 1 is therefore not touched: its update goes to a new array returned as a new
 * tensor, so callers must `assign` the outputs (as lib/train/adamw.ts does) for the step to
 * take effect there. Caveat of the cpu's in-place path: arrays obtained earlier from
 * `p.dataSync()` or `await p.data()` are the live storage and change with the next step (take
 * copies).
 */
import * as tf from "@tensorflow/tfjs";
import { ADAMW } from "../names.ts";
import { simdRows } from "../simd.ts";
import { elementwise, type Uniform } from "../webgpu.ts";
import { runInPlace } from "../webgpu_inplace.ts";
import type { CpuBackend, FastKernel, FusedOp, KernelArgs } from "../util.ts";
import { f32, hasKernels } from "../util.ts";

/** AdamW hyperparameters of one step (torch.optim.AdamW names, step counted from 1). */
export interface AdamWStep {
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
  step: number;
}

/**
 * `[newParam, newM, newV]` after one step: the kernel where the backend has it (and `useKernel`),
 * else the composite. The caller assigns them (a no-op where the kernel updated in place). Call
 * inside tf.tidy.
 */
export function adamwUpdate(
  param: tf.Tensor,
  grad: tf.Tensor,
  m: tf.Tensor,
  v: tf.Tensor,
  h: AdamWStep,
  useKernel = true,
): tf.Tensor[] {
  const g = grad.dtype === "float32" ? grad : grad.cast("float32");
  if (!useKernel || !hasKernels(ADAMW)) return adamwComposite(param, g, m, v, h);
  const out = tf.engine().runKernel(
    ADAMW,
    { param, grad: g, m, v } as unknown as tf.NamedTensorMap,
    { ...h },
  ) as tf.Tensor[];
  if (!Array.isArray(out) || out.length !== 3) {
    throw new Error(`kernel ${ADAMW} must return [param, m, v]`);
  }
  return out;
}

/** The composite fallback: plain tf ops in torch's order of operations. Call inside tf.tidy. */
export function adamwComposite(
  p: tf.Tensor,
  g: tf.Tensor,
  m0: tf.Tensor,
  v0: tf.Tensor,
  h: AdamWStep,
): tf.Tensor[] {
  const { lr, beta1, beta2 } = h;
  const stepSize = lr / (1 - beta1 ** h.step);
  const biasCorrection2Sqrt = Math.sqrt(1 - beta2 ** h.step);
  const decayed = tf.mul(p, tf.scalar(1 - lr * h.weightDecay));
  const m = tf.add(tf.mul(m0, tf.scalar(beta1)), tf.mul(g, tf.scalar(1 - beta1)));
  const v = tf.add(tf.mul(v0, tf.scalar(beta2)), tf.mul(tf.mul(g, tf.scalar(1 - beta2)), g));
  const denom = tf.add(tf.div(tf.sqrt(v), tf.scalar(biasCorrection2Sqrt)), tf.scalar(h.eps));
  const newP = tf.add(decayed, tf.mul(tf.div(m, denom), tf.scalar(-stepSize)));
  return [newP, m, v];
}

/** The composite step applied to Variables with `assign` (a test oracle for the kernels). */
export function adamwReference(
  param: tf.Variable,
  grad: tf.Tensor,
  m: tf.Variable,
  v: tf.Variable,
  h: AdamWStep,
): void {
  tf.tidy(() => {
    const [p1, m1, v1] = adamwComposite(param, grad, m, v, h);
    param.assign(p1);
    m.assign(m1);
    v.assign(v1);
  });
}

// ------------------------------------------------------------------------------- cpu kernel

function buffer(be: CpuBackend, t: tf.TensorInfo | undefined, name: string): Float32Array {
  const v = f32(be, t);
  if (t == null || v == null) throw new Error(`${ADAMW}: ${name} must be a float32 cpu tensor`);
  return v;
}

/** The array to update for `t` and the output tensor info: in place, or a copy when shared. */
function target(
  be: CpuBackend,
  t: tf.TensorInfo,
  values: Float32Array,
): [Float32Array, tf.TensorInfo] {
  if ((be.data.get(t.dataId).refCount ?? 1) <= 1) {
    be.incRef(t.dataId); // the output aliases the input, as Identity does
    return [values, { dataId: t.dataId, shape: t.shape.slice(), dtype: t.dtype }];
  }
  const copy = values.slice();
  return [copy, be.makeTensorInfo(t.shape.slice(), "float32", copy)];
}

/** The kernel on cpu: in place where the storage is not shared. */
const stepCpu: FastKernel = ({ inputs, attrs, backend }: KernelArgs) => {
  const be = backend as CpuBackend;
  const p0 = buffer(be, inputs.param, "param");
  const g = buffer(be, inputs.grad, "grad");
  const m0 = buffer(be, inputs.m, "m");
  const v0 = buffer(be, inputs.v, "v");
  const n = p0.length;
  if (g.length !== n || m0.length !== n || v0.length !== n) {
    throw new Error(`${ADAMW}: param, grad, m and v must have the same size`);
  }
  const { lr, beta1, beta2, eps, weightDecay, step } = attrs as AdamWStep;
  if (!(step >= 1)) throw new Error(`${ADAMW}: step must be >= 1 (got ${step})`);
  const [p, pOut] = target(be, inputs.param, p0);
  const [m, mOut] = target(be, inputs.m, m0);
  const [v, vOut] = target(be, inputs.v, v0);
  const decay = 1 - lr * weightDecay;
  const stepSize = lr / (1 - Math.pow(beta1, step));
  const bc2Sqrt = Math.sqrt(1 - Math.pow(beta2, step));
  const simd = n >= 4096 ? simdRows() : null;
  if (simd) {
    // float32 arithmetic in torch's order of operations, 4 lanes at a time.
    simd.adamw(p, g, m, v, { decay, beta1, beta2, stepSize, bc2Sqrt, eps });
  } else {
    const b1 = beta1, c1 = 1 - beta1, b2 = beta2, c2 = 1 - beta2;
    for (let i = 0; i < n; i++) {
      const gi = g[i];
      const mi = b1 * m[i] + c1 * gi;
      const vi = b2 * v[i] + c2 * gi * gi;
      m[i] = mi;
      v[i] = vi;
      p[i] = p[i] * decay - stepSize * mi / (Math.sqrt(vi) / bc2Sqrt + eps);
    }
  }
  return [pOut, mOut, vOut];
};

// ---------------------------------------------------------------------------- webgpu kernel

/** WGSL of one element's step, in float32 in torch's order (the cpu kernel's arithmetic). */
const STEP_WGSL = `
  let gi = g[i];
  let mi = uniforms.beta1 * m[i] + uniforms.rest1 * gi;
  let vi = uniforms.beta2 * v[i] + uniforms.rest2 * gi * gi;
  m[i] = mi;
  v[i] = vi;
  let denom = sqrt(vi) / uniforms.bc2Sqrt + uniforms.eps;
  p[i] = p[i] * uniforms.decay - uniforms.stepSize * mi / denom;`;

/**
 * The kernel on WebGPU: one pass that rewrites the parameter's and the moments' own buffers
 * (lib/kernels/webgpu_inplace.ts; a shared buffer is copied first). Where that pass cannot run,
 * the stock path: three tfjs programs (m, v, then p) returning new buffers for the caller to
 * assign.
 */
const stepWebGpu: FastKernel = ({ inputs, attrs, backend }: KernelArgs) => {
  const { param, grad, m, v } = inputs;
  const h = attrs as AdamWStep;
  if (!(h.step >= 1)) throw new Error(`${ADAMW}: step must be >= 1 (got ${h.step})`);
  const u = stepUniforms(h);
  const out = runInPlace(backend, {
    key: "adamw",
    write: [["p", param], ["m", m], ["v", v]],
    read: [["g", grad]],
    uniforms: Object.entries(u).map(([name, value]) => ({ name, value })),
    code: STEP_WGSL,
  });
  if (typeof out !== "string") return out;
  if (!warned) console.warn(`${ADAMW}: the in-place WebGPU pass cannot run (${out})`);
  warned = true;
  return stockPasses(backend, param, grad, m, v, u);
};
let warned = false;

/** The step's scalars, named as in STEP_WGSL (also the stock passes' uniforms). */
export function stepUniforms({ lr, beta1, beta2, eps, weightDecay, step }: AdamWStep) {
  return {
    beta1,
    rest1: 1 - beta1,
    beta2,
    rest2: 1 - beta2,
    decay: 1 - lr * weightDecay,
    stepSize: lr / (1 - Math.pow(beta1, step)),
    bc2Sqrt: Math.sqrt(1 - Math.pow(beta2, step)),
    eps,
  };
}

/** The same step as three tfjs programs with new outputs: m, v, then p from them. */
export function stockPasses(
  backend: unknown,
  param: tf.TensorInfo,
  grad: tf.TensorInfo,
  m: tf.TensorInfo,
  v: tf.TensorInfo,
  u: ReturnType<typeof stepUniforms>,
): tf.TensorInfo[] {
  const shape = param.shape.slice();
  const f32 = (values: Record<string, number>): Uniform[] =>
    Object.entries(values).map(([name, value]) => ({ name, type: "f32", value }));
  const moment = (key: string, old: tf.TensorInfo, beta: number, rest: number, term: string) =>
    elementwise(backend, {
      key,
      inputs: [["old", old], ["g", grad]],
      outShape: shape,
      uniforms: f32({ beta, rest }),
      code: `result[index] = uniforms.beta * old[index] + ${term};`,
    });
  const m1 = moment("adamw_m", m, u.beta1, u.rest1, "uniforms.rest * g[index]");
  const v1 = moment("adamw_v", v, u.beta2, u.rest2, "uniforms.rest * g[index] * g[index]");
  const p1 = elementwise(backend, {
    key: "adamw_p",
    inputs: [["p", param], ["m", m1], ["v", v1]],
    outShape: shape,
    uniforms: f32({ decay: u.decay, stepSize: u.stepSize, bc2Sqrt: u.bc2Sqrt, eps: u.eps }),
    code: `
  let denom = sqrt(v[index]) / uniforms.bc2Sqrt + uniforms.eps;
  result[index] = p[index] * uniforms.decay - uniforms.stepSize * m[index] / denom;`,
  });
  return [p1, m1, v1];
}

// ------------------------------------------------------------------------------ registration

/** What lib/kernels/mod.ts registers for this op. */
export const adamwOp: FusedOp = {
  kernels: { cpu: { [ADAMW]: stepCpu }, webgpu: { [ADAMW]: stepWebGpu } },
};
