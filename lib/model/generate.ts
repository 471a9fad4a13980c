/**
 * Text generation (the book's `generate`): crop to the context, optional top-k, temperature
 * scaling (0 = greedy), an end-of-sequence id that stops early, and seeded sampling; besides the
 * book, Hugging Face's top-p and repetition penalty (lib/model/sampling.ts) and stop strings.
 * A key/value cache makes each new token cost one position instead of the whole context.
 */
import * as tf from "@tensorflow/tfjs";
import { disposeCaches, type GPTModel, type LayerCache } from "./gpt.ts";
import { makeRng } from "../util/random.ts";
import { UserError } from "../util/errors.ts";
import { checkSampling, cutAtStop, pickToken } from "./sampling.ts";

export { cutAtStop, pickToken };

/** Options of `generate`, with the book's defaults. */
export interface GenerateOptions {
  maxNewTokens: number;
  /** Context size to crop to; defaults to the model's context length. */
  contextSize?: number;
  /** 0 picks the most likely token (greedy); above 0 divides the logits before sampling. */
  temperature?: number;
  /** Keep only the k most likely tokens before sampling. */
  topK?: number;
  /** Nucleus sampling: keep the most likely tokens up to this total probability, in (0, 1]. */
  topP?: number;
  /** CTRL's repetition penalty over prompt and generated ids (> 0; 1 = none, HF suggests 1.2). */
  repetitionPenalty?: number;
  /** Stop once the generated text contains one of these strings (needs `decode`). */
  stop?: readonly string[];
  /** Turns ids into text, for `stop` (e.g. the tokenizer's decode). */
  decode?: (ids: number[]) => string;
  /** Stop when this token is produced (it is not returned). */
  eosId?: number;
  /** Seed of the sampling RNG. */
  seed?: number;
  /** Reuse keys/values between steps (identical output, much faster). Default true. */
  useCache?: boolean;
  /** Called with each new token id. */
  onToken?: (id: number) => void | Promise<void>;
  /** Stop after the current token; the ids so far are returned. */
  signal?: AbortSignal;
}

/** Generates up to maxNewTokens ids after `prompt`; returns the new ids only. */
export async function generate(
  model: GPTModel,
  prompt: number[],
  opts: GenerateOptions,
): Promise<number[]> {
  const ctx = Math.min(opts.contextSize ?? model.config.contextLength, model.config.contextLength);
  const { temperature = 0, topK, topP, repetitionPenalty, eosId, useCache = true } = opts;
  checkSampling({ topK, topP, repetitionPenalty });
  const stops = (opts.stop ?? []).filter((s) => s.length > 0);
  if (stops.length > 0 && !opts.decode) {
    throw new UserError("generate(): stop strings need a decode function");
  }
  const rng = makeRng(opts.seed ?? 123);
  const wasTraining = model.training;
  model.eval();
  const ids = [...prompt], out: number[] = [];
  let caches: LayerCache[] | undefined;
  try {
    for (let step = 0; step < opts.maxNewTokens && !opts.signal?.aborted; step++) {
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
        { topP, repetitionPenalty, context: ids },
      );
      logits.dispose();
      if (eosId !== undefined && next === eosId) break;
      ids.push(next);
      out.push(next);
      await opts.onToken?.(next);
      // The token that completes a stop string is kept (as Hugging Face's stop_strings).
      if (stops.length > 0 && cutAtStop(opts.decode!(out), stops).hit) break;
    }
  } finally {
    if (caches) disposeCaches(caches);
    model.train(wasTraining);
  }
  return out;
}
