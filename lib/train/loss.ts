/**
 * Cross-entropy from logits and integer targets (the book's calc_loss_batch / calc_loss_loader).
 * Never builds a one-hot of the 50,257-wide vocabulary: it picks each target's logit by index.
 */
import * as tf from "@tensorflow/tfjs";
import { IGNORE_INDEX, sparseCrossEntropy } from "../kernels/fused/cross_entropy.ts";
import type { GPTModel } from "../model/gpt.ts";

/** PyTorch's default ignore_index: targets equal to it do not count. */
export { IGNORE_INDEX };

/**
 * Mean cross-entropy over the positions whose target is not `ignoreIndex`
 * (NaN when every target is ignored, as torch.nn.functional.cross_entropy returns).
 * logits: [N, V] or [B, T, V]; targets: matching int32 [N] or [B, T].
 */
export function crossEntropy(
  logits: tf.Tensor,
  targets: tf.Tensor,
  ignoreIndex = IGNORE_INDEX,
): tf.Scalar {
  return tf.tidy(() => {
    const counted = tf.sum(tf.notEqual(targets, ignoreIndex).toFloat());
    return tf.div(summedCrossEntropy(logits, targets, ignoreIndex), counted) as tf.Scalar;
  });
}

/** The cross-entropy summed over the counted targets (ignored ones add 0); shapes as above. */
export function summedCrossEntropy(
  logits: tf.Tensor,
  targets: tf.Tensor,
  ignoreIndex = IGNORE_INDEX,
): tf.Scalar {
  return tf.tidy(() => {
    const v = logits.shape[logits.shape.length - 1];
    const flat = logits.reshape([-1, v]) as tf.Tensor2D;
    const t = targets.reshape([-1]).toInt() as tf.Tensor1D;
    return tf.sum(sparseCrossEntropy(flat, t, ignoreIndex));
  });
}

/** A batch of inputs and next-token targets, both int32 [B, T]. */
export interface Batch {
  inputs: tf.Tensor2D;
  targets: tf.Tensor2D;
}

/** The book's calc_loss_batch: cross-entropy of the model's logits against the targets. */
export function calcLossBatch(
  inputs: tf.Tensor2D,
  targets: tf.Tensor2D,
  model: GPTModel,
): tf.Scalar {
  return tf.tidy(() => crossEntropy(model.forward(inputs), targets));
}

/**
 * What training and evaluation need from a loader (the DataLoader of ../data/loader.ts, as
 * TextDataLoader and InstructionLoader are): batches per epoch, epochs that can start mid-way, a
 * shuffle state to save and restore, and a look at the next epoch's first batches.
 */
export interface DataLoader extends Iterable<Batch> {
  /** Batches per epoch (`len(loader)`). */
  readonly length: number;
  /** The shuffle generator's state: saved before an epoch, it replays that epoch's order. */
  state: { rngState: number };
  /** One epoch of batches (draws a new order when shuffling), starting at batch `skip`. */
  epoch(skip?: number): Iterable<Batch>;
  /** The next epoch's first `n` batches, without moving the shuffle state. */
  peek(n?: number): Iterable<Batch>;
}

/**
 * The book's calc_loss_loader: mean loss over the first `numBatches` batches (all by default);
 * NaN for an empty loader. Batches are disposed after use.
 */
export async function calcLossLoader(
  loader: DataLoader,
  model: GPTModel,
  numBatches?: number,
): Promise<number> {
  if (loader.length === 0) return NaN;
  const n = Math.min(numBatches ?? loader.length, loader.length);
  let total = 0;
  // peek: evaluation must not disturb the training order.
  for (const { inputs, targets } of loader.peek(n)) {
    const loss = calcLossBatch(inputs, targets, model);
    total += (await loss.data())[0];
    tf.dispose([loss, inputs, targets]);
  }
  return total / n;
}
