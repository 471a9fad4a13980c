import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { clipGradNorm, clipGradNormInPlace, globalNorm } from "../lib/train/clip.ts";
import { assertAllClose, readFixtureJson } from "./fixtures.ts";
import { initBackend } from "../lib/backend.ts";

// Whatever backend runs the suite (CI also runs this file on WebGPU).
await initBackend({ log: false });

interface ClipFixture {
  shapes: Record<string, number[]>;
  grads: Record<string, number[]>[];
  constant_lr: { steps: { total_norm: number; clipped_grads: Record<string, number[]> }[] };
}
const fx = await readFixtureJson<ClipFixture>("adamw.json");

function grads(step: number): Map<string, tf.Tensor> {
  return new Map(
    Object.entries(fx.shapes).map(([k, shape]) => [k, tf.tensor(fx.grads[step][k], shape)]),
  );
}

Deno.test("clipGradNorm() matches torch's clip_grad_norm_(max_norm=1.0) on 5 gradient sets (norms 3.55, 0.23, 2.17, 0.46, 5.06)", async () => {
  for (const [i, expected] of fx.constant_lr.steps.entries()) {
    const g = grads(i);
    const { grads: clipped, totalNorm } = await clipGradNorm(g, 1.0);
    assertAllClose([totalNorm], [expected.total_norm], { rtol: 1e-6, label: `norm ${i}` });
    for (const [k, t] of clipped) {
      assertAllClose(await t.data(), expected.clipped_grads[k], {
        rtol: 1e-5,
        atol: 1e-8,
        label: `step ${i} ${k}`,
      });
    }
    tf.dispose([...g.values(), ...clipped.values()]);
  }
  assert.deepEqual(
    fx.constant_lr.steps.map((s) => Number(s.total_norm.toFixed(2))),
    [3.55, 0.23, 2.17, 0.46, 5.06],
  );
});

Deno.test("clipGradNorm() returns the norm before clipping and scales by maxNorm / (norm + 1e-6)", async () => {
  const g = { a: tf.tensor1d([3, 0]), b: tf.tensor2d([[0], [4]]) };
  const { grads: out, totalNorm } = await clipGradNorm(g, 1.0);
  assert.equal(totalNorm, 5);
  const coef = 1 / (5 + 1e-6);
  assertAllClose(await out.a.data(), [3 * coef, 0], { rtol: 1e-6 });
  assertAllClose(await out.b.data(), [0, 4 * coef], { rtol: 1e-6 });
  assert.deepEqual(out.b.shape, [2, 1]);
  tf.dispose([g.a, g.b, out.a, out.b]);
});

Deno.test("clipGradNorm() leaves gradients under maxNorm unchanged, in new tensors, and never disposes its inputs", async () => {
  const g = new Map([["w", tf.tensor1d([0.3, 0.4])]]);
  const before = tf.memory().numTensors;
  const { grads: out, totalNorm } = await clipGradNorm(g, 1.0);
  assertAllClose([totalNorm], [0.5], { rtol: 1e-6 });
  assert.ok(out instanceof Map);
  assert.notEqual(out.get("w"), g.get("w"));
  assert.equal(g.get("w")!.isDisposed, false);
  assertAllClose(await out.get("w")!.data(), [0.3, 0.4], { rtol: 1e-7 });
  // exactly one new tensor per gradient, nothing else kept
  assert.equal(tf.memory().numTensors, before + 1);
  out.get("w")!.dispose();
  assert.equal(tf.memory().numTensors, before);
  g.get("w")!.dispose();
});

Deno.test("globalNorm() is the L2 norm over all gradients together; no gradients give 0", async () => {
  const g = { a: tf.tensor1d([1, 2]), b: tf.tensor1d([2]) };
  assert.equal(await globalNorm(g), 3);
  assert.equal(await globalNorm({}), 0);
  const empty = await clipGradNorm(new Map(), 1.0);
  assert.equal(empty.totalNorm, 0);
  assert.equal(empty.grads.size, 0);
  tf.dispose([g.a, g.b]);
});

Deno.test("clipGradNorm() rejects a non-positive maxNorm", async () => {
  const g = { a: tf.tensor1d([1]) };
  await assert.rejects(() => clipGradNorm(g, 0), /maxNorm must be positive/);
  g.a.dispose();
});

Deno.test("clipGradNormInPlace() gives clipGradNorm's values and norm, replacing and freeing the originals", async () => {
  const make = () => new Map([["a", tf.tensor1d([3, 0])], ["b", tf.tensor1d([0, 4])]]);
  const ref = make();
  const { grads: want, totalNorm } = await clipGradNorm(ref, 1.0);
  const mine = make();
  const before = tf.memory().numTensors;
  const norm = await clipGradNormInPlace(mine, 1.0);
  assert.equal(norm, totalNorm);
  assert.equal(tf.memory().numTensors, before, "originals freed, copies kept");
  for (const [k, t] of want) assert.deepEqual(await mine.get(k)!.data(), await t.data());
  // Below the limit nothing changes (coefficient clamped to 1): the same tensors stay.
  const small = new Map([["w", tf.tensor1d([0.3, 0.4])]]);
  const w = small.get("w")!;
  await clipGradNormInPlace(small, 1.0);
  assert.equal(small.get("w"), w);
  tf.dispose([...ref.values(), ...want.values(), ...mine.values(), w]);
});
