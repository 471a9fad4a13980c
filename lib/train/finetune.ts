/**
 * Instruction finetuning (chapter 7.6): `trainModel` with the book's settings. The pieces around
 * it live where their layer is: the data in ../data/instruction_data.ts, the base model in
 * ../io/resolve.ts, LoRA in ../model/lora.ts (exercise 7.4), the test responses in
 * ./responses.ts. `deno task llm finetune` and notebooks/chapter-07.ipynb share them.
 *
 * @example
 * ```ts
 * import { finetuneModel } from "./finetune.ts";
 * import { generateTestResponses } from "./responses.ts";
 * import { loadBaseModel } from "../io/resolve.ts";
 * import { loadInstructionSource, prepareInstructionData } from "../data/instruction_data.ts";
 * const { entries } = await loadInstructionSource("data/instruction-data.json");
 * const data = prepareInstructionData(entries, { batchSize: 8 }); // 935 / 55 / 110, 116 batches
 * const { model } = await loadBaseModel("gpt2-medium");          // downloads once (1.4 GB)
 * await finetuneModel(model, data);                               // AdamW 5e-5, 2 epochs
 * await generateTestResponses(model, data.test, { outPath: "build/test-responses.json" });
 * ```
 * @module
 */
import { formatInput } from "../data/instruction.ts";
import {
  INSTRUCTION_DATA_DEFAULTS,
  type PreparedInstructionData,
} from "../data/instruction_data.ts";
import type { GPTModel } from "../model/gpt.ts";
import { AdamW } from "./adamw.ts";
import { warmupSteps as warmupStepsOf } from "./schedule.ts";
import {
  type EvalRecord,
  stepsPerEpoch,
  type TrainerState,
  type TrainHistory,
  trainModel,
  type TrainOptions,
  type TrainResult,
} from "./train.ts";

/** The book's finetuning settings (chapter 7.6). */
export const FINETUNE_DEFAULTS = {
  /** AdamW learning rate, constant (the book's `train_model_simple` has no schedule). */
  lr: 5e-5,
  weightDecay: 0.1,
  numEpochs: 2,
  batchSize: INSTRUCTION_DATA_DEFAULTS.batchSize,
  /** Evaluate every 5 steps ... */
  evalFreq: 5,
  /** ... over 5 batches of the training and the validation set. */
  evalIter: 5,
  allowedMaxLength: INSTRUCTION_DATA_DEFAULTS.allowedMaxLength,
  seed: INSTRUCTION_DATA_DEFAULTS.seed,
  /** Tokens generated per test response (chapter 7.7). */
  maxNewTokens: 256,
} as const;

/** Options of `finetuneModel`: the book's settings by default. */
export interface FinetuneOptions {
  /** Peak (and, without a schedule, constant) learning rate (book: 5e-5). */
  lr?: number;
  /** AdamW weight decay (book: 0.1). */
  weightDecay?: number;
  numEpochs?: number;
  evalFreq?: number;
  evalIter?: number;
  /** Share of the steps spent warming up (book: 0, no warmup). */
  warmupFraction?: number;
  /** LR of step 0 when warming up (default lr / 100). */
  initialLr?: number;
  /** LR the cosine decays to after warmup (default lr: no decay). */
  minLr?: number;
  /** Clip the gradient norm (book: null, no clipping). */
  maxGradNorm?: number | null;
  /** Micro-batches per optimizer step (default 1, the book). */
  gradientAccumulationSteps?: number;
  /** A per-step metrics row every N steps (default 0: none). */
  logEvery?: number;
  /** Stop after N evaluations without a lower validation loss. */
  earlyStopPatience?: number;
  /** Called at each new lowest validation loss (save best/ here). */
  onBest?: TrainOptions["onBest"];
  /** An optimizer over the model's trainable parameters (default: a new AdamW). */
  optimizer?: AdamW;
  /** Prompt of the sample after each epoch (default: the first validation entry, as the book). */
  startContext?: string;
  resumeFrom?: TrainerState;
  signal?: AbortSignal;
  onEval?: (record: EvalRecord, history: TrainHistory) => void | Promise<void>;
  onCheckpoint?: (state: TrainerState) => void | Promise<void>;
  checkpointEvery?: number;
  log?: (line: string) => void;
  progressEverySeconds?: number;
}

/** What `finetuneModel` returns. */
export interface FinetuneResult extends TrainResult {
  optimizer: AdamW;
  /** Wall-clock training time. */
  seconds: number;
  warmupSteps: number;
  totalSteps: number;
}

/**
 * Chapter 7.6: `trainModel` with the book's `train_model_simple` settings: AdamW (lr 5e-5,
 * weight decay 0.1), 2 epochs, evaluation every 5 steps over 5 batches, constant LR (no warmup,
 * minLr = peakLr), no gradient clipping, and a greedy sample of the first validation prompt after
 * each epoch. Only the model's trainable parameters are updated (LoRA: the A/B matrices).
 */
export async function finetuneModel(
  model: GPTModel,
  data: Pick<PreparedInstructionData, "trainLoader" | "valLoader" | "val" | "template">,
  o: FinetuneOptions = {},
): Promise<FinetuneResult> {
  const lr = o.lr ?? FINETUNE_DEFAULTS.lr;
  const numEpochs = o.numEpochs ?? FINETUNE_DEFAULTS.numEpochs;
  const totalSteps = stepsPerEpoch(data.trainLoader.length, o.gradientAccumulationSteps) *
    numEpochs;
  const warmup = warmupStepsOf(totalSteps, o.warmupFraction ?? 0);
  const optimizer = o.optimizer ??
    new AdamW(model.namedParameters(), {
      lr,
      weightDecay: o.weightDecay ?? FINETUNE_DEFAULTS.weightDecay,
    });
  const start = performance.now();
  const result = await trainModel(model, {
    trainLoader: data.trainLoader,
    valLoader: data.valLoader,
    optimizer,
    numEpochs,
    evalFreq: o.evalFreq ?? FINETUNE_DEFAULTS.evalFreq,
    evalIter: o.evalIter ?? FINETUNE_DEFAULTS.evalIter,
    startContext: o.startContext ??
      (data.val.length ? formatInput(data.val[0], { template: data.template }) : undefined),
    peakLr: lr,
    initialLr: warmup > 0 ? o.initialLr ?? lr / 100 : lr,
    minLr: o.minLr ?? lr,
    warmupSteps: warmup,
    maxGradNorm: o.maxGradNorm ?? null,
    gradientAccumulationSteps: o.gradientAccumulationSteps,
    logEvery: o.logEvery,
    earlyStopPatience: o.earlyStopPatience,
    onBest: o.onBest,
    resumeFrom: o.resumeFrom,
    signal: o.signal,
    onEval: o.onEval,
    onCheckpoint: o.onCheckpoint,
    checkpointEvery: o.checkpointEvery,
    log: o.log,
    progressEverySeconds: o.progressEverySeconds,
  });
  return {
    ...result,
    optimizer,
    seconds: (performance.now() - start) / 1000,
    warmupSteps: warmup,
    totalSteps,
  };
}
