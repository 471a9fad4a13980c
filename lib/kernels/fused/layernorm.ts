/**
 * The book's LayerNorm (biased variance, eps inside the square root, scale and shift) over the
 * last axis: the op `layerNorm`, its composite fallback, and the fused kernels `LlmLayerNorm` /
 * `LlmLayerNormGrad` (one pass per row each way; the composite runs about ten elementwise
 * kernels forward and twenty backward) with their registration.
 *
 *   forward:  xhat = (x - mean) * rstd,  rstd = 1 / sqrt(var + eps),  y = xhat * scale + shift
 *   backward: g = dy * scale,  dx = rstd * (g - mean(g) - xhat * mean(g * xhat)),
 *             dscale = sum over rows of dy * xhat,  dshift = sum over rows of dy
 */
import * as tf from "@tensorflow/tfjs";
import { LAYER_NORM, LAYER_NORM_GRAD } from "../names.ts";
import { allocF32 } from "../pool.ts";
import { elementwise, ROW_THREADS, rowwise, type Uniform } from "../webgpu.ts";
import type { CpuBackend, FastKernel, FusedOp, KernelArgs } from "../util.ts";
import { f32, hasKernels, sizeOf } from "../util.ts";

/** LayerNorm of x over its last axis: the fused kernels where the backend has them. */
export function layerNorm(
  x: tf.Tensor,
  scale: tf.Tensor,
  shift: tf.Tensor,
  eps: number,
): tf.Tensor {
  if (hasKernels(LAYER_NORM, LAYER_NORM_GRAD)) return fused(x, scale, shift, eps);
  return tf.tidy(() => {
    const { mean, variance } = tf.moments(x, -1, true);
    const norm = tf.div(tf.sub(x, mean), tf.sqrt(tf.add(variance, eps)));
    return tf.add(tf.mul(norm, scale), shift);
  });
}

/** Forward and backward kernels joined by tf.customGrad (the tape sees y only). */
function fused(x: tf.Tensor, scale: tf.Tensor, shift: tf.Tensor, eps: number): tf.Tensor {
  const f = tf.customGrad(
    ((input: tf.Tensor, s: tf.Tensor, b: tf.Tensor, save: tf.GradSaveFunc) => {
      const inputs = { x: input, scale: s, shift: b };
      const [y, mean, rstd] = tf.engine().runKernel(LAYER_NORM, inputs, { eps }) as tf.Tensor[];
      save([input, s, mean, rstd]);
      const gradFunc = (dy: tf.Tensor, [sx, ss, sm, sr]: tf.Tensor[]) =>
        tf.engine().runKernel(
          LAYER_NORM_GRAD,
          { x: sx, scale: ss, mean: sm, rstd: sr, dy },
          {},
        ) as tf.Tensor[];
      return { value: y, gradFunc };
    }) as unknown as Parameters<typeof tf.customGrad>[0],
  );
  return f(x, scale, shift);
}

// ------------------------------------------------------------------------------- cpu kernels

/** Forward on cpu: y (x's shape), mean and rstd (one per row). */
const forwardCpu: FastKernel = ({ inputs, attrs, backend }: KernelArgs) => {
  const be = backend as CpuBackend;
  const x = f32(be, inputs.x), scale = f32(be, inputs.scale), shift = f32(be, inputs.shift);
  if (x == null || scale == null || shift == null) return null;
  const d = scale.length, rows = x.length / d, eps = (attrs as { eps: number }).eps;
  if (shift.length !== d || !Number.isInteger(rows)) return null;
  const y = allocF32(be, x.length, false),
    mean = new Float32Array(rows),
    rstd = new Float32Array(rows);
  for (let r = 0, o = 0; r < rows; r++, o += d) {
    let sum = 0;
    for (let i = 0; i < d; i++) sum += x[o + i];
    const mu = sum / d;
    let sq = 0;
    for (let i = 0; i < d; i++) {
      const c = x[o + i] - mu;
      sq += c * c;
    }
    const rs = 1 / Math.sqrt(sq / d + eps);
    mean[r] = mu;
    rstd[r] = rs;
    for (let i = 0; i < d; i++) y[o + i] = (x[o + i] - mu) * rs * scale[i] + shift[i];
  }
  const rowShape = inputs.x!.shape.slice(0, -1);
  return [
    be.makeTensorInfo(inputs.x!.shape, "float32", y),
    be.makeTensorInfo(rowShape, "float32", mean),
    be.makeTensorInfo(rowShape, "float32", rstd),
  ];
};

/** Backward on cpu: dx, dscale, dshift. */
const backwardCpu: FastKernel = ({ inputs, backend }: KernelArgs) => {
  const be = backend as CpuBackend;
  const x = f32(be, inputs.x), scale = f32(be, inputs.scale), dy = f32(be, inputs.dy);
  const mean = f32(be, inputs.mean), rstd = f32(be, inputs.rstd);
  if (x == null || scale == null || dy == null || mean == null || rstd == null) return null;
  const d = scale.length, rows = x.length / d;
  const dx = allocF32(be, x.length, false),
    dscale = new Float32Array(d),
    dshift = new Float32Array(d);
  for (let r = 0, o = 0; r < rows; r++, o += d) {
    const mu = mean[r], rs = rstd[r];
    let sumG = 0, sumGX = 0;
    for (let i = 0; i < d; i++) {
      const xhat = (x[o + i] - mu) * rs, g = dy[o + i] * scale[i];
      sumG += g;
      sumGX += g * xhat;
      dscale[i] += dy[o + i] * xhat;
      dshift[i] += dy[o + i];
    }
    const mG = sumG / d, mGX = sumGX / d;
    for (let i = 0; i < d; i++) {
      const xhat = (x[o + i] - mu) * rs;
      dx[o + i] = rs * (dy[o + i] * scale[i] - mG - xhat * mGX);
    }
  }
  return [
    be.makeTensorInfo(inputs.x!.shape, "float32", dx),
    be.makeTensorInfo([d], "float32", dscale),
    be.makeTensorInfo([d], "float32", dshift),
  ];
};

// ---------------------------------------------------------------------------- webgpu kernels

/** Mean (or rstd, when `rstd`) of each row of x, one workgroup per row; two passes like the cpu. */
function rowStat(backend: unknown, x: tf.TensorInfo, d: number, eps: number, rstd: boolean) {
  const rows = sizeOf(x.shape) / d;
  return rowwise(backend, rows, {
    key: rstd ? "ln_rstd" : "ln_mean",
    inputs: [["x", x]],
    outShape: x.shape.slice(0, -1),
    uniforms: [{ name: "d", type: "i32", value: d }, { name: "rows", type: "i32", value: rows }, {
      name: "eps",
      type: "f32",
      value: eps,
    }],
    code: `
  let r = min(row, uniforms.rows - 1);
  let d = uniforms.d;
  var s = 0.0;
  for (var c = tid; c < d; c = c + ${ROW_THREADS}) { s = s + x[r * d + c]; }
  let mu = rowSum(tid, s) / f32(d);
  ${
      rstd
        ? `var q = 0.0;
  for (var c = tid; c < d; c = c + ${ROW_THREADS}) { let e = x[r * d + c] - mu; q = q + e * e; }
  let value = 1.0 / sqrt(rowSum(tid, q) / f32(d) + uniforms.eps);`
        : "let value = mu;"
    }
  if (tid == 0 && row < uniforms.rows) { result[r] = value; }`,
  });
}

/** Forward on WebGPU: mean and rstd per row, then y elementwise. */
const forwardWebGpu: FastKernel = ({ inputs, attrs, backend }: KernelArgs) => {
  const { x, scale, shift } = inputs;
  const d = scale.shape[0], eps = (attrs as { eps: number }).eps;
  const mean = rowStat(backend, x, d, eps, false), rstd = rowStat(backend, x, d, eps, true);
  const y = elementwise(backend, {
    key: "ln_y",
    inputs: [["x", x], ["mean", mean], ["rstd", rstd], ["scale", scale], ["shift", shift]],
    outShape: x.shape.slice(),
    uniforms: [{ name: "d", type: "i32", value: d }],
    code: `
  let r = index / uniforms.d;
  let c = index % uniforms.d;
  result[index] = (x[index] - mean[r]) * rstd[r] * scale[c] + shift[c];`,
  });
  return [y, mean, rstd];
};

/** Backward on WebGPU: dx one workgroup per row; dscale and dshift one invocation per column. */
const backwardWebGpu: FastKernel = ({ inputs, backend }: KernelArgs) => {
  const { x, scale, mean, rstd, dy } = inputs;
  const d = scale.shape[0], rows = sizeOf(x.shape) / d;
  const all: [string, tf.TensorInfo][] = [
    ["x", x],
    ["scale", scale],
    ["mean", mean],
    ["rstd", rstd],
    ["dy", dy],
  ];
  const uniforms: Uniform[] = [
    { name: "d", type: "i32", value: d },
    { name: "rows", type: "i32", value: rows },
  ];
  const dx = rowwise(backend, rows, {
    key: "ln_dx",
    inputs: all,
    outShape: x.shape.slice(),
    uniforms,
    code: `
  let r = min(row, uniforms.rows - 1);
  let d = uniforms.d;
  let mu = mean[r];
  let rs = rstd[r];
  var sg = 0.0;
  var sgx = 0.0;
  for (var c = tid; c < d; c = c + ${ROW_THREADS}) {
    let g = dy[r * d + c] * scale[c];
    sg = sg + g;
    sgx = sgx + g * (x[r * d + c] - mu) * rs;
  }
  let mg = rowSum(tid, sg) / f32(d);
  let mgx = rowSum(tid, sgx) / f32(d);
  if (row < uniforms.rows) {
    for (var c = tid; c < d; c = c + ${ROW_THREADS}) {
      let xhat = (x[r * d + c] - mu) * rs;
      result[r * d + c] = rs * (dy[r * d + c] * scale[c] - mg - xhat * mgx);
    }
  }`,
  });
  // Every input a program declares must be read (auto layouts drop unused bindings).
  const columnSum = (key: string, ins: [string, tf.TensorInfo][], term: string) =>
    elementwise(backend, {
      key,
      inputs: ins,
      outShape: [d],
      uniforms,
      code: `
  var s = 0.0;
  for (var r = 0; r < uniforms.rows; r = r + 1) {
    let i = r * uniforms.d + index;
    s = s + ${term};
  }
  result[index] = s;`,
    });
  const dscale = columnSum(
    "ln_dscale",
    [["x", x], ["mean", mean], ["rstd", rstd], ["dy", dy]],
    "dy[i] * (x[i] - mean[r]) * rstd[r]",
  );
  const dshift = columnSum("ln_dshift", [["dy", dy]], "dy[i]");
  return [dx, dscale, dshift];
};

// ------------------------------------------------------------------------------ registration

/** What lib/kernels/mod.ts registers for this op. */
export const layerNormOp: FusedOp = {
  kernels: {
    cpu: { [LAYER_NORM]: forwardCpu, [LAYER_NORM_GRAD]: backwardCpu },
    webgpu: { [LAYER_NORM]: forwardWebGpu, [LAYER_NORM_GRAD]: backwardWebGpu },
  },
};
