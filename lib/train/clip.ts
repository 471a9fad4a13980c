/**
 * Global-norm gradient clipping with `torch.nn.utils.clip_grad_norm_` semantics (appendix D.3):
 * one L2 norm over all gradients together, `coef = maxNorm / (totalNorm + 1e-6)` capped at 1, every
 * gradient multiplied by `coef`, and the norm before clipping returned.
 *
 * Ownership: the input gradients are only read, never disposed; the returned gradients are NEW
 * tensors (always, even when nothing was scaled) that the caller owns. A training step therefore
 * disposes both sets once the optimizer has used the clipped ones.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { clipGradNorm } from "./clip.ts";
 * const grads = { w: tf.tensor1d([3, 4]) };
 * const { grads: clipped, totalNorm } = await clipGradNorm(grads, 1.0);
 * totalNorm; // 5
 * clipped.w; // [0.6, 0.8] (up to the 1e-6 in the coefficient)
 * tf.dispose([grads.w, clipped.w]);
 * ```
 * @module
 */
import * as tf from "@tensorflow/tfjs";

/** Gradients by parameter name, as a Map or a plain object (what `tf.variableGrads` returns). */
export type NamedGrads = Map<string, tf.Tensor> | Record<string, tf.Tensor>;

/** The result of clipping: new gradient tensors (same container kind and names) and the norm. */
export interface ClipResult<G extends NamedGrads> {
  /** Clipped gradients; new tensors the caller must dispose. */
  grads: G;
  /** L2 norm of all input gradients together, before clipping (like torch's return value). */
  totalNorm: number;
}

/**
 * Clips gradients by their global L2 norm (torch's `clip_grad_norm_(params, max_norm)`). The norm
 * is read back with `await data()`: GPU backends have no synchronous read.
 */
export async function clipGradNorm<G extends NamedGrads>(
  grads: G,
  maxNorm: number,
): Promise<ClipResult<G>> {
  const { grads: out, norm } = clipOnDevice(grads, maxNorm);
  const totalNorm = (await norm.data())[0];
  norm.dispose();
  return { grads: out, totalNorm };
}

/**
 * clipGradNorm for gradients the caller owns, without a second full set in memory: each gradient
 * that must shrink is replaced in the map by its scaled copy and freed at once (GPT-124M's
 * gradients are 650 MB). Values equal clipGradNorm's; returns the norm before clipping.
 */
export async function clipGradNormInPlace(
  grads: Map<string, tf.Tensor>,
  maxNorm: number,
): Promise<number> {
  if (grads.size === 0) return checkMaxNorm(maxNorm);
  const [norm, coef] = normAndCoef(grads, maxNorm);
  const totalNorm = (await norm.data())[0];
  // A coefficient clamped to 1 leaves every value as it is (x * 1 = x): skip the copies.
  if ((await coef.data())[0] < 1) scaleInPlace(grads, coef);
  tf.dispose([norm, coef]);
  return totalNorm;
}

/**
 * clipGradNormInPlace that reads nothing back (for GPU backends, where a read stalls the step):
 * every gradient is scaled on the device, by 1 when under the limit, and the norm before
 * clipping is returned as a scalar tensor for the caller to read with the loss and dispose.
 */
export function clipGradNormInPlaceDeferred(
  grads: Map<string, tf.Tensor>,
  maxNorm: number,
): tf.Scalar {
  if (grads.size === 0) return tf.scalar(checkMaxNorm(maxNorm));
  const [norm, coef] = normAndCoef(grads, maxNorm);
  if (maxNorm !== Infinity) scaleInPlace(grads, coef); // an infinite bound only measures
  coef.dispose();
  return norm;
}

function checkMaxNorm(maxNorm: number): 0 {
  if (!(maxNorm > 0)) throw new RangeError(`maxNorm must be positive (got ${maxNorm})`);
  return 0;
}

/** The global norm and the clip coefficient min(1, maxNorm / (norm + 1e-6)), on the device. */
function normAndCoef(grads: Map<string, tf.Tensor>, maxNorm: number): [tf.Scalar, tf.Scalar] {
  checkMaxNorm(maxNorm);
  return tf.tidy(() => {
    const norm = globalNormTensor([...grads.values()]);
    const coef = tf.minimum(
      tf.div(tf.scalar(maxNorm), tf.add(norm, tf.scalar(1e-6))),
      tf.scalar(1),
    );
    return [norm, coef as tf.Scalar];
  });
}

/** Replaces each gradient by its scaled copy, freeing the old one at once. */
function scaleInPlace(grads: Map<string, tf.Tensor>, coef: tf.Scalar): void {
  for (const [name, g] of grads) {
    grads.set(name, tf.tidy(() => tf.mul(g, coef.cast(g.dtype))));
    g.dispose();
  }
}

/** The global L2 norm of gradients as a number (no clipping). */
export async function globalNorm(grads: NamedGrads): Promise<number> {
  const entries = entriesOf(grads);
  if (entries.length === 0) return 0;
  const norm = tf.tidy(() => globalNormTensor(entries.map(([, g]) => g)));
  const value = (await norm.data())[0];
  norm.dispose();
  return value;
}

/** Clipped copies and the norm as a scalar tensor, all computed on the device. */
function clipOnDevice<G extends NamedGrads>(
  grads: G,
  maxNorm: number,
): { grads: G; norm: tf.Scalar } {
  if (!(maxNorm > 0)) throw new RangeError(`maxNorm must be positive (got ${maxNorm})`);
  const entries = entriesOf(grads);
  if (entries.length === 0) return { grads: rebuild(grads, []), norm: tf.scalar(0) };
  const [clipped, norm] = tf.tidy(() => {
    const norm = globalNormTensor(entries.map(([, g]) => g));
    // torch: clip_coef = max_norm / (total_norm + 1e-6); clamp(max=1.0); g.mul_(clip_coef_clamped)
    const coef = tf.minimum(
      tf.div(tf.scalar(maxNorm), tf.add(norm, tf.scalar(1e-6))),
      tf.scalar(1),
    );
    const clipped = entries.map(([, g]) => tf.mul(g, coef.cast(g.dtype)));
    return [clipped, norm] as [tf.Tensor[], tf.Scalar];
  });
  return { grads: rebuild(grads, entries.map(([name], i) => [name, clipped[i]])), norm };
}

/** sqrt(sum over all gradients of sum(g^2)). Call inside tf.tidy. */
function globalNormTensor(gs: tf.Tensor[]): tf.Scalar {
  const squares = gs.map((g) => tf.sum(tf.square(g.cast("float32"))));
  return tf.sqrt(squares.length === 1 ? squares[0] : tf.addN(squares)) as tf.Scalar;
}

function entriesOf(grads: NamedGrads): [string, tf.Tensor][] {
  return grads instanceof Map ? [...grads.entries()] : Object.entries(grads);
}

function rebuild<G extends NamedGrads>(like: G, entries: [string, tf.Tensor][]): G {
  return (like instanceof Map ? new Map(entries) : Object.fromEntries(entries)) as G;
}

/** The book's find_highest_gradient (D.3): the largest single gradient value, and where it is. */
export async function findHighestGradient(
  grads: NamedGrads,
): Promise<{ name: string; value: number }> {
  let best = { name: "", value: -Infinity };
  for (const [name, g] of entriesOf(grads)) {
    const max = g.max();
    const value = (await max.data())[0];
    max.dispose();
    if (value > best.value) best = { name, value };
  }
  return best;
}
