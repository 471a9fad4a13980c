/**
 * `LlmGelu` / `LlmGeluGrad`: GELU's tanh approximation and its derivative in one pass each. The
 * composite version is ~8 elementwise kernels forward and ~15 backward over a [B, T, 4E] tensor
 * per layer; fused, each direction reads its inputs once.
 *
 *   y  = 0.5 x (1 + t),  t = tanh(c (x + 0.044715 x^3)),  c = sqrt(2/pi)
 *   dy/dx = 0.5 (1 + t) + 0.5 x (1 - t^2) c (1 + 3 * 0.044715 x^2)
 */
import { allocF32 } from "./pool.ts";
import { fastTanh } from "./elementwise.ts";
import { type CpuBackend, f32, type FastKernel, type KernelArgs } from "./util.ts";

export const GELU = "LlmGelu";
export const GELU_GRAD = "LlmGeluGrad";
const C = Math.sqrt(2 / Math.PI), K = 0.044715;

/** Outputs y = gelu(x) and t = tanh(...), which the backward pass reuses. */
export const gelu: FastKernel = ({ inputs, backend }: KernelArgs) => {
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

/** dx = dy * gelu'(x), from x and the forward pass's t. */
export const geluGrad: FastKernel = ({ inputs, backend }: KernelArgs) => {
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
