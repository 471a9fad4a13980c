/**
 * Best-checkpoint tracking for `--save-best` and `--early-stop-patience`: the lowest validation
 * loss so far lives in the trainer state (so it survives resume), and each evaluation row says
 * where the best is and how many evaluations have passed since.
 */
import type { EvalRecord, TrainerState } from "./train.ts";

/**
 * Updates the best-so-far in `s` from an evaluation and annotates the record; true when this
 * evaluation is the new best. A NaN validation loss never improves.
 */
export function trackBest(
  s: TrainerState,
  record: EvalRecord,
  patience: number | undefined,
): boolean {
  const improved = record.valLoss < (s.best?.valLoss ?? Infinity);
  if (improved) {
    s.best = { step: record.step, valLoss: record.valLoss };
    s.evalsSinceBest = 0;
  } else s.evalsSinceBest = (s.evalsSinceBest ?? 0) + 1;
  record.bestValLoss = s.best?.valLoss ?? NaN;
  record.bestStep = s.best?.step ?? -1;
  record.evalsSinceBest = s.evalsSinceBest;
  if (patience !== undefined && s.evalsSinceBest >= patience) {
    record.earlyStop = true;
    s.earlyStopped = true;
  }
  return improved;
}
