/**
 * GELU, tanh approximation (the book's and GPT-2's "gelu_new"): the op `gelu`, its composite
 * fallback, and the fused kernels `LlmGelu` / `LlmGeluGrad` with their registration. The
 * composite is ~8 elementwise kernels forward and ~15 backward over a [B, T, 4E] tensor per
 * layer; fused, each direction reads its inputs once.
 *
 *   y  = 0.5 x (1 + t),  t = tanh(c (x + 0.044715 x^3)),  c = sqrt(2/pi)
 *   dy/dx = 0.5 (1 + t) + 0.5 x (1 - t^2) c (1 + 3 * 0.044715 x^2)
 */
import * as tf from "@tensorflow/tfjs";
import { fastTanh } from "../fastmath.ts";
import { GELU, GELU_GRAD } from "../names.ts";
import { allocF32 } from "../pool.ts";
import { elementwise, WGSL_TANH } from "../webgpu.ts";
import type { CpuBackend, FastKernel, FusedOp, KernelArgs } from "../util.ts";
import { f32, hasKernels } from "../util.ts";

const C = Math.sqrt(2 / Math.PI), K = 0.044715;

/** GELU of x: the fused kernels where the backend has them, else plain tf ops. */
export function gelu(x: tf.Tensor): tf.Tensor {
  if (hasKernels(GELU, GELU_GRAD)) return fused(x);
  return tf.tidy(() => {
    const inner = tf.mul(C, tf.add(x, tf.mul(K, tf.mul(x, tf.mul(x, x)))));
    return tf.mul(tf.mul(0.5, x), tf.add(1, tf.tanh(inner)));
  });
}

/** Forward and backward kernels joined by tf.customGrad (the tape sees y only). */
function fused(x: tf.Tensor): tf.Tensor {
  const f = tf.customGrad(
    ((input: tf.Tensor, save: tf.GradSaveFunc) => {
      // The kernel also returns tanh(...), which the backward pass reuses.
      const [value, t] = tf.engine().runKernel(GELU, { x: input }, {}) as tf.Tensor[];
      save([input, t]);
      const gradFunc = (dy: tf.Tensor, [sx, st]: tf.Tensor[]) =>
        tf.engine().runKernel(GELU_GRAD, { x: sx, t: st, dy }, {}) as tf.Tensor;
      return { value, gradFunc };
    }) as unknown as Parameters<typeof tf.customGrad>[0],
  );
  return f(x);
}

// ------------------------------------------------------------------------------- cpu kernels

/** Forward on cpu: y = gelu(x) and t = tanh(...), which the backward pass reuses. */
const forwardCpu: FastKernel = ({ inputs, backend }: KernelArgs) => {
  const be = backend as CpuBackend;
  const x = f32(be, inputs.x);
  if (x == null) return null;
  const out = allocF32(be, x.length, false), tanh = allocF32(be, x.length, false);
  for (let i = 0; i < x.length; i++) {
    const v = x[i], t = fastTanh(C * (v + K * v * v * v));
    tanh[i] = t;
    out[i] = 0.5 * v * (1 + t);
  }
  return [
    be.makeTensorInfo(inputs.x!.shape, "float32", out),
    be.makeTensorInfo(inputs.x!.shape, "float32", tanh),
  ];
};

/** Backward on cpu: dx = dy * gelu'(x), from x and the forward pass's t. */
const backwardCpu: FastKernel = ({ inputs, backend }: KernelArgs) => {
  const be = backend as CpuBackend;
  const x = f32(be, inputs.x), t = f32(be, inputs.t), dy = f32(be, inputs.dy);
  if (x == null || t == null || dy == null || x.length !== dy.length) return null;
  const out = allocF32(be, x.length, false);
  for (let i = 0; i < x.length; i++) {
    const v = x[i], ti = t[i];
    out[i] = dy[i] * (0.5 * (1 + ti) + 0.5 * v * (1 - ti * ti) * C * (1 + 3 * K * v * v));
  }
  return be.makeTensorInfo(inputs.x!.shape, "float32", out);
};

// ---------------------------------------------------------------------------- webgpu kernels

/** Forward on WebGPU: t = tanh(...) first, then y from x and t (one pass each). */
const forwardWebGpu: FastKernel = ({ inputs, backend }: KernelArgs) => {
  const x = inputs.x;
  const t = elementwise(backend, {
    key: "gelu_t",
    inputs: [["x", x]],
    outShape: x.shape.slice(),
    prelude: WGSL_TANH,
    code: `
  let v = x[index];
  result[index] = llmTanh(${C} * (v + ${K} * v * v * v));`,
  });
  const y = elementwise(backend, {
    key: "gelu_y",
    inputs: [["x", x], ["t", t]],
    outShape: x.shape.slice(),
    code: "result[index] = 0.5 * x[index] * (1.0 + t[index]);",
  });
  return [y, t];
};

/** Backward on WebGPU: dx = dy * gelu'(x) from x and t, one pass. */
const backwardWebGpu: FastKernel = ({ inputs, backend }: KernelArgs) =>
  elementwise(backend, {
    key: "gelu_dx",
    inputs: [["x", inputs.x], ["t", inputs.t], ["dy", inputs.dy]],
    outShape: inputs.x.shape.slice(),
    code: `
  let v = x[index];
  let u = t[index];
  result[index] = dy[index] *
    (0.5 * (1.0 + u) + 0.5 * v * (1.0 - u * u) * ${C} * (1.0 + ${3 * K} * v * v));`,
  });

// ------------------------------------------------------------------------------ registration

/** What lib/kernels/mod.ts registers for this op. */
export const geluOp: FusedOp = {
  kernels: {
    cpu: { [GELU]: forwardCpu, [GELU_GRAD]: backwardCpu },
    webgpu: { [GELU]: forwardWebGpu, [GELU_GRAD]: backwardWebGpu },
  },
};
