/**
 * Multi-step training parity between backends: one tiny GPT (seed 1, dropout 0), the same batches,
 * AdamW with global-norm clipping at 1.0, trained step by step first on tfjs' stock cpu kernels and
 * then on the backend this suite runs on (the fast cpu kernels by default; WebGPU through Mesa's
 * lavapipe in CI with LLM_BACKEND=webgpu). Losses and gradient norms must agree at every step: a
 * single step cannot show state carried wrongly from one step to the next.
 */
import * as tf from "@tensorflow/tfjs";
import assert from "node:assert/strict";
import { initBackend, useStockCpu } from "../lib/backend.ts";
import type { GPTConfig } from "../lib/model/config.ts";
import { GPTModel } from "../lib/model/gpt.ts";
import { AdamW } from "../lib/train/adamw.ts";
import { trainStep } from "../lib/train/train.ts";
import { assertAllClose } from "./fixtures.ts";

// 3 layers: 44 parameter tensors, more than a WebGPU shader may bind at once (8 by default,
// 32 on lavapipe), so the global norm's sum of squares has to be split.
const CONFIG: GPTConfig = {
  vocabSize: 64,
  contextLength: 8,
  embDim: 16,
  nHeads: 2,
  nLayers: 3,
  dropRate: 0,
  qkvBias: true,
};
const STEPS = 6;

/** Batch s: two rows of 8 ids and their next-token targets. */
function batch(s: number): { inputs: tf.Tensor2D; targets: tf.Tensor2D } {
  const ids = Array.from({ length: 18 }, (_, i) => (i * 7 + 3 * s + 1) % CONFIG.vocabSize);
  return {
    inputs: tf.tensor2d([ids.slice(0, 8), ids.slice(9, 17)], [2, 8], "int32"),
    targets: tf.tensor2d([ids.slice(1, 9), ids.slice(10, 18)], [2, 8], "int32"),
  };
}

/** Losses, gradient norms (before clipping) and tensor counts of STEPS clipped AdamW steps. */
async function train(): Promise<{ losses: number[]; norms: number[]; tensors: number[] }> {
  const model = new GPTModel(CONFIG, { seed: 1 });
  const optimizer = new AdamW(model.namedParameters(), { lr: 4e-3, weightDecay: 0.1 });
  const out = { losses: [] as number[], norms: [] as number[], tensors: [] as number[] };
  for (let s = 0; s < STEPS; s++) {
    const b = batch(s);
    const r = await trainStep(model, optimizer, b, { lr: 4e-3, maxGradNorm: 1.0 });
    tf.dispose([b.inputs, b.targets]);
    out.losses.push(r.loss);
    out.norms.push(r.gradNorm);
    out.tensors.push(tf.memory().numTensors);
  }
  optimizer.dispose();
  model.dispose();
  return out;
}

await useStockCpu();
const reference = await train();
const backend = await initBackend({ log: false });

Deno.test(`${STEPS} clipped AdamW steps of a 3-layer GPT give the stock cpu kernels' losses and gradient norms on ${backend.name} (rtol 1e-4)`, async () => {
  assert.equal(tf.getBackend(), backend.name);
  assert.ok(reference.norms.every((n) => n > 1), `clipping acts at every step: ${reference.norms}`);
  const got = await train();
  assertAllClose(got.norms, reference.norms, { rtol: 1e-4, atol: 1e-6, label: "gradient norms" });
  assertAllClose(got.losses, reference.losses, { rtol: 1e-4, atol: 1e-6, label: "losses" });
  assert.ok(got.losses[STEPS - 1] < got.losses[0], `loss goes down: ${got.losses}`);
  assert.deepEqual(new Set(got.tensors).size, 1, `tensor count flat: ${got.tensors}`);
});

Deno.test(`tf.addN of 100 tensors is their sum on ${backend.name} (one kernel cannot bind them all on WebGPU)`, async () => {
  const xs = Array.from({ length: 100 }, (_, i) => tf.fill([3], i + 1));
  const sum = tf.addN(xs);
  assert.deepEqual(Array.from(await sum.data()), [5050, 5050, 5050]);
  tf.dispose([...xs, sum]);
});
