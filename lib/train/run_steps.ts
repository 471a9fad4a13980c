/**
 * The steps that `pretrain_run.ts` and `finetune_run.ts` take alike around their loops: open the
 * run folder, build the optimizer and restore a resumed run, and close with the run's lines.
 * @module
 */
import type { GPTModel } from "../model/gpt.ts";
import { AdamW } from "./adamw.ts";
import { RunFolder } from "./run.ts";
import type { RunSettings } from "./settings.ts";
import { stepsPerEpoch, type TrainerState, type TrainResult } from "./train.ts";
import { decayOption, extrasSummary, type TrainingExtras } from "./run_extras.ts";

/** The options of both runs about their folder, how they stop and where their lines go. */
export interface RunPlace {
  /** The run folder (not needed for a plan). */
  out?: string;
  /** Continue the run saved in this folder. */
  resume?: string;
  /** Also save a checkpoint every N steps. */
  checkpointEvery?: number;
  /** Stop on SIGINT/SIGTERM with a checkpoint (the CLI). */
  handleSignals?: boolean;
  /** A caller's stop signal (a notebook's stop button). */
  signal?: AbortSignal;
  /** Where the loop's lines go (default console.log) and one-line notes (console.error). */
  log?: (line: string) => void;
  note?: (line: string) => void;
}

/** Opens (or resumes) the run folder `o.out`, checking `settings` against a resumed run. */
export function openRun(
  o: RunPlace,
  settings: RunSettings,
  note: (line: string) => void,
): Promise<RunFolder> {
  const { out: dir, resume, handleSignals, signal } = o;
  return RunFolder.open({ dir, resume, settings, handleSignals, signal, log: note });
}

/**
 * AdamW over the model's parameters (with nanoGPT's decay groups when asked), after checking the
 * disk has room for checkpoints; a resumed run's weights, moments and trainer state are loaded.
 */
export async function startTraining(
  run: RunFolder,
  model: GPTModel,
  o: TrainingExtras & { lr: number; weightDecay: number; totalSteps: number },
): Promise<{ optimizer: AdamW; resumeFrom: TrainerState | undefined }> {
  const optimizer = new AdamW(model.namedParameters(), {
    lr: o.lr,
    weightDecay: o.weightDecay,
    ...decayOption(o),
  });
  await run.checkSpace(model);
  return { optimizer, resumeFrom: await run.restore(model, optimizer, o.totalSteps) };
}

/**
 * Writes the metrics and plots, then notes the best checkpoint or early stop and, when a signal
 * stopped the run, how to continue it.
 */
export async function finishTraining(
  run: RunFolder,
  history: TrainResult,
  o: TrainingExtras,
  batchesPerEpoch: number,
  note: (line: string) => void,
): Promise<void> {
  await run.finish(history, stepsPerEpoch(batchesPerEpoch, o.gradAccum));
  const summary = extrasSummary(o, history.state, run.dir);
  if (summary) note(summary);
  if (history.stopped) {
    note(
      `interrupted at step ${history.state.step}: checkpoint saved; ` +
        `continue with --resume ${run.dir}`,
    );
  }
}
