/**
 * Reads back from the GPU per training step: a read waits for all queued GPU work, so a step
 * that reads several times stalls several times. The active backend's `read` and `readSync` are
 * counted while `trainStep`, `accumulatedStep` and `trainModel` run. On WebGPU only (CI: lavapipe,
 * with the fused kernels and with LLM_FAST_KERNELS=0); on the cpu a read is free and not counted.
 */
import * as tf from "@tensorflow/tfjs";
import assert from "node:assert/strict";
import { initBackend } from "../lib/backend.ts";
import { GPTDatasetV1, TextDataLoader } from "../lib/data/text.ts";
import { GPTModel } from "../lib/model/gpt.ts";
import { AdamW } from "../lib/train/adamw.ts";
import type { Batch } from "../lib/train/loss.ts";
import { accumulatedStep, type StepOptions, trainStep } from "../lib/train/step.ts";
import { trainModel } from "../lib/train/train.ts";

const onGpu = (await initBackend({ log: false })).name === "webgpu";

const CONFIG = {
  vocabSize: 300,
  contextLength: 16,
  embDim: 32,
  nHeads: 2,
  nLayers: 2,
  dropRate: 0.1,
  qkvBias: true,
};

/** Counts the backend's reads while `f` runs. */
async function countReads<T>(f: () => Promise<T>): Promise<{ result: T; reads: number }> {
  const be = tf.backend() as unknown as Record<"read" | "readSync", (id: unknown) => unknown>;
  const { read, readSync } = be;
  let reads = 0;
  be.read = (id) => (reads++, read.call(be, id));
  be.readSync = (id) => (reads++, readSync.call(be, id));
  try {
    return { result: await f(), reads };
  } finally {
    Object.assign(be, { read, readSync });
  }
}

/** Batch `seed`: two rows of 16 ids, the targets of the second row all -100 when `ignored`. */
function batch(seed: number, ignored = false): Batch {
  return tf.tidy(() => {
    const targets = tf.randomUniform([2, 16], 0, 300, "int32", seed + 1) as tf.Tensor2D;
    const rowMask = tf.tensor2d([[1], [ignored ? 0 : 1]], [2, 1], "int32");
    return {
      inputs: tf.randomUniform([2, 16], 0, 300, "int32", seed) as tf.Tensor2D,
      targets: tf.where(tf.equal(rowMask, 1), targets, tf.fill([2, 16], -100, "int32")),
    };
  });
}

/** Three steps of `step` on a fresh model: reads, losses and tensor counts per step. */
async function threeSteps(step: (m: GPTModel, o: AdamW, s: number) => Promise<unknown>) {
  const model = new GPTModel(CONFIG, { seed: 1 }).train();
  const opt = new AdamW(model.namedParameters(), { lr: 1e-3, weightDecay: 0.1 });
  const out = { reads: [] as number[], tensors: [] as number[] };
  for (let s = 0; s < 3; s++) {
    out.reads.push((await countReads(() => step(model, opt, s))).reads);
    out.tensors.push(tf.memory().numTensors);
  }
  opt.dispose();
  model.dispose();
  return out;
}

const CASES: [string, StepOptions][] = [
  ["clipped", { lr: 1e-3, maxGradNorm: 1 }],
  ["norm-measuring", { lr: 1e-3, measureNorm: true }],
  ["plain", { lr: 1e-3 }],
];

for (const [what, opts] of CASES) {
  Deno.test({
    name: `on WebGPU a ${what} trainStep reads back once per step`,
    ignore: !onGpu,
    fn: async () => {
      const b = batch(1);
      const r = await threeSteps(async (m, o) => {
        const { loss, gradNorm } = await trainStep(m, o, b, opts);
        assert.ok(Number.isFinite(loss), `loss ${loss}`);
        assert.equal(Number.isFinite(gradNorm), opts.maxGradNorm != null || !!opts.measureNorm);
      });
      tf.dispose([b.inputs, b.targets]);
      assert.deepEqual(r.reads, [1, 1, 1]);
      assert.equal(new Set(r.tensors).size, 1, `tensor count flat: ${r.tensors}`);
    },
  });

  Deno.test({
    name: `on WebGPU a ${what} accumulatedStep over 3 micro-batches (one all -100) reads back once`,
    ignore: !onGpu,
    fn: async () => {
      const bs = [batch(1), batch(2, true), batch(3)];
      const r = await threeSteps(async (m, o) => {
        const { loss } = await accumulatedStep(m, o, bs, opts);
        assert.ok(Number.isFinite(loss), `loss ${loss}`);
      });
      tf.dispose(bs.flatMap((b) => [b.inputs, b.targets]));
      assert.deepEqual(r.reads, [1, 1, 1]);
      assert.equal(new Set(r.tensors).size, 1, `tensor count flat: ${r.tensors}`);
    },
  });
}

Deno.test({
  name: "on WebGPU an accumulatedStep without a counted target reads once and updates nothing",
  ignore: !onGpu,
  fn: async () => {
    const bs = [batch(1, true), batch(2, true)].map((b) => {
      const targets = tf.fill([2, 16], -100, "int32") as tf.Tensor2D;
      b.targets.dispose();
      return { inputs: b.inputs, targets };
    });
    const model = new GPTModel(CONFIG, { seed: 1 }).train();
    const opt = new AdamW(model.namedParameters(), { lr: 1e-3, weightDecay: 0.1 });
    const w = model.namedParameters().get("tok_emb.weight")!;
    const before = Float32Array.from(await w.data());
    const { result, reads } = await countReads(() =>
      accumulatedStep(model, opt, bs, { lr: 1e-3, maxGradNorm: 1 })
    );
    assert.equal(reads, 1);
    assert.ok(Number.isNaN(result.loss) && Number.isNaN(result.gradNorm));
    assert.deepEqual(await w.data(), before);
    assert.equal(opt.stepCount, 0);
    tf.dispose(bs.flatMap((b) => [b.inputs, b.targets]));
    opt.dispose();
    model.dispose();
  },
});

Deno.test({
  name: "on WebGPU trainModel reads once per optimizer step besides its evaluations (grad-accum 2)",
  ignore: !onGpu,
  fn: async () => {
    const tok = {
      encode: (t: string) => [...t].map((c) => c.charCodeAt(0) % 300),
      decode: (ids: Iterable<number>) => String.fromCharCode(...ids),
    };
    const text = "the quick brown fox jumps over the lazy dog; ".repeat(6);
    const loader = (from: number, to: number) =>
      new TextDataLoader(
        GPTDatasetV1.fromText(text.slice(from, to), { maxLength: 16, stride: 16, tokenizer: tok }),
        { batchSize: 2, shuffle: false, dropLast: true, seed: 7 },
      );
    const trainLoader = loader(0, 200), valLoader = loader(200, 270);
    const model = new GPTModel(CONFIG, { seed: 1 });
    const optimizer = new AdamW(model.namedParameters(), { lr: 1e-3, weightDecay: 0.1 });
    const { result, reads } = await countReads(() =>
      trainModel(model, {
        trainLoader,
        valLoader,
        optimizer,
        numEpochs: 1,
        evalFreq: 1000, // one evaluation, at step 0: 1 train and 1 validation batch
        evalIter: 1,
        peakLr: 1e-3,
        warmupSteps: 1,
        progressEverySeconds: 0,
        log: () => {},
        gradientAccumulationSteps: 2,
        logEvery: 1,
      })
    );
    const steps = result.trackLrs.length;
    assert.ok(steps >= 3, `${steps} steps`);
    assert.equal(reads, steps + 2, `${reads} reads in ${steps} steps and one evaluation`);
    optimizer.dispose();
    model.dispose();
  },
});
