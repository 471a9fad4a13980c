/**
 * Gradient accumulation (`--grad-accum`, `gradientAccumulationSteps`) against a PyTorch batch of 8
 * (tests/fixtures/grad-accum/): 4 micro-batches of 2, one of them all -100 targets, give the big
 * batch's token-weighted loss, gradient, norm and AdamW step. Also the loop: the schedule counts
 * optimizer steps, resume is exact and refuses another accumulation.
 */
import * as tf from "@tensorflow/tfjs";
import { deepStrictEqual as assertEquals, ok as assert, rejects } from "node:assert/strict";
import { initBackend } from "../lib/backend.ts";
import { GPTModel } from "../lib/model/gpt.ts";
import { loadCheckpoint, loadWeightsInto } from "../lib/io/weights.ts";
import { AdamW } from "../lib/train/adamw.ts";
import { accumulatedStep, trainStep } from "../lib/train/step.ts";
import type { Batch } from "../lib/train/loss.ts";
import { loadTrainingCheckpoint, saveTrainingCheckpoint } from "../lib/train/checkpoint.ts";
import { trainModel, type TrainOptions } from "../lib/train/train.ts";
import { UserError } from "../lib/util/errors.ts";
import { assertAllClose, FIXTURES_DIR, readFixtureSafetensors } from "./fixtures.ts";
import { tinyOptions, tinySetup } from "./run_helpers.ts";

await initBackend({ log: false });

const DIR = new URL("grad-accum/", FIXTURES_DIR).pathname;
const expected = await readFixtureSafetensors("grad-accum/expected.safetensors");
const tensor = (name: string) => expected.tensors.get(name)!;

async function loadModel(): Promise<GPTModel> {
  const { config, tensors } = await loadCheckpoint(DIR);
  const model = new GPTModel(config, { seed: 1 });
  loadWeightsInto(model, tensors);
  return model;
}

/** Rows [from, to) of the fixture's inputs and targets. */
function rows(from: number, to: number): Batch {
  const cut = (name: string) => {
    const t = tensor(name);
    const w = t.shape[1];
    return tf.tensor2d((t.data as Int32Array).slice(from * w, to * w), [to - from, w], "int32");
  };
  return { inputs: cut("inputs"), targets: cut("targets") };
}
const micro = () => [0, 2, 4, 6].map((r) => rows(r, r + 2));
const dispose = (bs: Batch[]) => tf.dispose(bs.flatMap((b) => [b.inputs, b.targets]));

/** An optimizer stand-in that keeps a copy of the gradients it is given. */
function recorder() {
  const seen = new Map<string, tf.Tensor>();
  const opt = {
    step(grads: Map<string, tf.Tensor>) {
      for (const [k, g] of grads) seen.set(k, g.clone());
    },
  } as unknown as AdamW;
  return { opt, seen };
}

Deno.test("4 micro-batches of 2 (one all -100) give the batch of 8's loss and gradient, as PyTorch (rtol 1e-4, atol 1e-6)", async () => {
  const model = await loadModel();
  const { opt, seen } = recorder();
  const batches = micro();
  const { loss, gradNorm } = await accumulatedStep(model, opt, batches, {
    lr: 0,
    measureNorm: true,
  });
  dispose(batches);
  assertAllClose([loss], tensor("loss").data as Float32Array, { atol: 1e-6, rtol: 1e-6 });
  assertAllClose([gradNorm], [Number(expected.metadata.total_norm)], { atol: 1e-6, rtol: 1e-5 });
  assertEquals(seen.size, model.namedParameters().size);
  for (const [name, g] of seen) {
    assertAllClose(await g.data(), tensor(`grad.${name}`).data as Float32Array, {
      atol: 1e-6,
      rtol: 1e-4,
      label: name,
    });
    g.dispose();
  }
  model.dispose();
});

Deno.test("the accumulated step (clip 1.0 + AdamW) leaves the parameters where PyTorch's batch-of-8 step does (atol 1e-6)", async () => {
  const model = await loadModel();
  const opt = new AdamW(model.namedParameters(), { lr: 1e-4, weightDecay: 0.1 });
  const batches = micro();
  await accumulatedStep(model, opt, batches, { lr: 1e-4, maxGradNorm: 1.0 });
  dispose(batches);
  for (const [name, v] of model.namedParameters()) {
    assertAllClose(await v.data(), tensor(`param.${name}`).data as Float32Array, {
      atol: 1e-6,
      rtol: 0,
      label: name,
    });
  }
  opt.dispose();
  model.dispose();
});

Deno.test("accumulating 4 x batch 2 equals one trainStep on batch 8 to 1e-6", async () => {
  const a = await loadModel(), b = await loadModel();
  const optA = new AdamW(a.namedParameters(), { lr: 1e-3, weightDecay: 0.1 });
  const optB = new AdamW(b.namedParameters(), { lr: 1e-3, weightDecay: 0.1 });
  const batches = micro(), big = rows(0, 8);
  const ra = await accumulatedStep(a, optA, batches, { lr: 1e-3, maxGradNorm: 1.0 });
  const rb = await trainStep(b, optB, big, { lr: 1e-3, maxGradNorm: 1.0 });
  dispose([...batches, big]);
  assertAllClose([ra.loss, ra.gradNorm], [rb.loss, rb.gradNorm], { atol: 1e-6, rtol: 1e-6 });
  const pb = b.namedParameters();
  for (const [name, v] of a.namedParameters()) {
    assertAllClose(await v.data(), await pb.get(name)!.data(), {
      atol: 1e-6,
      rtol: 0,
      label: name,
    });
  }
  [optA, optB].forEach((o) => o.dispose());
  [a, b].forEach((m) => m.dispose());
});

// --- the loop ------------------------------------------------------------------------------

const setup = (seed = 123) => tinySetup(seed, { nLayers: 1 });

function options(s: ReturnType<typeof setup>, extra: Partial<TrainOptions> = {}): TrainOptions {
  return tinyOptions(s, { evalFreq: 1, warmupSteps: 1, gradientAccumulationSteps: 4, ...extra });
}

Deno.test("with --grad-accum 4 the schedule and evaluations count optimizer steps (the last step of an epoch takes the rest)", async () => {
  const s = setup();
  const batches = s.trainLoader.length;
  assertEquals(batches, 9);
  const r = await trainModel(s.model, options(s));
  assertEquals(r.trackLrs.length, 2 * 3); // ceil(9 / 4) = 3 steps per epoch
  assertEquals(r.evals.map((e) => e.step), [0, 1, 2, 3, 4, 5]);
  assertEquals(r.state.tokensSeen, 2 * batches * 2 * 8);
  assertEquals(r.state.gradAccum, 4);
});

Deno.test("a run with --grad-accum resumed from a checkpoint equals the uninterrupted run; another --grad-accum is refused", async () => {
  const dir = await Deno.makeTempDir();
  const straight = setup();
  const full = await trainModel(
    straight.model,
    options(straight, {
      checkpointEvery: 4, // mid second epoch
      onCheckpoint: async (state) => {
        if (state.step === 4) {
          await saveTrainingCheckpoint(dir, straight.model, straight.optimizer, state);
        }
      },
    }),
  );
  const resumed = setup(999);
  const file = await loadTrainingCheckpoint(dir, resumed.model, resumed.optimizer);
  assertEquals([file.trainer.step, file.trainer.batchInEpoch], [4, 4]);
  await rejects(
    () =>
      trainModel(
        resumed.model,
        options(resumed, {
          resumeFrom: file.trainer,
          gradientAccumulationSteps: 2,
        }),
      ),
    UserError,
  );
  const rest = await trainModel(resumed.model, options(resumed, { resumeFrom: file.trainer }));
  assertEquals(rest.stepLosses, full.stepLosses);
  assertEquals(rest.valLosses, full.valLosses);
  const a = straight.model.namedParameters(), b = resumed.model.namedParameters();
  for (const [name, v] of a) assertEquals(await b.get(name)!.data(), await v.data(), name);
  assert(full.stepLosses.every(Number.isFinite));
  await Deno.remove(dir, { recursive: true });
});

Deno.test("gradientAccumulationSteps 0 is refused with one clear line", async () => {
  const s = setup();
  await rejects(
    () => trainModel(s.model, options(s, { gradientAccumulationSteps: 0 })),
    /gradient accumulation steps must be an integer >= 1 \(got 0\)/,
  );
});
