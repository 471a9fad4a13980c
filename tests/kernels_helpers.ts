/** Helpers for the fast-kernel tests: run code under stock and fast kernels and compare. */
import * as tf from "@tensorflow/tfjs";
import assert from "node:assert/strict";
import { registerFastKernels, restoreStockKernels } from "../lib/kernels/mod.ts";
import { useStockCpu } from "../lib/backend.ts";

export async function cpu(): Promise<void> {
  await useStockCpu();
  await tf.ready();
}

/** Runs `f` with the stock kernels, then with the fast ones; returns both results as arrays. */
export function stockAndFast(
  f: () => tf.Tensor | tf.Tensor[],
): { stock: Float32Array[]; fast: Float32Array[]; shapes: number[][] } {
  const run = () =>
    tf.tidy(() => {
      const out = f();
      const list = Array.isArray(out) ? out : [out];
      return {
        values: list.map((t) => Float32Array.from(t.dataSync() as ArrayLike<number>)),
        shapes: list.map((t) => t.shape),
      };
    });
  restoreStockKernels();
  const stock = run();
  const status = registerFastKernels({ force: true });
  assert.ok(status.enabled, status.reason);
  const fast = run();
  assert.deepEqual(fast.shapes, stock.shapes, "output shapes differ");
  return { stock: stock.values, fast: fast.values, shapes: fast.shapes };
}

/** Elementwise |a - e| <= atol + rtol * |e|, with NaN == NaN and equal infinities. */
export function assertClose(
  actual: ArrayLike<number>,
  expected: ArrayLike<number>,
  rtol = 1e-5,
  atol = 1e-6,
  what = "",
): void {
  assert.equal(actual.length, expected.length, `${what}: lengths differ`);
  for (let i = 0; i < expected.length; i++) {
    const a = actual[i], e = expected[i];
    if (Number.isNaN(e)) {
      assert.ok(Number.isNaN(a), `${what}[${i}]: expected NaN, got ${a}`);
      continue;
    }
    if (!Number.isFinite(e)) {
      assert.equal(a, e, `${what}[${i}]`);
      continue;
    }
    const ok = Math.abs(a - e) <= atol + rtol * Math.abs(e);
    if (!ok) assert.fail(`${what}[${i}]: got ${a}, expected ${e}`);
  }
}

/** Runs f under stock and fast kernels and asserts all outputs are close. */
export function assertFastMatchesStock(
  f: () => tf.Tensor | tf.Tensor[],
  what: string,
  rtol = 1e-5,
  atol = 1e-6,
): void {
  const { stock, fast } = stockAndFast(f);
  stock.forEach((s, i) => assertClose(fast[i], s, rtol, atol, `${what} #${i}`));
}

/** A seeded float32 tensor with values in [lo, hi). */
export function rand(shape: number[], seed: number, lo = -2, hi = 2): tf.Tensor {
  return tf.randomUniform(shape, lo, hi, "float32", seed);
}
