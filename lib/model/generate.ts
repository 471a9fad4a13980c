/**
 * Text generation (the book's `generate`): crop to the context, optional top-k, temperature
 * scaling (0 = greedy), an end-of-sequence id that stops early, and seeded sampling.
 * A key/value cache makes each new token cost one position instead of the whole context.
 */
import * as tf from "@tensorflow/tfjs";
import { disposeCaches, type GPTModel, type LayerCache } from "./gpt.ts";
import { makeRng } from "../util/random.ts";

/** Options of `generate`, with the book's defaults. */
export interface GenerateOptions {
  maxNewTokens: number;
  /** Context size to crop to; defaults to the model's context length. */
  contextSize?: number;
  /** 0 picks the most likely token (greedy); above 0 divides the logits before sampling. */
  temperature?: number;
  /** Keep only the k most likely tokens before sampling. */
  topK?: number;
  /** Stop when this token is produced (it is not returned). */
  eosId?: number;
  /** Seed of the sampling RNG. */
  seed?: number;
  /** Reuse keys/values between steps (identical output, much faster). Default true. */
  useCache?: boolean;
  /** Called with each new token id. */
  onToken?: (id: number) => void;
}

/** Generates up to maxNewTokens ids after `prompt`; returns the new ids only. */
export async function generate(
  model: GPTModel,
  prompt: number[],
  opts: GenerateOptions,
): Promise<number[]> {
  const ctx = Math.min(opts.contextSize ?? model.config.contextLength, model.config.contextLength);
  const { temperature = 0, topK, eosId, useCache = true } = opts;
  const rng = makeRng(opts.seed ?? 123);
  const wasTraining = model.training;
  model.eval();
  const ids = [...prompt], out: number[] = [];
  let caches: LayerCache[] | undefined;
  try {
    for (let step = 0; step < opts.maxNewTokens; step++) {
      // A cache is valid while the window does not slide (absolute positions stay the same).
      const cacheUsable = useCache && ids.length <= ctx;
      if (!cacheUsable && caches) {
        disposeCaches(caches);
        caches = undefined;
      }
      const logits = tf.tidy(() => {
        let input: number[];
        if (cacheUsable && caches) input = ids.slice(-1);
        else {
          input = ids.slice(-ctx);
          if (cacheUsable) caches = model.blocks().map(() => ({}));
        }
        const all = model.forward(tf.tensor2d(input, [1, input.length], "int32"), caches);
        return all.slice([0, input.length - 1, 0], [1, 1, -1]).reshape([-1]);
      });
      const next = pickToken(
        (await logits.data()) as Float32Array,
        temperature,
        topK,
        () => rng.next(),
      );
      logits.dispose();
      if (eosId !== undefined && next === eosId) break;
      ids.push(next);
      out.push(next);
      opts.onToken?.(next);
    }
  } finally {
    if (caches) disposeCaches(caches);
    model.train(wasTraining);
  }
  return out;
}

/** Chooses the next token from one row of logits, as the book's generate does. */
export function pickToken(
  logits: Float32Array,
  temperature: number,
  topK: number | undefined,
  random: () => number,
): number {
  let row = logits;
  if (topK !== undefined && topK > 0 && topK < row.length) {
    // Book: logits below the k-th largest become -inf.
    const kth = [...row].sort((a, b) => b - a)[topK - 1];
    row = row.map((x) => (x < kth ? -Infinity : x));
  }
  if (!(temperature > 0)) return argmax(row);
  let max = -Infinity;
  for (const x of row) if (x > max) max = x;
  const probs = row.map((x) => Math.exp((x - max) / temperature));
  let total = 0;
  for (const p of probs) total += p;
  let r = random() * total;
  for (let i = 0; i < probs.length; i++) {
    r -= probs[i];
    if (r <= 0 && probs[i] > 0) return i;
  }
  return argmax(row);
}

/** Index of the largest value (the first one on ties, like torch.argmax). */
function argmax(row: Float32Array): number {
  let best = 0;
  for (let i = 1; i < row.length; i++) if (row[i] > row[best]) best = i;
  return best;
}
