/**
 * Choosing the next token from one row of logits. The book's generate has top-k and temperature;
 * Hugging Face's adds the repetition penalty and nucleus (top-p) sampling. We apply them in
 * Hugging Face's order (`generate()`'s logits processors, then its warpers): repetition penalty,
 * top-k, temperature, top-p. Top-k and temperature commute (dividing by T > 0 keeps the ranking),
 * so the book's top-k-then-temperature is the same thing.
 */
import { UserError } from "../util/errors.ts";

/** The sampling settings of one step. */
export interface SamplingOptions {
  /** 0 (or less) picks the most likely token; above 0 samples from softmax(logits / T). */
  temperature?: number;
  /** Keep only the k most likely tokens. */
  topK?: number;
  /** Keep the smallest set of most likely tokens whose probability reaches p, in (0, 1]. */
  topP?: number;
  /** CTRL's repetition penalty (1 = none): seen tokens' logits are divided by it (or multiplied when negative). */
  repetitionPenalty?: number;
}

/** Throws a UserError for a top-p outside (0, 1] or a repetition penalty <= 0. */
export function checkSampling(o: SamplingOptions): void {
  if (o.topP !== undefined && !(o.topP > 0 && o.topP <= 1)) {
    throw new UserError(`top-p must be in (0, 1] (got ${o.topP})`);
  }
  if (o.repetitionPenalty !== undefined && !(o.repetitionPenalty > 0)) {
    throw new UserError(`repetition penalty must be > 0 (got ${o.repetitionPenalty})`);
  }
  if (o.topK !== undefined && !(Number.isInteger(o.topK) && o.topK > 0)) {
    throw new UserError(`top-k must be a positive integer (got ${o.topK})`);
  }
}

/**
 * The logits after the repetition penalty, top-k and top-p, with removed tokens at -Infinity and
 * kept ones NOT divided by the temperature (the sampler divides). `context` holds the ids seen so
 * far (prompt and generated), whose logits the penalty changes. Top-p only applies when sampling
 * (temperature > 0), as in Hugging Face, where greedy search has no warpers.
 */
export function warpLogits(
  logits: Float32Array,
  context: readonly number[],
  o: SamplingOptions,
): Float32Array {
  let row = logits;
  const penalty = o.repetitionPenalty ?? 1;
  if (penalty !== 1) {
    // HF's RepetitionPenaltyLogitsProcessor: each seen id once, negative logits multiplied.
    row = Float32Array.from(row);
    for (const id of new Set(context)) {
      if (id < 0 || id >= row.length) continue;
      const x = logits[id];
      row[id] = x < 0 ? x * penalty : x / penalty;
    }
  }
  const { topK } = o;
  if (topK !== undefined && topK > 0 && topK < row.length) {
    // Book: logits below the k-th largest become -inf.
    const kth = [...row].sort((a, b) => b - a)[topK - 1];
    row = row.map((x) => (x < kth ? -Infinity : x));
  }
  const temperature = o.temperature ?? 0, topP = o.topP;
  if (temperature > 0 && topP !== undefined && topP < 1) row = topPMask(row, temperature, topP);
  return row;
}

/**
 * HF's TopPLogitsWarper on softmax(row / T): sort ascending, remove the tokens whose cumulative
 * probability is <= 1 - p, always keep the most likely one.
 */
function topPMask(row: Float32Array, temperature: number, topP: number): Float32Array {
  let max = -Infinity;
  for (const x of row) if (x > max) max = x;
  const probs = Array.from(row, (x) => Math.exp((x - max) / temperature));
  let total = 0;
  for (const p of probs) total += p;
  const order = probs.map((_, i) => i).sort((a, b) => probs[a] - probs[b]);
  const out = Float32Array.from(row);
  let cumulative = 0;
  for (let r = 0; r < order.length - 1; r++) {
    cumulative += probs[order[r]] / total;
    if (cumulative <= 1 - topP) out[order[r]] = -Infinity;
    else break;
  }
  return out;
}

/** Chooses the next token from one row of logits (`random` gives uniform numbers in [0, 1)). */
export function pickToken(
  logits: Float32Array,
  temperature: number,
  topK: number | undefined,
  random: () => number,
  extra: { topP?: number; repetitionPenalty?: number; context?: readonly number[] } = {},
): number {
  const row = warpLogits(logits, extra.context ?? [], { temperature, topK, ...extra });
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

/**
 * The text up to (not including) the first of `stops` that occurs in it, and whether one did.
 * Generation stops once a stop string appears; the CLI prints the text before it.
 */
export function cutAtStop(text: string, stops: readonly string[]): { text: string; hit: boolean } {
  let cut = -1;
  for (const s of stops) {
    if (!s) continue;
    const i = text.indexOf(s);
    if (i >= 0 && (cut < 0 || i < cut)) cut = i;
  }
  return cut < 0 ? { text, hit: false } : { text: text.slice(0, cut), hit: true };
}
