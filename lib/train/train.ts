/**
 * The training loop of appendix D.4: AdamW with a per-step learning rate (linear warmup, then
 * cosine decay), global-norm gradient clipping after warmup, periodic evaluation, a sample after
 * every epoch, progress with tokens/s and ETA, checkpoints, and an AbortSignal to stop cleanly.
 * Beyond the book (each off by default): gradient accumulation, per-step metrics rows, and the
 * best-validation-loss tracking behind `--save-best` and `--early-stop-patience`.
 */
import * as tf from "@tensorflow/tfjs";
import type { GPTModel } from "../model/gpt.ts";
import { decode, encode } from "../data/tokenizer.ts";
import { generate } from "../model/generate.ts";
import { UserError } from "../util/errors.ts";
import type { AdamW } from "./adamw.ts";
import { type Batch, calcLossLoader, type DataLoader } from "./loss.ts";
import { lrAt } from "./schedule.ts";
import { accumulatedStep, trainStep } from "./step.ts";
import { trackBest } from "./best.ts";
import { Progress, progressFace } from "../notebook/progress.ts";

export { gradsByName, trainStep } from "./step.ts";

/** One evaluation, as written to metrics.jsonl. */
export interface EvalRecord {
  step: number;
  epoch: number;
  tokensSeen: number;
  lr: number;
  trainLoss: number;
  valLoss: number;
  /** With best tracking on: the lowest validation loss so far and its step. */
  bestValLoss?: number;
  bestStep?: number;
  /** With best tracking on: evaluations since the best one (0: this one is the best). */
  evalsSinceBest?: number;
  /** True on the evaluation that ended the run by early stopping. */
  earlyStop?: boolean;
}

/** One optimizer step, as written to metrics.jsonl (`kind: "step"` tells it from evaluations). */
export interface StepRecord {
  kind: "step";
  step: number;
  epoch: number;
  lr: number;
  /** Training loss of the step's batch (the token-weighted mean over its micro-batches). */
  loss: number;
  /** Global gradient norm before clipping. */
  gradNorm: number;
  tokensSeen: number;
  tokensPerSec: number;
}

/** Everything a run has tracked so far (the book's train_losses, val_losses, ... lists). */
export interface TrainHistory {
  trainLosses: number[];
  valLosses: number[];
  trackTokensSeen: number[];
  /** The LR of every step taken. */
  trackLrs: number[];
  /** Evaluations with their step, epoch and LR. */
  evals: EvalRecord[];
  /** The training loss of every step (before the update). */
  stepLosses: number[];
  /** Per-step rows (every `logEvery` steps; none by default). */
  steps?: StepRecord[];
}

/** Where a run stands: saved with checkpoints so that a resumed run continues exactly. */
export interface TrainerState {
  /** Optimizer steps taken. */
  step: number;
  /** Current epoch (0-based). */
  epoch: number;
  /** Batches of the current epoch already taken. */
  batchInEpoch: number;
  /** The training loader's shuffle state at the start of the current epoch. */
  epochRngState: number;
  tokensSeen: number;
  /** The model's dropout seed stream (base seed and position). */
  dropoutBase: number;
  dropoutCounter: number;
  history: TrainHistory;
  /** Micro-batches per optimizer step (absent in older checkpoints: 1). */
  gradAccum?: number;
  /** The lowest validation loss so far, when tracking the best. */
  best?: { step: number; valLoss: number };
  /** Evaluations since the best one. */
  evalsSinceBest?: number;
  /** True when early stopping ended the run. */
  earlyStopped?: boolean;
}

/** Options of trainModel, with appendix D's defaults. */
export interface TrainOptions {
  trainLoader: DataLoader;
  valLoader: DataLoader;
  optimizer: AdamW;
  numEpochs: number;
  /** Evaluate every this many steps (book: 5). */
  evalFreq: number;
  /** Batches per evaluation (book: 1). */
  evalIter: number;
  /** Text whose continuation is printed after each epoch ("Every effort moves you"). */
  startContext?: string;
  /** Tokens of the sample after each epoch (book: 50). */
  sampleTokens?: number;
  /** Peak LR reached after warmup (book: 0.001 in D.4). */
  peakLr: number;
  /** LR of step 0 (book train_model default 3e-5; D.4 passes 1e-5). */
  initialLr?: number;
  /** LR at the end of the cosine (book default 1e-6; D.4 passes 1e-5). */
  minLr?: number;
  /** Steps of linear warmup (book: 20% of the total). */
  warmupSteps: number;
  /** Clip the global gradient norm to this after warmup; null disables clipping (book: 1.0). */
  maxGradNorm?: number | null;
  /**
   * The printed book clips when `global_step > warmup_steps`; its repository (and our default)
   * when `global_step >= warmup_steps`. True reproduces the printed book.
   */
  clipStrictlyAfterWarmup?: boolean;
  /** Continue from a checkpoint's state (model and optimizer are restored by the caller). */
  resumeFrom?: TrainerState;
  /** Stop cleanly after the current step; the result holds everything so far. */
  signal?: AbortSignal;
  /** Called after every step. */
  onStep?: (info: StepInfo) => void | Promise<void>;
  /** Called after every evaluation (the notebook's live loss plot hangs here). */
  onEval?: (record: EvalRecord, history: TrainHistory) => void | Promise<void>;
  /** Called every `checkpointEvery` steps and at the end, with the state to save. */
  onCheckpoint?: (state: TrainerState) => void | Promise<void>;
  checkpointEvery?: number;
  /** Micro-batches whose gradients are summed per optimizer step (default 1, the book). */
  gradientAccumulationSteps?: number;
  /** Record a StepRecord every this many optimizer steps in `history.steps` (default 0: none). */
  logEvery?: number;
  /** Called when an evaluation reaches a new lowest validation loss (save the `best/` weights here). */
  onBest?: (record: EvalRecord, state: TrainerState) => void | Promise<void>;
  /** Stop after this many evaluations without a lower validation loss (default: never). */
  earlyStopPatience?: number;
  /** Where log lines go (default console.log). */
  log?: (line: string) => void;
  /**
   * Seconds between plain progress lines (tokens/s, ETA) in logs; 0 disables them, and the
   * terminal line too. A notebook always shows its progress bar. Default 10.
   */
  progressEverySeconds?: number;
  /** Name on the progress display (default "training"). */
  progressLabel?: string;
}

/** What happened in one step. */
export interface StepInfo {
  step: number;
  epoch: number;
  lr: number;
  loss: number;
  /** Gradient norm before clipping (NaN when not clipping this step). */
  gradNorm: number;
  tokensSeen: number;
  /** Tokens of this step per second of it. */
  tokensPerSec?: number;
}

/** The result of trainModel. */
export interface TrainResult extends TrainHistory {
  state: TrainerState;
  /** True when the signal stopped the run early. */
  stopped: boolean;
  /** True when early stopping ended the run. */
  earlyStopped: boolean;
}

function emptyHistory(): TrainHistory {
  return {
    trainLosses: [],
    valLosses: [],
    trackTokensSeen: [],
    trackLrs: [],
    evals: [],
    stepLosses: [],
  };
}

/**
 * Optimizer steps per epoch with `accum` micro-batches per step: the last step of an epoch takes
 * the remaining micro-batches (nothing is dropped).
 */
export function stepsPerEpoch(batchesPerEpoch: number, accum = 1): number {
  return Math.ceil(batchesPerEpoch / accum);
}

/** The book's train_model (appendix D.4). Async so that signals and live plots get their turn. */
export async function trainModel(model: GPTModel, o: TrainOptions): Promise<TrainResult> {
  const { trainLoader, valLoader, optimizer, numEpochs, evalFreq, evalIter, warmupSteps } = o;
  const initialLr = o.initialLr ?? 3e-5, minLr = o.minLr ?? 1e-6, peakLr = o.peakLr;
  const maxGradNorm = o.maxGradNorm === undefined ? 1.0 : o.maxGradNorm;
  const userLog = o.log ?? ((line: string) => console.log(line));
  const accum = o.gradientAccumulationSteps ?? 1, logEvery = o.logEvery ?? 0;
  checkLoopOptions(accum, logEvery, o.earlyStopPatience);
  const totalSteps = stepsPerEpoch(trainLoader.length, accum) * numEpochs;
  const s: TrainerState = o.resumeFrom ? structuredClone(o.resumeFrom) : {
    step: 0,
    epoch: 0,
    batchInEpoch: 0,
    epochRngState: trainLoader.state.rngState,
    tokensSeen: 0,
    dropoutBase: model.dropSeeds.base,
    dropoutCounter: model.dropSeeds.counter,
    history: emptyHistory(),
  };
  if (o.resumeFrom && (s.gradAccum ?? 1) !== accum) {
    throw new UserError(
      `--resume: the run accumulated ${s.gradAccum ?? 1} micro-batch(es) per step, this ` +
        `command ${accum}; resume with --grad-accum ${s.gradAccum ?? 1}`,
    );
  }
  if (accum > 1) s.gradAccum = accum;
  const tracking = o.onBest !== undefined || o.earlyStopPatience !== undefined;
  if (tracking && valLoader.length === 0) {
    throw new UserError(
      "--save-best and --early-stop-patience need a validation loss, but there are no validation batches",
    );
  }
  const patienceLeft = () =>
    o.earlyStopPatience === undefined || (s.evalsSinceBest ?? 0) < o.earlyStopPatience;
  if (tracking && !patienceLeft()) s.earlyStopped = true;
  else delete s.earlyStopped;
  model.dropSeeds.base = s.dropoutBase;
  model.dropSeeds.counter = s.dropoutCounter;
  const h = s.history;
  if (logEvery > 0) h.steps ??= [];
  const every = o.progressEverySeconds ?? 10;
  const progress = new Progress({
    label: o.progressLabel ?? "training",
    total: totalSteps,
    start: s.step,
    logEveryMs: every * 1000,
    write: userLog,
    face: every <= 0 && progressFace() !== "notebook" ? "none" : undefined,
  });
  const log = (line: string) => {
    progress.clearLine();
    userLog(line);
  };
  const tokensAtStart = s.tokensSeen;
  let stopped = false;

  const saveState = async () => {
    s.dropoutCounter = model.dropSeeds.counter;
    await o.onCheckpoint?.(structuredClone(s));
  };

  /** One optimizer step over `group`; true when the run must stop (signal, early stopping). */
  const takeStep = async (group: Batch[]): Promise<boolean> => {
    const step = s.step, started = performance.now();
    const lr = warmupSteps > 0 || totalSteps > 0
      ? lrAt(step, { initialLr, peakLr, minLr, warmupSteps, totalSteps })
      : peakLr;
    const clipNow = maxGradNorm !== null &&
      (o.clipStrictlyAfterWarmup ? step > warmupSteps : step >= warmupSteps);
    const logThis = logEvery > 0 && step % logEvery === 0;
    const stepOpts = { lr, maxGradNorm: clipNow ? maxGradNorm : null, measureNorm: logThis };
    const { loss, gradNorm } = accum === 1
      ? await trainStep(model, optimizer, group[0], stepOpts)
      : await accumulatedStep(model, optimizer, group, stepOpts);
    const tokens = group.reduce((n, b) => n + b.inputs.size, 0);
    const tokensPerSec = tokens / Math.max((performance.now() - started) / 1000, 1e-9);
    s.tokensSeen += tokens;
    tf.dispose(group.flatMap((b) => [b.inputs, b.targets]));
    h.trackLrs.push(lr);
    h.stepLosses.push(loss);
    s.step++;
    s.batchInEpoch += group.length;
    const epoch = s.epoch + 1;
    if (logThis) {
      h.steps!.push({
        kind: "step",
        step,
        epoch,
        lr,
        loss,
        gradNorm,
        tokensSeen: s.tokensSeen,
        tokensPerSec,
      });
    }
    if (step % evalFreq === 0) {
      const record = await evaluate(model, trainLoader, valLoader, evalIter, {
        step,
        epoch,
        tokensSeen: s.tokensSeen,
        lr,
      });
      const improved = tracking && trackBest(s, record, o.earlyStopPatience);
      h.trainLosses.push(record.trainLoss);
      h.valLosses.push(record.valLoss);
      h.trackTokensSeen.push(record.tokensSeen);
      h.evals.push(record);
      log(
        `Ep ${epoch} (Iter ${String(step).padStart(6, "0")}): ` +
          `Train loss ${record.trainLoss.toFixed(3)}, Val loss ${record.valLoss.toFixed(3)}`,
      );
      if (improved) await o.onBest?.(record, structuredClone(s));
      await o.onEval?.(record, h);
      if (record.earlyStop) {
        log(
          `early stopping: no lower validation loss in ${o.earlyStopPatience} evaluations ` +
            `(best ${s.best!.valLoss.toFixed(3)} at step ${s.best!.step})`,
        );
      }
    }
    await o.onStep?.({ step, epoch, lr, loss, gradNorm, tokensSeen: s.tokensSeen, tokensPerSec });
    progress.update(s.step, { tokens: s.tokensSeen - tokensAtStart, loss });
    if (o.checkpointEvery && s.step % o.checkpointEvery === 0) await saveState();
    // Yield to the event loop so Ctrl-C handlers and display updates can run.
    await new Promise((r) => setTimeout(r, 0));
    if (o.signal?.aborted) stopped = true;
    return stopped || s.earlyStopped === true;
  };

  outer: for (; s.epoch < numEpochs && !s.earlyStopped; s.epoch++) {
    // Replay this epoch's shuffle from its start, then skip the batches already taken.
    if (s.batchInEpoch > 0) trainLoader.state = { rngState: s.epochRngState };
    else s.epochRngState = trainLoader.state.rngState;
    model.train();
    const group: Batch[] = [];
    for (const batch of trainLoader.epoch(s.batchInEpoch)) {
      group.push(batch);
      if (group.length < accum) continue;
      if (await takeStep(group.splice(0))) break outer;
    }
    // The epoch's last, smaller accumulation.
    if (group.length > 0 && await takeStep(group.splice(0))) break outer;
    s.batchInEpoch = 0;
    if (o.startContext) log(await sampleText(model, o.startContext, o.sampleTokens ?? 50));
  }
  if (!stopped && !s.earlyStopped) s.epochRngState = trainLoader.state.rngState;
  await progress.finish({ stopped });
  await saveState();
  return {
    ...structuredClone(h),
    state: structuredClone(s),
    stopped,
    earlyStopped: s.earlyStopped === true,
  };
}

function checkLoopOptions(accum: number, logEvery: number, patience: number | undefined): void {
  if (!(Number.isInteger(accum) && accum >= 1)) {
    throw new UserError(`gradient accumulation steps must be an integer >= 1 (got ${accum})`);
  }
  if (!(Number.isInteger(logEvery) && logEvery >= 0)) {
    throw new UserError(`logEvery must be an integer >= 0 (got ${logEvery})`);
  }
  if (patience !== undefined && !(Number.isInteger(patience) && patience >= 1)) {
    throw new UserError(`early-stop patience must be an integer >= 1 (got ${patience})`);
  }
}

/** The book's evaluate_model: train and validation loss over `evalIter` batches, dropout off. */
async function evaluate(
  model: GPTModel,
  trainLoader: DataLoader,
  valLoader: DataLoader,
  evalIter: number,
  at: Omit<EvalRecord, "trainLoss" | "valLoss">,
): Promise<EvalRecord> {
  const wasTraining = model.training;
  model.eval();
  const trainLoss = await calcLossLoader(trainLoader, model, evalIter);
  const valLoss = await calcLossLoader(valLoader, model, evalIter);
  model.train(wasTraining);
  return { ...at, trainLoss, valLoss };
}

/** The book's generate_and_print_sample: greedy continuation on one line. */
export async function sampleText(
  model: GPTModel,
  startContext: string,
  maxNewTokens = 50,
): Promise<string> {
  const prompt = encode(startContext);
  const ids = await generate(model, prompt, { maxNewTokens, temperature: 0 });
  return decode([...prompt, ...ids]).replaceAll("\n", " ");
}
