/**
 * Appendix D's pretraining run on a text file, in a run folder: what `llm pretrain` does, callable
 * from a notebook. `planPretraining` is the dry run (sizes and the LR schedule, nothing trained).
 *
 * @example
 * ```ts
 * const r = await runPretraining({ data: "data/the-verdict.txt", out: "build/run", model: "gpt-tiny" });
 * console.log(r.history.evals.at(-1)); // the last evaluation
 * ```
 */
import { initBackend } from "../backend.ts";
import { type GPTConfig, resolveConfig, validateConfig } from "../model/config.ts";
import { assertModelFits, GPTModel } from "../model/gpt.ts";
import { pretrainingLoaders } from "../data/text.ts";
import { readUtf8File } from "../util/utf8.ts";
import { UserError } from "../util/errors.ts";
import { CHECKPOINT_DIR } from "./run.ts";
import { lrSchedule, warmupSteps } from "./schedule.ts";
import { dataHash, type RunSettings } from "./settings.ts";
import { stepsPerEpoch, trainModel, type TrainResult } from "./train.ts";
import { readConfigFile } from "../io/config_file.ts";
import { loadCheckpoint, loadWeightsInto } from "../io/weights.ts";
import { baseModelConfig, resolveWeights } from "../io/resolve.ts";
import { checkExtras, extrasSettings, loopExtras, type TrainingExtras } from "./run_extras.ts";
import { finishTraining, openRun, type RunPlace, startTraining } from "./run_steps.ts";

/** Options of a pretraining run, with appendix D.4's values as defaults. */
export interface PretrainRunOptions extends TrainingExtras, RunPlace {
  /** UTF-8 text file (90% train / 10% validation by characters). */
  data: string;
  /** A preset name (default "gpt-124m-book"). */
  model?: string;
  /** Any shape: a Hugging Face GPT-2 config.json or the book's cfg dict (instead of `model`). */
  config?: string;
  /**
   * Start from these weights (nanoGPT's `init_from`): a pretrained name, a checkpoint folder or a
   * Hub repo id. The shape comes from them; `config`, when given, must agree; `contextLength`
   * may crop the position embeddings.
   */
  initFrom?: string;
  contextLength?: number;
  epochs?: number;
  batchSize?: number;
  initialLr?: number;
  peakLr?: number;
  minLr?: number;
  /** Share of the steps spent warming up, in [0, 1] (book: 0.2). */
  warmupFraction?: number;
  maxGradNorm?: number;
  weightDecay?: number;
  evalFreq?: number;
  evalIter?: number;
  seed?: number;
  /** Prompt of the greedy sample after each epoch. */
  startContext?: string;
}

/** Appendix D.4's settings. */
export const PRETRAIN_DEFAULTS = {
  model: "gpt-124m-book",
  epochs: 15,
  batchSize: 2,
  initialLr: 1e-5,
  peakLr: 1e-3,
  minLr: 1e-5,
  warmupFraction: 0.2,
  maxGradNorm: 1.0,
  weightDecay: 0.1,
  evalFreq: 5,
  evalIter: 1,
  seed: 123,
  startContext: "Every effort moves you",
} as const;

/** More steps than any run on this code will take (GPT-124M: ~150 years at 5 s a step). */
export const MAX_TOTAL_STEPS = 1e9;

type Resolved =
  & Required<
    Omit<
      PretrainRunOptions,
      | "contextLength"
      | "config"
      | "initFrom"
      | keyof TrainingExtras
      | Exclude<keyof RunPlace, "handleSignals">
    >
  >
  & PretrainRunOptions;

function withDefaults(o: PretrainRunOptions): Resolved {
  const r = { ...PRETRAIN_DEFAULTS, handleSignals: false, ...stripUndefined(o) } as Resolved;
  if (!(r.warmupFraction >= 0 && r.warmupFraction <= 1)) {
    throw new UserError(`--warmup-fraction must be in [0, 1] (got ${r.warmupFraction})`);
  }
  if (!(r.weightDecay >= 0)) {
    throw new UserError(`--weight-decay must be >= 0 (got ${r.weightDecay})`);
  }
  checkExtras(r, "pretrain");
  return r;
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

async function prepare(o: Resolved) {
  const config = await modelConfig(o);
  const text = await readUtf8File(o.data, "--data");
  const { train: trainLoader, val: valLoader } = pretrainingLoaders(text, {
    contextLength: config.contextLength,
    batchSize: o.batchSize,
    seed: o.seed,
  });
  const totalSteps = stepsPerEpoch(trainLoader.length, o.gradAccum) * o.epochs;
  if (totalSteps > MAX_TOTAL_STEPS) {
    throw new UserError(
      `--epochs ${o.epochs} gives ${totalSteps.toExponential(2)} steps ` +
        `(${trainLoader.length} batches per epoch); at most ${MAX_TOTAL_STEPS.toExponential(0)}`,
    );
  }
  const warmup = warmupSteps(totalSteps, o.warmupFraction);
  return { config, text, trainLoader, valLoader, totalSteps, warmup };
}

/** The keys that make two configs the same shape (dropout may differ). */
const SHAPE_KEYS = [
  "vocabSize",
  "contextLength",
  "embDim",
  "nHeads",
  "nLayers",
  "qkvBias",
] as const;

/**
 * The model's config: `--config` file or `--model` preset, with `--context-length`; with
 * `--init-from`, the weights' shape (a `--config` that differs is refused).
 */
async function modelConfig(o: Resolved): Promise<GPTConfig> {
  const fromFile = o.config ? await readConfigFile(o.config) : undefined;
  if (!o.initFrom) {
    if (!fromFile) return resolveConfig(o.model, { contextLength: o.contextLength });
    const c = { ...fromFile, contextLength: o.contextLength ?? fromFile.contextLength };
    validateConfig(c);
    return c;
  }
  const init = await baseModelConfig(o.initFrom);
  if (fromFile) {
    const diff = SHAPE_KEYS.filter((k) => fromFile[k] !== init[k])
      .map((k) => `${k} ${init[k]} (--config: ${fromFile[k]})`);
    if (diff.length > 0) {
      throw new UserError(
        `--init-from ${o.initFrom} has another shape than --config ${o.config}: ${diff.join(", ")}`,
      );
    }
  }
  const ctx = o.contextLength ?? init.contextLength;
  if (ctx > init.contextLength) {
    throw new UserError(
      `--context-length ${ctx} is longer than --init-from ${o.initFrom}'s ${init.contextLength}`,
    );
  }
  return { ...init, dropRate: fromFile?.dropRate ?? init.dropRate, contextLength: ctx };
}

/** Loads `--init-from`'s weights into the model, keeping the first `contextLength` positions. */
async function loadInitWeights(model: GPTModel, initFrom: string): Promise<void> {
  const { tensors } = await loadCheckpoint(await resolveWeights(initFrom));
  const pos = tensors.get("pos_emb.weight");
  const { contextLength: ctx, embDim } = model.config;
  if (pos && pos.shape[0] > ctx) {
    // nanoGPT's crop_block_size: a shorter context keeps the first positions.
    tensors.set("pos_emb.weight", {
      ...pos,
      shape: [ctx, embDim],
      data: pos.data.slice(0, ctx * embDim),
    });
  }
  loadWeightsInto(model, tensors);
}

/** The dry run: sizes, steps and the whole LR schedule, as `pretrain --dry-run` prints it. */
export async function planPretraining(options: PretrainRunOptions) {
  const o = withDefaults(options);
  const { trainLoader, valLoader, totalSteps, warmup } = await prepare(o);
  if (totalSteps > 1e7) {
    throw new UserError(
      `--dry-run prints every step's LR; ${totalSteps.toExponential(2)} steps are too many to list`,
    );
  }
  return {
    batchesPerEpoch: trainLoader.length,
    valBatches: valLoader.length,
    totalSteps,
    ...(o.gradAccum && o.gradAccum > 1 ? { gradAccum: o.gradAccum } : {}),
    warmupSteps: warmup,
    trainTokens: trainLoader.numTokens,
    valTokens: valLoader.numTokens,
    lrs: lrSchedule({ ...o, warmupSteps: warmup, totalSteps }),
  };
}

/** What a pretraining run returns. */
export interface PretrainRunResult {
  history: TrainResult;
  /** The run folder. */
  out: string;
  /** True when a signal stopped the run (a checkpoint was saved). */
  stopped: boolean;
  /** 0, or 130/143 when SIGINT/SIGTERM stopped it. */
  exitCode: number;
  model: GPTModel;
}

/** The settings of a pretraining run that change its result (see settings.ts). */
function pretrainSettings(o: Resolved, config: GPTConfig, hash: string): RunSettings {
  return {
    command: "pretrain",
    data: o.data,
    dataHash: hash,
    limit: null,
    template: null,
    maskInstruction: null,
    allowedMaxLength: null,
    model: config,
    weights: null,
    epochs: o.epochs,
    batchSize: o.batchSize,
    seed: o.seed,
    initialLr: o.initialLr,
    peakLr: o.peakLr,
    minLr: o.minLr,
    warmupFraction: o.warmupFraction,
    maxGradNorm: o.maxGradNorm,
    weightDecay: o.weightDecay,
    evalFreq: o.evalFreq,
    evalIter: o.evalIter,
    loraRank: null,
    loraAlpha: null,
    loraScaling: null,
    loraTargets: null,
    loraDropout: null,
    initFrom: o.initFrom ?? null,
    ...extrasSettings(o),
  };
}

/** Appendix D.4's run in a run folder: fresh or resumed, stopped cleanly by a signal. */
export async function runPretraining(options: PretrainRunOptions): Promise<PretrainRunResult> {
  const o = withDefaults(options);
  const note = o.note ?? console.error;
  const { config, text, trainLoader, valLoader, totalSteps, warmup } = await prepare(o);
  await assertModelFits(config); // before the run folder exists
  const run = await openRun(o, pretrainSettings(o, config, await dataHash(text)), note);
  try {
    await initBackend();
    const model = new GPTModel(config, { seed: o.seed });
    const { optimizer, resumeFrom } = await startTraining(run, model, {
      ...o,
      lr: o.peakLr,
      totalSteps,
    });
    if (!resumeFrom && o.initFrom) {
      await loadInitWeights(model, o.initFrom);
      note(`initialised from ${o.initFrom}`);
    }
    note(
      `training ${model.numParams().toLocaleString("en-US")} parameters: ` +
        `${trainLoader.length} batches x ${o.epochs} epochs = ${totalSteps} steps ` +
        `(warmup ${warmup}), ${valLoader.length} validation batch(es)`,
    );
    const history = await trainModel(model, {
      trainLoader,
      valLoader,
      optimizer,
      numEpochs: o.epochs,
      evalFreq: o.evalFreq,
      evalIter: o.evalIter,
      startContext: o.startContext,
      initialLr: o.initialLr,
      peakLr: o.peakLr,
      minLr: o.minLr,
      warmupSteps: warmup,
      maxGradNorm: o.maxGradNorm,
      resumeFrom,
      checkpointEvery: o.checkpointEvery,
      log: o.log,
      ...loopExtras(o, model, run.dir, o.initFrom ?? o.model),
      ...run.hooks(model, optimizer),
    });
    await finishTraining(run, history, o, trainLoader.length, note);
    if (!history.stopped) {
      note(
        `done: ${run.dir}/metrics.jsonl, lr.svg, loss.svg, ${CHECKPOINT_DIR}/ (HF GPT-2 layout)`,
      );
    }
    return { history, out: run.dir, stopped: history.stopped, exitCode: run.exitCode, model };
  } finally {
    await run.close();
  }
}
