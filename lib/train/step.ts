/**
 * One optimizer step: the loss, the gradients of the trainable parameters, optional clipping,
 * then AdamW. `accumulatedStep` is gradient accumulation: several micro-batches sum their
 * gradients before one clip and one AdamW update, each loss weighted by its share of the counted
 * targets, so that 4 micro-batches of 2 give the batch of 8's loss and gradient (the same
 * token-weighted mean, -100 targets left out).
 */
import * as tf from "@tensorflow/tfjs";
import type { GPTModel } from "../model/gpt.ts";
import type { AdamW } from "./adamw.ts";
import { clipGradNormInPlace, clipGradNormInPlaceDeferred } from "./clip.ts";
import { type Batch, calcLossBatch, IGNORE_INDEX } from "./loss.ts";

/** Settings of one step. */
export interface StepOptions {
  lr: number;
  /** Clip the global gradient norm to this; null: no clipping. */
  maxGradNorm?: number | null;
  /** Also compute the gradient norm when not clipping (for the per-step metrics rows). */
  measureNorm?: boolean;
}

/** The loss (before the update) and the gradient norm before clipping (NaN when not measured). */
export interface StepResult {
  loss: number;
  gradNorm: number;
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

/** Clips (or only measures) the gradients in place; the norm before clipping, or NaN. */
async function clipOrMeasure(
  grads: Map<string, tf.Tensor>,
  { maxGradNorm = null, measureNorm = false }: StepOptions,
): Promise<number> {
  if (maxGradNorm !== null) return await clipGradNormInPlace(grads, maxGradNorm);
  // An infinite bound clamps the coefficient to 1: nothing is copied or changed.
  return measureNorm ? await clipGradNormInPlace(grads, Infinity) : NaN;
}

/** clipOrMeasure without a read (for GPU backends): the norm tensor, or null when not needed. */
function clipOrMeasureDeferred(
  grads: Map<string, tf.Tensor>,
  { maxGradNorm = null, measureNorm = false }: StepOptions,
): tf.Scalar | null {
  if (maxGradNorm === null && !measureNorm) return null;
  return clipGradNormInPlaceDeferred(grads, maxGradNorm ?? Infinity);
}

/** One step: loss, gradients of the trainable parameters, optional clipping, AdamW update. */
export async function trainStep(
  model: GPTModel,
  optimizer: AdamW,
  batch: Batch,
  opts: StepOptions,
): Promise<StepResult> {
  const { value, grads } = gradsByName(
    model,
    () => calcLossBatch(batch.inputs, batch.targets, model),
  );
  // On the cpu a read is free (and skips scaling by 1); on a GPU the step reads once, at the end.
  const onCpu = tf.getBackend() === "cpu";
  let gradNorm = NaN;
  const norm = onCpu ? null : clipOrMeasureDeferred(grads, opts);
  if (onCpu) gradNorm = await clipOrMeasure(grads, opts);
  optimizer.step(grads, opts.lr);
  const result = norm ? tf.tidy(() => tf.stack([value, norm])) : value;
  const values = await result.data();
  if (norm) gradNorm = values[1];
  tf.dispose([value, result, [...grads.values()]]);
  norm?.dispose();
  return { loss: values[0], gradNorm };
}

/** Targets that count in the loss (not IGNORE_INDEX). */
async function countedTargets(targets: tf.Tensor): Promise<number> {
  let n = 0;
  for (const t of (await targets.data()) as Int32Array) if (t !== IGNORE_INDEX) n++;
  return n;
}

/**
 * Gradient accumulation: the gradients of every micro-batch, each loss scaled by
 * (its counted targets / all counted targets of the step), summed; then one clip and one AdamW
 * update. A micro-batch without counted targets adds nothing (the big batch would ignore its
 * rows); a step without any counted target makes no update and returns NaN. The batches stay
 * owned by the caller.
 */
export async function accumulatedStep(
  model: GPTModel,
  optimizer: AdamW,
  batches: readonly Batch[],
  opts: StepOptions,
): Promise<StepResult> {
  const counts = await Promise.all(batches.map((b) => countedTargets(b.targets)));
  const total = counts.reduce((a, b) => a + b, 0);
  if (total === 0) return { loss: NaN, gradNorm: NaN };
  let sum: Map<string, tf.Tensor> | undefined;
  let loss = 0;
  for (const [i, batch] of batches.entries()) {
    if (counts[i] === 0) continue;
    const share = counts[i] / total;
    const { value, grads } = gradsByName(
      model,
      () => tf.mul(calcLossBatch(batch.inputs, batch.targets, model), share) as tf.Scalar,
    );
    loss += (await value.data())[0];
    value.dispose();
    if (!sum) sum = grads;
    else {
      for (const [name, g] of grads) {
        const old = sum.get(name)!;
        sum.set(name, tf.add(old, g));
        tf.dispose([old, g]);
      }
    }
  }
  const gradNorm = await clipOrMeasure(sum!, opts);
  optimizer.step(sum!, opts.lr);
  tf.dispose([...sum!.values()]);
  return { loss, gradNorm };
}
