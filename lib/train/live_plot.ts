/**
 * The loss chart a notebook shows while training runs: `trainModel`'s `onEval` redraws it in
 * place (at most every 0.5 s), `finish()` draws the last evaluation so the notebook keeps it.
 *
 * @example
 * ```ts
 * const live = liveLossPlot(trainLoader.length);
 * const result = await trainModel(model, { ...options, onEval: live.onEval });
 * await live.finish();
 * ```
 * @module
 */
import { LivePlot, lossPlot } from "../notebook/plot.ts";
import { lossHistory } from "./run.ts";
import type { EvalRecord, TrainHistory } from "./train.ts";

/** A live loss chart: pass `onEval` to the training call, await `finish()` after it. */
export interface LiveLossPlot {
  onEval: (record: EvalRecord, history: TrainHistory) => Promise<void>;
  finish(): Promise<void>;
  /** The underlying chart (frames drawn, display id). */
  plot: LivePlot<TrainHistory>;
}

/** A loss chart over epochs (and tokens seen) for a loader of `batchesPerEpoch` batches. */
export function liveLossPlot(
  batchesPerEpoch: number | { length: number },
  { title }: { title?: string } = {},
): LiveLossPlot {
  const n = typeof batchesPerEpoch === "number" ? batchesPerEpoch : batchesPerEpoch.length;
  const plot = new LivePlot((h: TrainHistory) => lossPlot(lossHistory(h, n), { title }));
  return {
    plot,
    onEval: async (_record, history) => void (await plot.update(history)),
    finish: async () => void (await plot.finish()),
  };
}
