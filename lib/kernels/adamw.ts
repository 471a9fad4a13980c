/**
 * `LlmAdamW`: one fused, in-place torch.optim.AdamW step for one parameter on the cpu backend.
 *
 *   const [p2, m2, v2] = tf.engine().runKernel("LlmAdamW", {param, grad, m, v},
 *     {lr, beta1, beta2, eps, weightDecay, step}) as tf.Tensor[];
 *
 * Math (torch.optim.AdamW, step t counted from 1):
 *   p *= 1 - lr*wd;  m = b1*m + (1-b1)*g;  v = b2*v + (1-b2)*g*g;
 *   denom = sqrt(v)/sqrt(1-b2^t) + eps;  p -= (lr/(1-b1^t)) * m / denom
 *
 * In place: the kernel rewrites the typed arrays behind `param`, `m` and `v`
 * (`backend.data.get(dataId).values`) and returns `[param, m, v]` again as new tensors on the
 * same storage (like tfjs' Identity kernel: no copy), so both `p.assign(p2)` (a no-op) and simply
 * disposing the outputs (or running inside tf.tidy) work; no array is allocated. Caveats:
 * - every tensor sharing a dataId sees the update. tfjs shares storage more than one expects on
 *   cpu: `tf.variable(t)` shares `t`'s storage while `t` lives, and `tf.clone(x)`, `x.reshape()`
 *   and identity casts share `x`'s. The kernel therefore refuses (throws) when a buffer's
 *   refCount is above 1; dispose the initial tensor, and take snapshots with
 *   `tf.tensor(p.dataSync().slice(), p.shape)`, not `clone`.
 * - arrays returned earlier by `p.dataSync()` are the live storage and change too.
 * - cpu backend only; other backends need the tf-ops route (`adamwReference`).
 */
import * as tf from "@tensorflow/tfjs";
import { type CpuBackend, f32, type FastKernel, type KernelArgs } from "./util.ts";

/** Kernel name. */
export const ADAMW = "LlmAdamW";

/** AdamW hyperparameters of one step (torch.optim.AdamW names, step counted from 1). */
export interface AdamWStep {
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
  step: number;
}

function buffer(be: CpuBackend, t: tf.TensorInfo | undefined, name: string): Float32Array {
  const v = f32(be, t);
  if (t == null || v == null) throw new Error(`${ADAMW}: ${name} must be a float32 cpu tensor`);
  const refs = be.data.get(t.dataId).refCount ?? 1;
  if (refs > 1 && name !== "grad") {
    throw new Error(
      `${ADAMW}: ${name} shares its storage with ${refs - 1} other tensor(s) ` +
        "(tf.variable(t) while t lives, clone, reshape) and an in-place update would change them too: create variables as tf.tidy(() => tf.variable(init))",
    );
  }
  return v;
}

/** The in-place AdamW kernel. */
export const adamw: FastKernel = ({ inputs, attrs, backend }: KernelArgs) => {
  const be = backend as CpuBackend;
  const p = buffer(be, inputs.param, "param");
  const g = buffer(be, inputs.grad, "grad");
  const m = buffer(be, inputs.m, "m");
  const v = buffer(be, inputs.v, "v");
  const n = p.length;
  if (g.length !== n || m.length !== n || v.length !== n) {
    throw new Error(`${ADAMW}: param, grad, m and v must have the same size`);
  }
  const { lr, beta1, beta2, eps, weightDecay, step } = attrs as AdamWStep;
  if (!(step >= 1)) throw new Error(`${ADAMW}: step must be >= 1 (got ${step})`);
  const decay = 1 - lr * weightDecay;
  const b1 = beta1, c1 = 1 - beta1, b2 = beta2, c2 = 1 - beta2;
  const stepSize = lr / (1 - Math.pow(beta1, step));
  const invBc2Sqrt = 1 / Math.sqrt(1 - Math.pow(beta2, step));
  for (let i = 0; i < n; i++) {
    const gi = g[i];
    const mi = b1 * m[i] + c1 * gi;
    const vi = b2 * v[i] + c2 * gi * gi;
    m[i] = mi;
    v[i] = vi;
    p[i] = p[i] * decay - stepSize * mi / (Math.sqrt(vi) * invBc2Sqrt + eps);
  }
  // The outputs alias the updated inputs: one more reference on each dataId, as Identity does.
  return [inputs.param, inputs.m, inputs.v].map((t) => {
    be.incRef(t.dataId);
    return { dataId: t.dataId, shape: t.shape.slice(), dtype: t.dtype };
  });
};

/**
 * The same AdamW step with tf ops and `assign` (any backend; `param`, `m`, `v` are Variables).
 */
export function adamwReference(
  param: tf.Variable,
  grad: tf.Tensor,
  m: tf.Variable,
  v: tf.Variable,
  h: AdamWStep,
): void {
  tf.tidy(() => {
    const m1 = m.mul(h.beta1).add(grad.mul(1 - h.beta1));
    const v1 = v.mul(h.beta2).add(grad.square().mul(1 - h.beta2));
    const denom = v1.sqrt().div(Math.sqrt(1 - h.beta2 ** h.step)).add(h.eps);
    const stepSize = h.lr / (1 - h.beta1 ** h.step);
    param.assign(param.mul(1 - h.lr * h.weightDecay).sub(m1.div(denom).mul(stepSize)));
    m.assign(m1);
    v.assign(v1);
  });
}
