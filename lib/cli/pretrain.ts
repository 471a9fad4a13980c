/** `llm pretrain`: appendix D's training run on a text file, with a run folder and resume. */
import { PRESETS } from "../model/config.ts";
import {
  planPretraining,
  PRETRAIN_DEFAULTS as D,
  type PretrainRunOptions,
  runPretraining,
} from "../train/pretrain_run.ts";
import { defineCommand, defineFlags, type Flags } from "./args.ts";
import { EXTRA_FLAGS, extrasFromFlags, planOrRun, runFlags, runFromFlags } from "./train_flags.ts";

const FLAGS = defineFlags({
  data: {
    type: "string",
    required: true,
    help: "UTF-8 text file (90% train / 10% validation by characters)",
  },
  out: { type: "string", help: "run folder: metrics.jsonl, lr.svg, loss.svg, checkpoint/" },
  model: {
    type: "string",
    default: D.model,
    help: `preset: ${Object.keys(PRESETS).join(", ")}`,
  },
  config: {
    type: "string",
    help: "any shape instead of --model: a Hugging Face GPT-2 config.json or the book's cfg " +
      "dict (emb_dim, n_layers, n_heads, context_length, vocab_size, drop_rate, qkv_bias)",
  },
  "init-from": {
    type: "string",
    help: "start from these weights (nanoGPT's init_from): gpt2-small|...|gpt2-xl, a " +
      "checkpoint folder or a Hub GPT-2 repo id; their shape is used (--config must agree)",
  },
  "context-length": {
    type: "int",
    positive: true,
    help: "override the preset's context length (with --init-from: crop it)",
  },
  epochs: {
    type: "int",
    positive: true,
    default: D.epochs,
    help: "passes over the training text",
  },
  "batch-size": { type: "int", positive: true, default: D.batchSize, help: "windows per batch" },
  "initial-lr": { type: "number", positive: true, default: D.initialLr, help: "LR of step 0" },
  "peak-lr": { type: "number", positive: true, default: D.peakLr, help: "LR after warmup" },
  "min-lr": { type: "number", positive: true, default: D.minLr, help: "LR the cosine decays to" },
  "warmup-fraction": {
    type: "number",
    default: D.warmupFraction,
    help: "share of all steps spent warming up, in [0, 1]",
  },
  "max-grad-norm": {
    type: "number",
    positive: true,
    default: D.maxGradNorm,
    help: "clip the global gradient norm after warmup",
  },
  "weight-decay": {
    type: "number",
    default: D.weightDecay,
    help: "AdamW decoupled weight decay",
  },
  seed: { type: "int", default: D.seed, help: "seed of weights, shuffling and dropout" },
  "start-context": {
    type: "string",
    default: D.startContext,
    help: "prompt of the sample after each epoch",
  },
  ...runFlags(D),
  ...EXTRA_FLAGS,
  "dry-run": {
    type: "boolean",
    default: false,
    help: "print the plan as one JSON line and exit",
  },
});

export const pretrainCmd = defineCommand({
  name: "pretrain",
  summary: "pretrain a GPT on a text file with warmup, cosine decay and clipping (appendix D)",
  usage:
    "pretrain --data FILE --out DIR [--model NAME] [--epochs N] [...] [--resume DIR] [--dry-run]",
  flags: FLAGS,
  run: pretrain,
});

async function pretrain(f: Flags<typeof FLAGS>): Promise<void> {
  const options: PretrainRunOptions = {
    data: f.data,
    model: f.model,
    config: f.config,
    initFrom: f["init-from"],
    ...runFromFlags(f),
    ...extrasFromFlags(f),
    contextLength: f["context-length"],
    epochs: f.epochs,
    batchSize: f["batch-size"],
    initialLr: f["initial-lr"],
    peakLr: f["peak-lr"],
    minLr: f["min-lr"],
    warmupFraction: f["warmup-fraction"],
    maxGradNorm: f["max-grad-norm"],
    weightDecay: f["weight-decay"],
    seed: f.seed,
    startContext: f["start-context"],
  };
  await planOrRun("pretrain", f["dry-run"], options, planPretraining, runPretraining);
}
