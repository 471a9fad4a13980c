/**
 * The causal softmax of attention: softmax(scale * scores + mask) over the keys, where the mask
 * hides every key after the query's own position (query i of Tq sits at absolute position
 * Tk - Tq + i, so a KV cache of Tk - Tq earlier tokens works too). The op `causalSoftmax`, its
 * composite fallback (scale, add an additive -inf mask, softmax: three passes and a [Tq, Tk]
 * mask upload), and the fused WebGPU kernels `LlmCausalSoftmax` / `LlmCausalSoftmaxGrad`:
 *
 *   forward:  w[j] = exp(scale * s[j] - m) / sum over visible k of exp(scale * s[k] - m), 0 if hidden
 *   backward: ds[j] = scale * w[j] * (dw[j] - sum over k of dw[k] * w[k])
 */
import * as tf from "@tensorflow/tfjs";
import { CAUSAL_SOFTMAX, CAUSAL_SOFTMAX_GRAD } from "../names.ts";
import type { FastKernel, FusedOp, KernelArgs } from "../util.ts";
import { hasKernels, sizeOf } from "../util.ts";
import { ROW_THREADS, rowwise, type Uniform } from "../webgpu.ts";

/** Attention weights from raw scores [..., Tq, Tk] (q . k, not yet scaled). */
export function causalSoftmax(scores: tf.Tensor, scale: number): tf.Tensor {
  if (scores.dtype === "float32" && hasKernels(CAUSAL_SOFTMAX, CAUSAL_SOFTMAX_GRAD)) {
    return fused(scores, scale);
  }
  return tf.tidy(() => {
    const [q, k] = scores.shape.slice(-2);
    return tf.softmax(tf.add(tf.mul(scores, scale), causalMask(q, k)));
  });
}

/** Additive mask [q, k]: 0 where query i (at absolute position k-q+i) may see key j, else -inf. */
function causalMask(q: number, k: number): tf.Tensor2D {
  const data = new Float32Array(q * k);
  for (let i = 0; i < q; i++) {
    for (let j = k - q + i + 1; j < k; j++) data[i * k + j] = -Infinity;
  }
  return tf.tensor2d(data, [q, k]);
}

/** Forward and backward kernels joined by tf.customGrad; the backward needs only the weights. */
function fused(scores: tf.Tensor, scale: number): tf.Tensor {
  const f = tf.customGrad(
    ((s: tf.Tensor, save: tf.GradSaveFunc) => {
      const w = tf.engine().runKernel(CAUSAL_SOFTMAX, { x: s }, { scale }) as tf.Tensor;
      save([w]);
      const gradFunc = (dw: tf.Tensor, [sw]: tf.Tensor[]) =>
        tf.engine().runKernel(CAUSAL_SOFTMAX_GRAD, { w: sw, dw }, { scale }) as tf.Tensor;
      return { value: w, gradFunc };
    }) as unknown as Parameters<typeof tf.customGrad>[0],
  );
  return f(scores);
}

// ---------------------------------------------------------------------------- webgpu kernels

function rowUniforms(t: tf.TensorInfo, scale: number): { rows: number; uniforms: Uniform[] } {
  const [q, k] = t.shape.slice(-2), rows = sizeOf(t.shape) / k;
  return {
    rows,
    uniforms: [
      { name: "q", type: "i32", value: q },
      { name: "k", type: "i32", value: k },
      { name: "rows", type: "i32", value: rows },
      { name: "scale", type: "f32", value: scale },
    ],
  };
}

/** WGSL: row `r` (clamped), its offset and how many keys its query may see. */
const ROW_WGSL = `
  let r = min(row, uniforms.rows - 1);
  let k = uniforms.k;
  let base = r * k;
  let visible = k - uniforms.q + r % uniforms.q + 1;`;

/** Forward on WebGPU: one workgroup per row; hidden keys get exactly 0. */
const forwardWebGpu: FastKernel = ({ inputs, attrs, backend }: KernelArgs) => {
  const { rows, uniforms } = rowUniforms(inputs.x, attrs.scale);
  return rowwise(backend, rows, {
    key: "causal_softmax",
    inputs: [["x", inputs.x]],
    outShape: inputs.x.shape.slice(),
    uniforms,
    code: `${ROW_WGSL}
  var m = -3.402823e+38;
  for (var c = tid; c < visible; c = c + ${ROW_THREADS}) { m = max(m, uniforms.scale * x[base + c]); }
  m = rowMax(tid, m);
  var s = 0.0;
  for (var c = tid; c < visible; c = c + ${ROW_THREADS}) { s = s + exp(uniforms.scale * x[base + c] - m); }
  s = rowSum(tid, s);
  if (row < uniforms.rows) {
    for (var c = tid; c < k; c = c + ${ROW_THREADS}) {
      result[base + c] = select(0.0, exp(uniforms.scale * x[base + c] - m) / s, c < visible);
    }
  }`,
  });
};

/** Backward on WebGPU: one workgroup per row, from the weights and their gradient. */
const backwardWebGpu: FastKernel = ({ inputs, attrs, backend }: KernelArgs) => {
  const { rows, uniforms } = rowUniforms(inputs.w, attrs.scale);
  return rowwise(backend, rows, {
    key: "causal_softmax_grad",
    inputs: [["w", inputs.w], ["dw", inputs.dw]],
    outShape: inputs.w.shape.slice(),
    uniforms,
    code: `${ROW_WGSL}
  var d = 0.0;
  for (var c = tid; c < visible; c = c + ${ROW_THREADS}) { d = d + dw[base + c] * w[base + c]; }
  d = rowSum(tid, d);
  if (row < uniforms.rows) {
    for (var c = tid; c < k; c = c + ${ROW_THREADS}) {
      result[base + c] = uniforms.scale * w[base + c] * (dw[base + c] - d);
    }
  }`,
  });
};

// ------------------------------------------------------------------------------ registration

/** What lib/kernels/mod.ts registers for this op. */
export const causalSoftmaxOp: FusedOp = {
  kernels: { webgpu: { [CAUSAL_SOFTMAX]: forwardWebGpu, [CAUSAL_SOFTMAX_GRAD]: backwardWebGpu } },
};
