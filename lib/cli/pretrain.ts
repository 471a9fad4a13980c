/** `llm pretrain`: appendix D's training run on a text file, with a run folder and resume. */
import { join } from "node:path";
import { initBackend } from "../backend.ts";
import { PRESETS, resolveConfig } from "../model/config.ts";
import { createDataloaderV1, trainValSplit } from "../data/text.ts";
import { UserError } from "../util/errors.ts";
import { GPTModel } from "../model/gpt.ts";
import { AdamW } from "../train/adamw.ts";
import { loadTrainingCheckpoint, saveTrainingCheckpoint } from "../train/checkpoint.ts";
import {
  assertFreshRunDir,
  CHECKPOINT_DIR,
  interruptSignal,
  resolveResumeDir,
  writeMetrics,
  writePlots,
} from "../train/run.ts";
import { lrSchedule, warmupSteps } from "../train/schedule.ts";
import { type TrainerState, trainModel } from "../train/train.ts";
import type { Command, Flags } from "./args.ts";

export const pretrainCmd: Command = {
  name: "pretrain",
  summary: "pretrain a GPT on a text file with warmup, cosine decay and clipping (appendix D)",
  usage:
    "pretrain --data FILE --out DIR [--model NAME] [--epochs N] [...] [--resume DIR] [--dry-run]",
  flags: {
    data: {
      type: "string",
      required: true,
      help: "UTF-8 text file (90% train / 10% validation by characters)",
    },
    out: { type: "string", help: "run folder: metrics.jsonl, lr.svg, loss.svg, checkpoint/" },
    model: {
      type: "string",
      default: "gpt-124m-book",
      help: `preset: ${Object.keys(PRESETS).join(", ")}`,
    },
    "context-length": { type: "int", positive: true, help: "override the preset's context length" },
    epochs: { type: "int", positive: true, default: 15, help: "passes over the training text" },
    "batch-size": { type: "int", positive: true, default: 2, help: "windows per batch" },
    "initial-lr": { type: "number", positive: true, default: 1e-5, help: "LR of step 0" },
    "peak-lr": { type: "number", positive: true, default: 1e-3, help: "LR after warmup" },
    "min-lr": { type: "number", positive: true, default: 1e-5, help: "LR the cosine decays to" },
    "warmup-fraction": {
      type: "number",
      default: 0.2,
      help: "share of all steps spent warming up, in [0, 1]",
    },
    "max-grad-norm": {
      type: "number",
      positive: true,
      default: 1.0,
      help: "clip the global gradient norm after warmup",
    },
    "weight-decay": { type: "number", default: 0.1, help: "AdamW decoupled weight decay" },
    "eval-freq": { type: "int", positive: true, default: 5, help: "evaluate every N steps" },
    "eval-iter": { type: "int", positive: true, default: 1, help: "batches per evaluation" },
    seed: { type: "int", default: 123, help: "seed of weights, shuffling and dropout" },
    "checkpoint-every": {
      type: "int",
      positive: true,
      help: "also save a checkpoint every N steps",
    },
    "start-context": {
      type: "string",
      default: "Every effort moves you",
      help: "prompt of the sample after each epoch",
    },
    resume: { type: "string", help: "continue the run saved in this folder" },
    "dry-run": {
      type: "boolean",
      default: false,
      help: "print the plan as one JSON line and exit",
    },
  },
  run: pretrain,
};

async function readText(path: string): Promise<string> {
  try {
    return await Deno.readTextFile(path);
  } catch (err) {
    throw new UserError(`cannot read --data ${path}: ${(err as Error).message.split("\n")[0]}`);
  }
}

async function pretrain(f: Flags): Promise<void> {
  const warmupFraction = f["warmup-fraction"] as number;
  if (!(warmupFraction >= 0 && warmupFraction <= 1)) {
    throw new UserError(`pretrain: --warmup-fraction must be in [0, 1] (got ${warmupFraction})`);
  }
  if ((f["weight-decay"] as number) < 0) {
    throw new UserError("pretrain: --weight-decay must be >= 0");
  }
  const config = resolveConfig(f.model as string, {
    contextLength: f["context-length"] as number | undefined,
  });
  const text = await readText(f.data as string);
  const { trainText, valText } = trainValSplit(text, 0.9);
  const ctx = config.contextLength, seed = f.seed as number, batchSize = f["batch-size"] as number;
  const trainLoader = createDataloaderV1(trainText, {
    batchSize,
    maxLength: ctx,
    stride: ctx,
    shuffle: true,
    dropLast: true,
    seed,
  });
  const valLoader = createDataloaderV1(valText, {
    batchSize,
    maxLength: ctx,
    stride: ctx,
    shuffle: false,
    dropLast: false,
    seed,
  });
  const numEpochs = f.epochs as number;
  const totalSteps = trainLoader.length * numEpochs;
  const warmup = warmupSteps(totalSteps, warmupFraction);
  const sched = {
    initialLr: f["initial-lr"] as number,
    peakLr: f["peak-lr"] as number,
    minLr: f["min-lr"] as number,
  };
  if (f["dry-run"]) {
    console.log(JSON.stringify({
      batchesPerEpoch: trainLoader.length,
      valBatches: valLoader.length,
      totalSteps,
      warmupSteps: warmup,
      trainTokens: trainLoader.numTokens,
      valTokens: valLoader.numTokens,
      lrs: lrSchedule({ ...sched, warmupSteps: warmup, totalSteps }),
    }));
    return;
  }
  const out = f.out as string | undefined;
  if (!out) throw new UserError("pretrain: --out DIR is required (or use --dry-run)");
  const resumeDir = f.resume ? await resolveResumeDir(f.resume as string) : undefined;
  if (!resumeDir) await assertFreshRunDir(out);

  await initBackend();
  const model = new GPTModel(config, { seed });
  const optimizer = new AdamW(model.namedParameters(), {
    lr: sched.peakLr,
    weightDecay: f["weight-decay"] as number,
  });
  const settings = { data: f.data, epochs: numEpochs, batchSize, ...sched, warmupFraction, seed };
  let resumeFrom: TrainerState | undefined;
  if (resumeDir) {
    const file = await loadTrainingCheckpoint(resumeDir, model, optimizer);
    for (const key of ["epochs", "batchSize", "seed"] as const) {
      if (file.settings[key] !== settings[key]) {
        throw new UserError(
          `--resume: the run used ${key} ${file.settings[key]}, this command gives ${
            settings[key]
          }`,
        );
      }
    }
    resumeFrom = file.trainer;
    console.error(`resuming at step ${resumeFrom.step}/${totalSteps} from ${resumeDir}`);
  }
  console.error(
    `training ${
      model.numParams().toLocaleString("en-US")
    } parameters: ${trainLoader.length} batches x ${numEpochs} epochs ` +
      `= ${totalSteps} steps (warmup ${warmup}), ${valLoader.length} validation batch(es)`,
  );
  const { signal, release } = interruptSignal();
  const ckptDir = join(out, CHECKPOINT_DIR);
  const result = await trainModel(model, {
    trainLoader,
    valLoader,
    optimizer,
    numEpochs,
    evalFreq: f["eval-freq"] as number,
    evalIter: f["eval-iter"] as number,
    startContext: f["start-context"] as string,
    ...sched,
    warmupSteps: warmup,
    maxGradNorm: f["max-grad-norm"] as number,
    resumeFrom,
    signal,
    checkpointEvery: f["checkpoint-every"] as number | undefined,
    onEval: (_r, h) => writeMetrics(out, h.evals),
    onCheckpoint: (state) => saveTrainingCheckpoint(ckptDir, model, optimizer, state, settings),
  });
  release();
  await writeMetrics(out, result.evals);
  await writePlots(out, result, trainLoader.length);
  console.error(
    result.stopped
      ? `interrupted at step ${result.state.step}: checkpoint saved; continue with --resume ${out}`
      : `done: ${out}/metrics.jsonl, lr.svg, loss.svg, ${CHECKPOINT_DIR}/ (HF GPT-2 layout)`,
  );
}
