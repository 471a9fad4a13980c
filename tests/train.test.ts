/** trainModel (appendix D.4): resume exactness, abort, tensor count, the book's log format. */
import * as tf from "@tensorflow/tfjs";
import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { initBackend } from "../lib/backend.ts";
import { loadTrainingCheckpoint, saveTrainingCheckpoint } from "../lib/train/checkpoint.ts";
import { trainModel } from "../lib/train/train.ts";
import { tinyOptions, tinySetup } from "./run_helpers.ts";

await initBackend({ log: false });

const setup = tinySetup, options = tinyOptions;

Deno.test("a run resumed from a mid-epoch checkpoint gives exactly the losses of an uninterrupted run", async () => {
  const dir = await Deno.makeTempDir();
  const straight = setup();
  const batches = straight.trainLoader.length;
  assert(batches >= 4, `need several batches per epoch, got ${batches}`);
  const half = Math.floor(batches * 2 / 2) - 1; // mid-epoch
  const full = await trainModel(
    straight.model,
    options(straight, {
      checkpointEvery: half,
      onCheckpoint: async (state) => {
        if (state.step === half) {
          await saveTrainingCheckpoint(dir, straight.model, straight.optimizer, state);
        }
      },
    }),
  );
  assertEquals(full.stepLosses.length, 2 * batches);

  const resumed = setup(999); // different init: everything must come from the checkpoint
  const file = await loadTrainingCheckpoint(dir, resumed.model, resumed.optimizer);
  assertEquals(file.trainer.step, half);
  const rest = await trainModel(resumed.model, options(resumed, { resumeFrom: file.trainer }));
  assertEquals(rest.stepLosses, full.stepLosses);
  assertEquals(rest.valLosses, full.valLosses);
  assertEquals(rest.trackLrs, full.trackLrs);
  const a = straight.model.namedParameters(), b = resumed.model.namedParameters();
  for (const [name, v] of a) assertEquals(await b.get(name)!.data(), await v.data(), name);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("trainModel prints the book's 'Ep 1 (Iter 000000): Train loss x.xxx, Val loss x.xxx' lines", async () => {
  const s = setup();
  const lines: string[] = [];
  await trainModel(s.model, options(s, { numEpochs: 1, log: (l) => lines.push(l) }));
  assert(
    /^Ep 1 \(Iter 000000\): Train loss \d+\.\d{3}, Val loss \d+\.\d{3}$/.test(lines[0]),
    lines[0],
  );
});

Deno.test("an aborted run stops after the current step and returns what it has", async () => {
  const s = setup();
  const ctrl = new AbortController();
  const r = await trainModel(
    s.model,
    options(s, { onStep: (i) => i.step === 2 ? ctrl.abort() : undefined, signal: ctrl.signal }),
  );
  assert(r.stopped);
  assertEquals(r.stepLosses.length, 3);
  assertEquals(r.state.step, 3);
});

Deno.test("the tensor count stays flat across training steps", async () => {
  const s = setup();
  const counts: number[] = [];
  await trainModel(s.model, options(s, { onStep: () => void counts.push(tf.memory().numTensors) }));
  assert(counts.length > 4);
  assertEquals(new Set(counts.slice(1)).size, 1, `tensor counts ${counts}`);
});
