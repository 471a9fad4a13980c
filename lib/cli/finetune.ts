/**
 * `llm finetune`: chapter 7's instruction finetuning (full, or LoRA as in exercise 7.4) with a run
 * folder: metrics.jsonl, lr.svg, loss.svg, checkpoint/ (HF layout), test-responses.json, and with
 * LoRA adapter/ (and merged/ with --merge). Ctrl-C or SIGTERM saves a checkpoint and exits
 * 130/143; --resume continues it. The run itself is lib/train/finetune_run.ts.
 */
import { ALPACA_ADVICE } from "../data/instruction_data.ts";
import { FINETUNE_DEFAULTS } from "../train/finetune.ts";
import { type FinetuneRunOptions, planFinetuning, runFinetuning } from "../train/finetune_run.ts";
import { LORA_SCALINGS } from "../model/lora.ts";
import { PROMPT_TEMPLATES } from "../data/instruction.ts";
import { defineCommand, defineFlags, type Flags } from "./args.ts";
import { EXTRA_FLAGS, extrasFromFlags, planOrRun, runFlags, runFromFlags } from "./train_flags.ts";

const D = FINETUNE_DEFAULTS;

const FLAGS = defineFlags({
  data: {
    type: "string",
    required: true,
    help: 'JSON list of {"instruction","input","output"}, or "alpaca" (exercise 7.3, downloaded)',
  },
  weights: {
    type: "string",
    help: "gpt2-small|gpt2-medium|gpt2-large|gpt2-xl (downloaded once) or a checkpoint folder",
  },
  out: {
    type: "string",
    help: "run folder: metrics.jsonl, loss.svg, checkpoint/, test-responses.json",
  },
  template: {
    type: "string",
    default: "alpaca",
    choices: PROMPT_TEMPLATES,
    help: "prompt style (phi3: exercise 7.1)",
  },
  "mask-instruction": {
    type: "boolean",
    default: false,
    help: "exercise 7.2: leave the prompt's tokens out of the loss",
  },
  "allowed-max-length": {
    type: "int",
    positive: true,
    help: `truncate batches to N tokens (default ${D.allowedMaxLength}, ` +
      `${ALPACA_ADVICE.allowedMaxLength} for alpaca; at most the model's context)`,
  },
  "batch-size": {
    type: "int",
    positive: true,
    help: `entries per batch (default ${D.batchSize}, ${ALPACA_ADVICE.batchSize} for alpaca)`,
  },
  epochs: { type: "int", positive: true, default: D.numEpochs, help: "passes over the data" },
  lr: { type: "number", positive: true, default: D.lr, help: "AdamW learning rate (constant)" },
  "weight-decay": { type: "number", default: D.weightDecay, help: "AdamW weight decay" },
  "warmup-fraction": {
    type: "number",
    default: 0,
    help: "share of steps with linear warmup (appendix D; the book's chapter 7 uses none)",
  },
  "initial-lr": {
    type: "number",
    positive: true,
    help: "LR of step 0 when warming up (default lr/100)",
  },
  "min-lr": {
    type: "number",
    positive: true,
    help: "cosine decay after warmup down to this LR (default: no decay)",
  },
  "max-grad-norm": {
    type: "number",
    positive: true,
    help: "clip the global gradient norm (default: no clipping, as the book)",
  },
  seed: { type: "int", default: D.seed, help: "seed of shuffling (and LoRA's A matrices)" },
  limit: { type: "int", positive: true, help: "use only the first N entries of the data" },
  "max-new-tokens": {
    type: "int",
    positive: true,
    default: D.maxNewTokens,
    help: "tokens per test response (greedy)",
  },
  "lora-rank": { type: "int", positive: true, help: "finetune LoRA adapters of this rank (7.4)" },
  "lora-alpha": { type: "number", positive: true, help: "LoRA alpha (default 16, the book's)" },
  "lora-scaling": {
    type: "string",
    default: "alpha/rank",
    choices: LORA_SCALINGS,
    help: 'update factor; "alpha" reproduces the printed book (erratum)',
  },
  "use-rslora": {
    type: "boolean",
    default: false,
    help: "rsLoRA: scale the update by alpha/sqrt(rank) (PEFT's use_rslora)",
  },
  "lora-targets": {
    type: "string",
    help: "layers that get LoRA: all-linear (default, the book), all-but-head, a /regex/ " +
      "over whole layer names, or a list like att.W_query,att.W_value",
  },
  "lora-dropout": {
    type: "number",
    help: "dropout on the LoRA branch's input, in [0, 1) (default 0, the book)",
  },
  merge: { type: "boolean", default: false, help: "with LoRA: also save the merged model" },
  ...runFlags(D),
  ...EXTRA_FLAGS,
  "dry-run": {
    type: "boolean",
    default: false,
    help: "print split sizes, batches and steps as one JSON line and exit",
  },
});

export const finetuneCmd = defineCommand({
  name: "finetune",
  summary: "instruction-finetune a pretrained GPT-2 (chapter 7; LoRA: exercise 7.4)",
  usage:
    "finetune --data FILE|alpaca --weights NAME|DIR --out DIR [--lora-rank R] [...] [--dry-run]",
  flags: FLAGS,
  run: finetune,
});

async function finetune(f: Flags<typeof FLAGS>): Promise<void> {
  const options: FinetuneRunOptions = {
    data: f.data,
    weights: f.weights,
    template: f.template,
    maskInstruction: f["mask-instruction"],
    allowedMaxLength: f["allowed-max-length"],
    batchSize: f["batch-size"],
    epochs: f.epochs,
    lr: f.lr,
    weightDecay: f["weight-decay"],
    warmupFraction: f["warmup-fraction"],
    initialLr: f["initial-lr"],
    minLr: f["min-lr"],
    maxGradNorm: f["max-grad-norm"],
    seed: f.seed,
    limit: f.limit,
    maxNewTokens: f["max-new-tokens"],
    loraRank: f["lora-rank"],
    loraAlpha: f["lora-alpha"],
    // --use-rslora replaces the default rule; with another explicit rule it is refused.
    loraScaling: f["use-rslora"] && f["lora-scaling"] === "alpha/rank"
      ? undefined
      : f["lora-scaling"],
    useRslora: f["use-rslora"],
    loraTargets: f["lora-targets"],
    loraDropout: f["lora-dropout"],
    ...runFromFlags(f),
    ...extrasFromFlags(f),
    merge: f.merge,
  };
  await planOrRun("finetune", f["dry-run"], options, planFinetuning, runFinetuning);
}
