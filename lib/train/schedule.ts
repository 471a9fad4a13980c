/**
 * Learning-rate schedules of appendix D: linear warmup (D.1) and warmup followed by cosine decay
 * (D.2, used by the book's `train_model`). Pure functions of the global step (0-based: the book's
 * `global_step` after its `+= 1`, i.e. 0 for the first optimizer step).
 *
 * @example
 * ```ts
 * import { lrSchedule, warmupSteps } from "./schedule.ts";
 * const totalSteps = 9 * 15; // len(train_loader) * n_epochs
 * const lrs = lrSchedule({
 *   initialLr: 1e-4, peakLr: 0.01, minLr: 1e-5,
 *   warmupSteps: warmupSteps(totalSteps), totalSteps,
 * });
 * lrs[0]; // 0.0001; lrs[27] = 0.01 (the peak); lrs[134] just above 1e-5
 * ```
 * @module
 */
import { UserError } from "../util/errors.ts";

/** Options of the warmup + cosine-decay schedule (the book's names in camelCase). */
export interface CosineScheduleOptions {
  /** LR of step 0 (the book: `initial_lr`, 1e-4 in D.1, 1e-5 in `train_model`). */
  initialLr: number;
  /** LR reached at the end of warmup (the optimizer's `lr`; the book: 0.01 in D.1, 0.001 in D.4). */
  peakLr: number;
  /** LR the cosine decays towards (the book: `min_lr = 0.1 * initial_lr` in D.2, 1e-5 in D.4). */
  minLr: number;
  /** Steps of linear warmup (the book: 20% of the total steps). */
  warmupSteps: number;
  /** Total optimizer steps (`len(train_loader) * n_epochs`). */
  totalSteps: number;
}

/** Options of the warmup-only schedule of D.1. */
export type WarmupOptions = Pick<CosineScheduleOptions, "initialLr" | "peakLr" | "warmupSteps">;

/**
 * Warmup steps as the book computes them: `int(fraction * totalSteps)` (135 steps -> 27).
 */
export function warmupSteps(totalSteps: number, fraction = 0.2): number {
  nonNegativeInt("totalSteps", totalSteps);
  if (!(fraction >= 0 && fraction <= 1)) {
    throw new UserError(`warmup fraction must be in [0, 1] (got ${fraction})`);
  }
  return Math.trunc(fraction * totalSteps);
}

/**
 * LR of D.1 (warmup only): `initialLr + step * (peakLr - initialLr) / warmupSteps` while
 * `step < warmupSteps`, then `peakLr` for good.
 */
export function warmupOnlyLr(step: number, o: WarmupOptions): number {
  nonNegativeInt("step", step);
  nonNegativeInt("warmupSteps", o.warmupSteps);
  if (step < o.warmupSteps) return o.initialLr + step * ((o.peakLr - o.initialLr) / o.warmupSteps);
  return o.peakLr;
}

/**
 * LR of the book's `train_model` (D.2/D.4) at a 0-based step:
 * 1) `step < warmupSteps`: `initialLr + step * (peakLr - initialLr) / warmupSteps` (step 0 gives
 *    initialLr; the peak itself is first reached at step `warmupSteps`);
 * 2) afterwards: `progress = (step - warmupSteps) / (totalSteps - warmupSteps)` and
 *    `minLr + (peakLr - minLr) * 0.5 * (1 + cos(pi * progress))`. The last step (totalSteps - 1)
 *    stays just above minLr, exactly as in the book. Steps past the end are held at minLr (the
 *    book never asks for them).
 */
export function lrAt(step: number, o: CosineScheduleOptions): number {
  nonNegativeInt("step", step);
  nonNegativeInt("warmupSteps", o.warmupSteps);
  nonNegativeInt("totalSteps", o.totalSteps);
  if (step < o.warmupSteps) {
    // Same operation order as the book: lr_increment is computed first.
    return o.initialLr + step * ((o.peakLr - o.initialLr) / o.warmupSteps);
  }
  const span = o.totalSteps - o.warmupSteps;
  const progress = span <= 0 ? 1 : Math.min(1, (step - o.warmupSteps) / span);
  return o.minLr + (o.peakLr - o.minLr) * 0.5 * (1 + Math.cos(Math.PI * progress));
}

/** The LR of every step 0..totalSteps-1 (the book's `track_lrs`). */
export function lrSchedule(o: CosineScheduleOptions): number[] {
  return Array.from({ length: o.totalSteps }, (_, step) => lrAt(step, o));
}

/** The D.1 warmup-only LR of every step 0..totalSteps-1. */
export function warmupOnlySchedule(o: WarmupOptions & { totalSteps: number }): number[] {
  return Array.from({ length: o.totalSteps }, (_, step) => warmupOnlyLr(step, o));
}

function nonNegativeInt(name: string, value: number): void {
  if (!Number.isInteger(value) || value < 0) {
    throw new UserError(`${name} must be a non-negative integer (got ${value})`);
  }
}
