/**
 * `llm finetune`: chapter 7's instruction finetuning (full, or LoRA as in exercise 7.4) with a run
 * folder: metrics.jsonl, lr.svg, loss.svg, checkpoint/ (HF layout), test-responses.json, and with
 * LoRA adapter/ (and merged/ with --merge). Ctrl-C saves a checkpoint; --resume continues it.
 */
import { join } from "node:path";
import { initBackend } from "../backend.ts";
import { UserError } from "../util/errors.ts";
import {
  ALPACA_ADVICE,
  applyLora,
  baseModelConfig,
  FINETUNE_DEFAULTS,
  finetuneModel,
  formatLoraCounts,
  generateTestResponses,
  loadBaseModel,
  loadInstructionSource,
  prepareInstructionData,
  resolveWeights,
  testResponsesPath,
} from "../train/finetune.ts";
import { LORA_SCALINGS, type LoraScaling, mergeLora, saveAdapter } from "../model/lora.ts";
import type { GPTModel } from "../model/gpt.ts";
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
import { formatDuration, type TrainerState } from "../train/train.ts";
import { paramsToTensors, saveCheckpoint } from "../io/weights.ts";
import type { PromptTemplate } from "../data/instruction.ts";
import type { Command, Flags } from "./args.ts";

const D = FINETUNE_DEFAULTS;

export const finetuneCmd: Command = {
  name: "finetune",
  summary: "instruction-finetune a pretrained GPT-2 (chapter 7; LoRA: exercise 7.4)",
  usage:
    "finetune --data FILE|alpaca --weights NAME|DIR --out DIR [--lora-rank R] [...] [--dry-run]",
  flags: {
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
      choices: ["alpaca", "phi3"],
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
    "eval-freq": {
      type: "int",
      positive: true,
      default: D.evalFreq,
      help: "evaluate every N steps",
    },
    "eval-iter": {
      type: "int",
      positive: true,
      default: D.evalIter,
      help: "batches per evaluation",
    },
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
      choices: [...LORA_SCALINGS],
      help: 'update factor; "alpha" reproduces the printed book (erratum)',
    },
    merge: { type: "boolean", default: false, help: "with LoRA: also save the merged model" },
    "checkpoint-every": {
      type: "int",
      positive: true,
      help: "also save a checkpoint every N steps",
    },
    resume: { type: "string", help: "continue the run saved in this folder" },
    "dry-run": {
      type: "boolean",
      default: false,
      help: "print split sizes, batches and steps as one JSON line and exit",
    },
  },
  run: finetune,
};

/** The settings a resumed run must share with the saved one. */
const RESUME_KEYS = [
  "data",
  "limit",
  "template",
  "maskInstruction",
  "allowedMaxLength",
  "batchSize",
  "epochs",
  "seed",
  "loraRank",
  "loraAlpha",
  "loraScaling",
] as const;

async function finetune(f: Flags): Promise<void> {
  const dryRun = f["dry-run"] as boolean;
  const weights = f.weights as string | undefined;
  const out = f.out as string | undefined;
  const loraRank = f["lora-rank"] as number | undefined;
  if (!dryRun && !weights) throw new UserError("finetune: --weights NAME|DIR is required");
  if (!dryRun && !out) throw new UserError("finetune: --out DIR is required (or use --dry-run)");
  if (loraRank === undefined && (f["lora-alpha"] !== undefined || f.merge)) {
    throw new UserError("finetune: --lora-alpha and --merge need --lora-rank");
  }
  const warmupFraction = f["warmup-fraction"] as number;
  if (!(warmupFraction >= 0 && warmupFraction <= 1)) {
    throw new UserError(`finetune: --warmup-fraction must be in [0, 1] (got ${warmupFraction})`);
  }
  if ((f["weight-decay"] as number) < 0) {
    throw new UserError("finetune: --weight-decay must be >= 0");
  }
  // Check the weights' name (and read a folder's config) before the slower data work.
  const contextLength = weights ? (await baseModelConfig(weights)).contextLength : undefined;
  const resumeDir = f.resume ? await resolveResumeDir(f.resume as string) : undefined;
  if (!dryRun && !resumeDir) await assertFreshRunDir(out!);

  const source = await loadInstructionSource(f.data as string);
  const limit = f.limit as number | undefined;
  const entries = limit !== undefined ? source.entries.slice(0, limit) : source.entries;
  const batchSize = (f["batch-size"] as number | undefined) ??
    source.advice?.batchSize ?? D.batchSize;
  let allowedMaxLength = (f["allowed-max-length"] as number | undefined) ??
    source.advice?.allowedMaxLength ?? D.allowedMaxLength;
  if (contextLength !== undefined && allowedMaxLength > contextLength) {
    if (f["allowed-max-length"] !== undefined) {
      console.error(
        `note: --allowed-max-length ${allowedMaxLength} is more than the model's context ` +
          `length ${contextLength}; using ${contextLength}`,
      );
    }
    allowedMaxLength = contextLength;
  }
  const template = f.template as PromptTemplate;
  const maskInstruction = f["mask-instruction"] as boolean;
  const seed = f.seed as number;
  const data = prepareInstructionData(entries, {
    template,
    allowedMaxLength,
    maskInstruction,
    batchSize,
    seed,
  });
  const numEpochs = f.epochs as number;
  const batchesPerEpoch = data.trainLoader.length;
  const totalSteps = batchesPerEpoch * numEpochs;
  if (dryRun) {
    console.log(JSON.stringify({
      train: data.train.length,
      val: data.val.length,
      test: data.test.length,
      batchesPerEpoch,
      totalSteps,
      maxLength: data.maxLength,
      allowedMaxLength,
      truncated: data.truncated,
      batchSize,
      epochs: numEpochs,
      valBatches: data.valLoader.length,
    }));
    return;
  }

  const weightsDir = await resolveWeights(weights!); // downloads once, before the backend starts
  await initBackend();
  const { model: base } = await loadBaseModel(weightsDir);
  let model: GPTModel = base;
  const loraAlpha = (f["lora-alpha"] as number | undefined) ?? 16;
  const loraScaling = f["lora-scaling"] as LoraScaling;
  if (loraRank !== undefined) {
    const counts = applyLora(model, {
      rank: loraRank,
      alpha: loraAlpha,
      scaling: loraScaling,
      seed,
    });
    console.error(formatLoraCounts(counts));
  }
  const lr = f.lr as number;
  const optimizer = new AdamW(model.namedParameters(), {
    lr,
    weightDecay: f["weight-decay"] as number,
  });
  const settings: Record<string, unknown> = {
    data: f.data,
    weights,
    limit: limit ?? null,
    template,
    maskInstruction,
    allowedMaxLength,
    batchSize,
    epochs: numEpochs,
    lr,
    seed,
    loraRank: loraRank ?? null,
    loraAlpha: loraRank !== undefined ? loraAlpha : null,
    loraScaling: loraRank !== undefined ? loraScaling : null,
  };
  let resumeFrom: TrainerState | undefined;
  if (resumeDir) {
    const file = await loadTrainingCheckpoint(resumeDir, model, optimizer);
    for (const key of RESUME_KEYS) {
      if (JSON.stringify(file.settings[key]) !== JSON.stringify(settings[key])) {
        throw new UserError(
          `--resume: the run used ${key} ${JSON.stringify(file.settings[key])}, this command ` +
            `gives ${JSON.stringify(settings[key])}`,
        );
      }
    }
    resumeFrom = file.trainer;
    console.error(`resuming at step ${resumeFrom.step}/${totalSteps} from ${resumeDir}`);
  }
  console.error(
    `finetuning ${model.numParams({ trainableOnly: true }).toLocaleString("en-US")} of ` +
      `${model.numParams().toLocaleString("en-US")} parameters on ${data.train.length} entries: ` +
      `${batchesPerEpoch} batches x ${numEpochs} epochs = ${totalSteps} steps` +
      (data.truncated ? ` (${data.truncated} entries truncated to ${allowedMaxLength})` : ""),
  );
  const { signal, release } = interruptSignal();
  const ckptDir = join(out!, CHECKPOINT_DIR);
  const result = await finetuneModel(model, data, {
    lr,
    numEpochs,
    optimizer,
    evalFreq: f["eval-freq"] as number,
    evalIter: f["eval-iter"] as number,
    warmupFraction,
    initialLr: f["initial-lr"] as number | undefined,
    minLr: f["min-lr"] as number | undefined,
    maxGradNorm: (f["max-grad-norm"] as number | undefined) ?? null,
    resumeFrom,
    signal,
    checkpointEvery: f["checkpoint-every"] as number | undefined,
    onEval: (_r, h) => writeMetrics(out!, h.evals),
    onCheckpoint: (state) => saveTrainingCheckpoint(ckptDir, model, optimizer, state, settings),
  });
  release();
  await writeMetrics(out!, result.evals);
  await writePlots(out!, result, batchesPerEpoch);
  if (result.stopped) {
    console.error(
      `interrupted at step ${result.state.step}: checkpoint saved; continue with --resume ${out}`,
    );
    return;
  }
  console.error(`Training completed in ${(result.seconds / 60).toFixed(2)} minutes.`);

  const written = ["metrics.jsonl", "lr.svg", "loss.svg", `${CHECKPOINT_DIR}/ (HF GPT-2 layout)`];
  if (loraRank !== undefined) {
    await saveAdapter(join(out!, "adapter"), model, { baseModel: weights! });
    written.push("adapter/");
    if (f.merge) {
      const merged = mergeLora(model);
      await saveCheckpoint(join(out!, "merged"), merged.config, await paramsToTensors(merged));
      written.push("merged/ (HF GPT-2 layout)");
      model = merged; // same outputs, no LoRA cost while generating
    }
  }

  const responsesPath = testResponsesPath(out!);
  const start = performance.now();
  let lastLine = start;
  await generateTestResponses(model, data.test, {
    template,
    maxNewTokens: f["max-new-tokens"] as number,
    outPath: responsesPath,
    onProgress: (done, total) => {
      const now = performance.now();
      if (done < total && now - lastLine < 10_000) return;
      lastLine = now;
      const eta = ((now - start) / 1000 / done) * (total - done);
      console.error(`  responses ${done}/${total} | ETA ${formatDuration(eta)}`);
    },
  });
  written.push("test-responses.json");
  console.error(`done: ${out}/ holds ${written.join(", ")}`);
  console.error(`score the responses with: deno task llm evaluate --responses ${responsesPath}`);
}
