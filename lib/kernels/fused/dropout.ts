/**
 * The dropout mask from a seed: 0 with probability `rate`, else 1 / (1 - rate). Element i
 * draws from a counter-based mulberry32 (state seed + (i + 1) * 0x6d2b79f5, then its output
 * mix), so any element can be computed on its own: the same mask on every backend.
 */
import * as tf from "@tensorflow/tfjs";

/** A tensor of 0 (probability `rate`) and 1 / (1 - rate), the same for the same seed. */
export function dropoutMask(shape: number[], rate: number, seed: number): tf.Tensor {
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
