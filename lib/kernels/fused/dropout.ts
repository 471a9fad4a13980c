/**
 * The dropout mask from a seed: 0 with probability `rate`, else 1 / (1 - rate). Element i
 * draws from a counter-based mulberry32 (state seed + (i + 1) * 0x6d2b79f5, then its output
 * mix), so any element can be computed on its own: the fused WebGPU kernel `LlmDropoutMask`
 * makes the same mask on the GPU, bit for bit, without an upload; elsewhere a JS loop makes it.
 */
import * as tf from "@tensorflow/tfjs";
import { DROPOUT_MASK } from "../names.ts";
import type { FastKernel, FusedOp, KernelArgs } from "../util.ts";
import { hasKernels } from "../util.ts";
import { elementwise } from "../webgpu.ts";

/** Attributes of LlmDropoutMask. */
interface MaskAttrs {
  shape: number[];
  rate: number;
  seed: number;
}

/** A tensor of 0 (probability `rate`) and 1 / (1 - rate), the same for the same seed. */
export function dropoutMask(shape: number[], rate: number, seed: number): tf.Tensor {
  if (hasKernels(DROPOUT_MASK)) {
    const attrs: MaskAttrs = { shape, rate, seed };
    return tf.engine().runKernel(
      DROPOUT_MASK,
      {},
      attrs as unknown as tf.NamedAttrMap,
    ) as tf.Tensor;
  }
  const n = shape.reduce((a, b) => a * b, 1), mask = new Float32Array(n);
  const keep = 1 / (1 - rate), threshold = rate * 4294967296;
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    if (((t ^ (t >>> 14)) >>> 0) >= threshold) mask[i] = keep;
  }
  return tf.tensor(mask, shape, "float32");
}

/**
 * On WebGPU, one invocation per element, in u32 arithmetic (wrapping like Math.imul). The
 * float threshold rate * 2^32 becomes the integer ceil(rate * 2^32): the same comparison.
 */
const maskWebGpu: FastKernel = ({ attrs, backend }: KernelArgs) => {
  const { shape, rate, seed } = attrs as MaskAttrs;
  const threshold = Math.ceil(rate * 4294967296);
  const all = threshold > 0xffffffff; // rate 1: nothing kept
  return elementwise(backend, {
    key: "dropout_mask",
    inputs: [],
    outShape: shape.slice(),
    uniforms: [
      { name: "seed", type: "u32", value: seed >>> 0 },
      { name: "threshold", type: "u32", value: all ? 0xffffffff : threshold },
      { name: "keep", type: "f32", value: all ? 0 : 1 / (1 - rate) },
    ],
    code: `
  var t = uniforms.seed + (u32(index) + 1u) * 0x6d2b79f5u;
  t = (t ^ (t >> 15u)) * (t | 1u);
  t = t ^ (t + (t ^ (t >> 7u)) * (t | 61u));
  result[index] = select(0.0, uniforms.keep, (t ^ (t >> 14u)) >= uniforms.threshold);`,
  });
};

/** What lib/kernels/mod.ts registers for this op (WebGPU only: the cpu loop is the op itself). */
export const dropoutOp: FusedOp = { kernels: { webgpu: { [DROPOUT_MASK]: maskWebGpu } } };
