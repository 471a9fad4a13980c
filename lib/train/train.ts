/**
 * The training loop of appendix D.4: AdamW with a per-step learning rate (linear warmup, then
 * cosine decay), global-norm gradient clipping after warmup, periodic evaluation, a sample after
 * every epoch, progress with tokens/s and ETA, checkpoints, and an AbortSignal to stop cleanly.
 */
import * as tf from "@tensorflow/tfjs";
import type { GPTModel } from "../model/gpt.ts";
import { decode, encode } from "../data/tokenizer.ts";
import { generate } from "../model/generate.ts";
import type { AdamW } from "./adamw.ts";
import { clipGradNormInPlace } from "./clip.ts";
import { type Batch, calcLossBatch, calcLossLoader, type DataLoader } from "./loss.ts";
import { lrAt } from "./schedule.ts";

/** One evaluation, as written to metrics.jsonl. */
export interface EvalRecord {
  step: number;
  epoch: number;
  tokensSeen: number;
  lr: number;
  trainLoss: number;
  valLoss: number;
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
  /** Where log lines go (default console.log). */
  log?: (line: string) => void;
  /** Seconds between progress lines (tokens/s, ETA); 0 disables. Default 10. */
  progressEverySeconds?: number;
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
}

/** The result of trainModel. */
export interface TrainResult extends TrainHistory {
  state: TrainerState;
  /** True when the signal stopped the run early. */
  stopped: boolean;
}

/**
 * The loss and the gradient of every trainable parameter, keyed by the book's parameter names
 * (tf.variableGrads keys them by tfjs' internal variable names). The caller disposes both.
 */
export function gradsByName(
  model: GPTModel,
  loss: () => tf.Scalar,
): { value: tf.Scalar; grads: Map<string, tf.Tensor> } {
  const named = [...model.namedParameters()].filter(([, v]) => v.trainable);
  const { value, grads } = tf.variableGrads(loss, named.map(([, v]) => v));
  return { value, grads: new Map(named.map(([name, v]) => [name, grads[v.name]])) };
}

/** One step: loss, gradients of the trainable parameters, optional clipping, AdamW update. */
export async function trainStep(
  model: GPTModel,
  optimizer: AdamW,
  batch: Batch,
  { lr, maxGradNorm = null }: { lr: number; maxGradNorm?: number | null },
): Promise<{ loss: number; gradNorm: number }> {
  const { value, grads } = gradsByName(
    model,
    () => calcLossBatch(batch.inputs, batch.targets, model),
  );
  const gradNorm = maxGradNorm === null ? NaN : await clipGradNormInPlace(grads, maxGradNorm);
  optimizer.step(grads, lr);
  const loss = (await value.data())[0];
  tf.dispose([value, [...grads.values()]]);
  return { loss, gradNorm };
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

/** The book's train_model (appendix D.4). Async so that signals and live plots get their turn. */
export async function trainModel(model: GPTModel, o: TrainOptions): Promise<TrainResult> {
  const { trainLoader, valLoader, optimizer, numEpochs, evalFreq, evalIter, warmupSteps } = o;
  const initialLr = o.initialLr ?? 3e-5, minLr = o.minLr ?? 1e-6, peakLr = o.peakLr;
  const maxGradNorm = o.maxGradNorm === undefined ? 1.0 : o.maxGradNorm;
  const log = o.log ?? ((line: string) => console.log(line));
  const totalSteps = trainLoader.length * numEpochs;
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
  model.dropSeeds.base = s.dropoutBase;
  model.dropSeeds.counter = s.dropoutCounter;
  const h = s.history;
  const progress = new Progress(totalSteps, s.step, o.progressEverySeconds ?? 10, log);
  let stopped = false;

  const saveState = async () => {
    s.dropoutCounter = model.dropSeeds.counter;
    await o.onCheckpoint?.(structuredClone(s));
  };

  outer: for (; s.epoch < numEpochs; s.epoch++) {
    // Replay this epoch's shuffle from its start, then skip the batches already taken.
    if (s.batchInEpoch > 0) trainLoader.state = { rngState: s.epochRngState };
    else s.epochRngState = trainLoader.state.rngState;
    model.train();
    for (const batch of trainLoader.epoch(s.batchInEpoch)) {
      const step = s.step;
      const lr = warmupSteps > 0 || totalSteps > 0
        ? lrAt(step, { initialLr, peakLr, minLr, warmupSteps, totalSteps })
        : peakLr;
      const clipNow = maxGradNorm !== null &&
        (o.clipStrictlyAfterWarmup ? step > warmupSteps : step >= warmupSteps);
      const { loss, gradNorm } = await trainStep(model, optimizer, batch, {
        lr,
        maxGradNorm: clipNow ? maxGradNorm : null,
      });
      s.tokensSeen += batch.inputs.size;
      tf.dispose([batch.inputs, batch.targets]);
      h.trackLrs.push(lr);
      h.stepLosses.push(loss);
      s.step++;
      s.batchInEpoch++;
      if (step % evalFreq === 0) {
        const record = await evaluate(model, trainLoader, valLoader, evalIter, {
          step,
          epoch: s.epoch + 1,
          tokensSeen: s.tokensSeen,
          lr,
        });
        h.trainLosses.push(record.trainLoss);
        h.valLosses.push(record.valLoss);
        h.trackTokensSeen.push(record.tokensSeen);
        h.evals.push(record);
        log(
          `Ep ${s.epoch + 1} (Iter ${String(step).padStart(6, "0")}): ` +
            `Train loss ${record.trainLoss.toFixed(3)}, Val loss ${record.valLoss.toFixed(3)}`,
        );
        await o.onEval?.(record, h);
      }
      await o.onStep?.({ step, epoch: s.epoch + 1, lr, loss, gradNorm, tokensSeen: s.tokensSeen });
      progress.tick(s.step, batch.inputs.size);
      if (o.checkpointEvery && s.step % o.checkpointEvery === 0) await saveState();
      // Yield to the event loop so Ctrl-C handlers and display updates can run.
      await new Promise((r) => setTimeout(r, 0));
      if (o.signal?.aborted) {
        stopped = true;
        break outer;
      }
    }
    s.batchInEpoch = 0;
    if (o.startContext) log(await sampleText(model, o.startContext, o.sampleTokens ?? 50));
  }
  if (!stopped) s.epochRngState = trainLoader.state.rngState;
  await saveState();
  return { ...structuredClone(h), state: structuredClone(s), stopped };
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

/** Progress lines: step, tokens/s and ETA, at most every `everySeconds`. */
class Progress {
  #start = performance.now();
  #last = performance.now();
  #tokens = 0;
  #steps = 0;
  constructor(
    readonly total: number,
    readonly startStep: number,
    readonly everySeconds: number,
    readonly log: (line: string) => void,
  ) {}

  tick(step: number, tokens: number): void {
    this.#tokens += tokens;
    this.#steps++;
    const now = performance.now();
    const final = step === this.total;
    if (this.everySeconds <= 0 || (!final && now - this.#last < this.everySeconds * 1000)) return;
    this.#last = now;
    const secs = (now - this.#start) / 1000;
    const eta = ((this.total - step) * secs) / this.#steps;
    this.log(
      `  step ${step}/${this.total} | ${Math.round(this.#tokens / secs)} tokens/s | ` +
        `${(secs / this.#steps).toFixed(2)} s/step | ETA ${formatDuration(eta)}`,
    );
  }
}

/** 75 -> "1m15s". */
export function formatDuration(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;
  return h
    ? `${h}h${String(m).padStart(2, "0")}m`
    : m
    ? `${m}m${String(r).padStart(2, "0")}s`
    : `${r}s`;
}
