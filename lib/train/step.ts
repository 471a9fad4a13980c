/**
 * One optimizer step: the loss, the gradients of the trainable parameters, optional clipping,
 * then AdamW. `accumulatedStep` is gradient accumulation: several micro-batches sum their
 * gradients before one clip and one AdamW update, each loss weighted by its share of the counted
 * targets, so that 4 micro-batches of 2 give the batch of 8's loss and gradient (the same
 * token-weighted mean, -100 targets left out). On a GPU backend either step reads back once:
 * its loss, with the gradient norm when one is wanted.
 */
import * as tf from "@tensorflow/tfjs";
import type { GPTModel } from "../model/gpt.ts";
import type { AdamW } from "./adamw.ts";
import { clipGradNormInPlace, clipGradNormInPlaceDeferred } from "./clip.ts";
import { type Batch, calcLossBatch, IGNORE_INDEX, summedCrossEntropy } from "./loss.ts";

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

/**
 * Clips or measures: on the cpu at once (a read is free there, and gradients under the bound
 * are not scaled by 1); on a GPU without a read, the norm left as a tensor for the step's one
 * read (null when not needed).
 */
async function clip(
  grads: Map<string, tf.Tensor>,
  opts: StepOptions,
): Promise<number | tf.Scalar | null> {
  if (tf.getBackend() === "cpu") return await clipOrMeasure(grads, opts);
  const { maxGradNorm = null, measureNorm = false } = opts;
  if (maxGradNorm === null && !measureNorm) return null;
  return clipGradNormInPlaceDeferred(grads, maxGradNorm ?? Infinity);
}

/**
 * The values of the step's scalars in one read (numbers pass through, null gives NaN); the
 * tensors are disposed.
 */
async function readOnce(values: (number | tf.Scalar | null)[]): Promise<number[]> {
  const tensors = values.filter((v): v is tf.Scalar => v instanceof tf.Tensor);
  const stacked = tensors.length > 1 ? tf.tidy(() => tf.stack(tensors)) : tensors[0];
  const read = stacked ? await stacked.data() : [];
  tf.dispose(tensors.length > 1 ? [...tensors, stacked] : tensors);
  let k = 0;
  return values.map((v) => v instanceof tf.Tensor ? read[k++] : v ?? NaN);
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
  const norm = await clip(grads, opts);
  optimizer.step(grads, opts.lr);
  // On a GPU the only read of the step, after the update has been queued.
  const [loss, gradNorm] = await readOnce([value, norm]);
  tf.dispose([...grads.values()]);
  return { loss, gradNorm };
}

/** The summed cross-entropy of a batch's counted targets (ignored ones add 0). Call in tidy. */
function summedLoss(model: GPTModel, batch: Batch): tf.Scalar {
  return summedCrossEntropy(model.forward(batch.inputs), batch.targets);
}

/** Targets that count in the loss (not IGNORE_INDEX) over all batches, on the device. */
function countedTargets(batches: readonly Batch[]): tf.Scalar {
  return tf.tidy(() =>
    tf.addN(batches.map((b) => tf.sum(tf.notEqual(b.targets, IGNORE_INDEX).toFloat())))
  );
}

/**
 * Gradient accumulation: the gradients of every micro-batch's summed loss divided by all counted
 * targets of the step (the big batch's token-weighted mean), summed; then one clip and one
 * AdamW update. A micro-batch without counted targets adds 0; a step without any counted
 * target makes no update and returns NaN. The step reads once (loss, norm and the target count
 * together), then updates. The batches stay owned by the caller.
 */
export async function accumulatedStep(
  model: GPTModel,
  optimizer: AdamW,
  batches: readonly Batch[],
  opts: StepOptions,
): Promise<StepResult> {
  const total = countedTargets(batches);
  // Dividing by at least 1 keeps an all-ignored step's gradients 0 rather than NaN.
  const divisor = tf.tidy(() => tf.maximum(total, 1));
  let sum: Map<string, tf.Tensor> | undefined;
  const losses: tf.Scalar[] = [];
  for (const batch of batches) {
    const { value, grads } = gradsByName(
      model,
      () => tf.div(summedLoss(model, batch), divisor) as tf.Scalar,
    );
    sum = sum ? addInto(sum, grads) : grads;
    losses.push(value);
  }
  const loss = tf.tidy(() => tf.addN(losses));
  tf.dispose([divisor, ...losses]);
  const norm = await clip(sum!, opts);
  const [lossValue, gradNorm, counted] = await readOnce([loss, norm, total]);
  if (counted > 0) optimizer.step(sum!, opts.lr);
  tf.dispose([...sum!.values()]);
  return counted > 0 ? { loss: lossValue, gradNorm } : { loss: NaN, gradNorm: NaN };
}

/** `sum[name] += add[name]` for every name, freeing the old sums and the added tensors. */
function addInto(sum: Map<string, tf.Tensor>, add: Map<string, tf.Tensor>) {
  for (const [name, g] of add) {
    const old = sum.get(name)!;
    sum.set(name, tf.add(old, g));
    tf.dispose([old, g]);
  }
  return sum;
}
