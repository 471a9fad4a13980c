/**
 * A training run for tests/webgpu_device.test.ts, started as its own process (a destroyed device
 * stays destroyed): trains a tiny GPT on WebGPU with a checkpoint after every step, and exits like
 * the CLI does (`error: ...` and 1 on a UserError). LLM_WEBGPU_LOSE_DEVICE_AFTER decides when the
 * device goes away. Usage: deno run -A tests/webgpu_lost_run.ts CHECKPOINT_DIR
 */
import { initBackend } from "../lib/backend.ts";
import { GPTDatasetV1, TextDataLoader } from "../lib/data/text.ts";
import { GPTModel } from "../lib/model/gpt.ts";
import { AdamW } from "../lib/train/adamw.ts";
import { saveTrainingCheckpoint } from "../lib/train/checkpoint.ts";
import { trainModel } from "../lib/train/train.ts";
import { UserError } from "../lib/util/errors.ts";

const [dir] = Deno.args;
const tokenizer = {
  encode: (t: string) => [...t].map((c) => c.charCodeAt(0) % 64),
  decode: (ids: Iterable<number>) => [...ids].map((i) => String.fromCharCode(i + 32)).join(""),
};
const text = "the quick brown fox jumps over the lazy dog; ".repeat(8);
const loader = (t: string) =>
  new TextDataLoader(GPTDatasetV1.fromText(t, { maxLength: 8, stride: 8, tokenizer }), {
    batchSize: 2,
  });
try {
  await initBackend({ backend: "webgpu", log: false });
  const model = new GPTModel({
    vocabSize: 64,
    contextLength: 8,
    embDim: 16,
    nHeads: 2,
    nLayers: 2,
    dropRate: 0,
    qkvBias: false,
  }, { seed: 1 });
  const optimizer = new AdamW(model.namedParameters(), { lr: 1e-3, weightDecay: 0.1 });
  await trainModel(model, {
    trainLoader: loader(text.slice(0, 300)),
    valLoader: loader(text.slice(300)),
    optimizer,
    numEpochs: 20,
    evalFreq: 1000,
    evalIter: 1,
    peakLr: 1e-3,
    warmupSteps: 2,
    checkpointEvery: 1,
    onCheckpoint: (state) => saveTrainingCheckpoint(dir, model, optimizer, state),
    progressEverySeconds: 0,
    log: () => {},
  });
  console.log("finished without losing the device");
} catch (err) {
  if (!(err instanceof UserError)) throw err;
  console.error(`error: ${err.message}`);
  Deno.exit(1);
}
