/**
 * trainModel's options beyond the book: best tracking (`--save-best`), early stopping
 * (`--early-stop-patience`) and the per-step metrics rows (`--log-every`).
 */
import { deepStrictEqual as assertEquals, ok as assert, rejects } from "node:assert/strict";
import { initBackend } from "../lib/backend.ts";
import type { DataLoader } from "../lib/train/loss.ts";
import { loadTrainingCheckpoint, saveTrainingCheckpoint } from "../lib/train/checkpoint.ts";
import { type EvalRecord, trainModel, type TrainOptions } from "../lib/train/train.ts";

import { tinyOptions, tinySetup } from "./run_helpers.ts";

await initBackend({ log: false });

const setup = (seed = 123) => tinySetup(seed, { nLayers: 1, dropRate: 0 });

/** A learning rate far too high, so that the validation loss soon stops improving. */
function options(s: ReturnType<typeof setup>, extra: Partial<TrainOptions> = {}): TrainOptions {
  const lr = 0.3;
  return tinyOptions(s, {
    numEpochs: 8,
    peakLr: lr,
    initialLr: lr,
    minLr: lr,
    warmupSteps: 0,
    maxGradNorm: null,
    ...extra,
  });
}

/** The best-so-far bookkeeping recomputed from the validation losses alone. */
function replay(evals: EvalRecord[]) {
  let best = Infinity, bestStep = -1, since = 0;
  return evals.map((e) => {
    if (e.valLoss < best) [best, bestStep, since] = [e.valLoss, e.step, 0];
    else since++;
    return { bestValLoss: best, bestStep, evalsSinceBest: since };
  });
}

Deno.test("early stopping ends the run at the first evaluation 3 evaluations after the best, and onBest saw each new best", async () => {
  const s = setup();
  const bests: number[] = [];
  const r = await trainModel(
    s.model,
    options(s, { earlyStopPatience: 3, onBest: (rec) => void bests.push(rec.step) }),
  );
  assert(r.earlyStopped, `no early stop in ${r.evals.length} evaluations`);
  const want = replay(r.evals);
  r.evals.forEach((e, i) => {
    assertEquals(
      { bestValLoss: e.bestValLoss, bestStep: e.bestStep, evalsSinceBest: e.evalsSinceBest },
      want[i],
    );
  });
  assertEquals(r.evals.at(-1)!.evalsSinceBest, 3);
  assertEquals(r.evals.at(-1)!.earlyStop, true);
  assert(r.evals.slice(0, -1).every((e) => e.evalsSinceBest! < 3 && !e.earlyStop));
  assertEquals(bests, r.evals.filter((_e, i) => want[i].evalsSinceBest === 0).map((e) => e.step));
  assertEquals(r.state.best, { step: want.at(-1)!.bestStep, valLoss: want.at(-1)!.bestValLoss });
  assert(r.state.step < 8 * s.trainLoader.length);
});

Deno.test("the best validation loss survives resume: the resumed run stops where the uninterrupted one did", async () => {
  const dir = await Deno.makeTempDir();
  const straight = setup();
  const full = await trainModel(
    straight.model,
    options(straight, {
      earlyStopPatience: 3,
      checkpointEvery: 5,
      onCheckpoint: async (state) => {
        if (state.step === 5) {
          await saveTrainingCheckpoint(dir, straight.model, straight.optimizer, state);
        }
      },
    }),
  );
  const resumed = setup(999);
  const file = await loadTrainingCheckpoint(dir, resumed.model, resumed.optimizer);
  assert(file.trainer.best !== undefined);
  const rest = await trainModel(
    resumed.model,
    options(resumed, { earlyStopPatience: 3, resumeFrom: file.trainer }),
  );
  assertEquals(rest.evals, full.evals);
  assertEquals(rest.state.step, full.state.step);
  // An early-stopped run resumed with the same patience has nothing left to do.
  const again = await trainModel(
    resumed.model,
    options(resumed, { earlyStopPatience: 3, resumeFrom: rest.state }),
  );
  assertEquals(again.state.step, rest.state.step);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("logEvery 2 records a step row every 2 optimizer steps with lr, loss, the norm before clipping and tokens/s", async () => {
  const s = setup();
  const r = await trainModel(s.model, options(s, { numEpochs: 1, logEvery: 2, peakLr: 1e-3 }));
  const steps = r.steps!;
  assertEquals(steps.map((x) => x.step), [0, 2, 4, 6, 8]);
  for (const x of steps) {
    assertEquals(x.kind, "step");
    assertEquals(x.loss, r.stepLosses[x.step]);
    assertEquals(x.lr, r.trackLrs[x.step]);
    assert(x.gradNorm > 0 && x.tokensPerSec > 0, JSON.stringify(x));
  }
  // Off by default (the book's metrics have evaluation rows only).
  const p = setup();
  const plain = await trainModel(p.model, options(p, { numEpochs: 1 }));
  assertEquals(plain.steps, undefined);
  assertEquals(plain.evals[0].bestValLoss, undefined);
});

Deno.test("best tracking without validation batches is refused with one clear line", async () => {
  const s = setup();
  // An empty validation split (as a tiny instruction file can give).
  const empty: DataLoader = {
    length: 0,
    state: { rngState: 0 },
    epoch: () => [],
    peek: () => [],
    [Symbol.iterator]: () => [][Symbol.iterator](),
  };
  assertEquals(empty.length, 0);
  await rejects(
    () => trainModel(s.model, options(s, { valLoader: empty, earlyStopPatience: 2 })),
    /need a validation loss, but there are no validation batches/,
  );
});
