/**
 * Streaming generation: the text of each new token as soon as it is sampled, byte-exact (a
 * character split over tokens arrives whole, with the token that completes it).
 *
 * @example
 * ```ts
 * for await (const delta of streamText(model, encode("Every effort moves you"), { maxNewTokens: 20 })) {
 *   await Deno.stdout.write(new TextEncoder().encode(delta));
 * }
 * ```
 * @module
 */
import type { GPTModel } from "../model/gpt.ts";
import { generate, type GenerateOptions } from "../model/generate.ts";
import { TokenTextDecoder } from "./token_bytes.ts";

/** Options of {@link generateText}: `generate`'s, plus the text callback. */
export interface GenerateTextOptions extends GenerateOptions {
  /** Called with the new text of each token ("" while a character is incomplete is skipped). */
  onText?: (delta: string) => void | Promise<void>;
}

/** `generate` that also reports text deltas; returns the new ids and their text. */
export async function generateText(
  model: GPTModel,
  prompt: number[],
  opts: GenerateTextOptions,
): Promise<{ ids: number[]; text: string }> {
  const decoder = new TokenTextDecoder();
  let text = "";
  const emit = async (delta: string) => {
    if (delta === "") return;
    text += delta;
    await opts.onText?.(delta);
  };
  const ids = await generate(model, prompt, {
    ...opts,
    onToken: async (id) => {
      await opts.onToken?.(id);
      await emit(decoder.push(id));
    },
  });
  await emit(decoder.flush());
  return { ids, text };
}

/**
 * The text deltas of {@link generateText} as an async iterator. Generation waits for the consumer
 * (one delta ahead at most); breaking out of the loop stops it.
 */
export async function* streamText(
  model: GPTModel,
  prompt: number[],
  opts: GenerateOptions,
): AsyncGenerator<string, void, undefined> {
  const stop = new AbortController();
  const signal = opts.signal ? AbortSignal.any([opts.signal, stop.signal]) : stop.signal;
  const queue: string[] = [];
  let wake: (() => void) | undefined;
  let resume: (() => void) | undefined;
  let finished = false;
  let failure: unknown;
  const poke = () => {
    wake?.();
    wake = undefined;
  };
  const run = generateText(model, prompt, {
    ...opts,
    signal,
    onText: (delta) => {
      queue.push(delta);
      poke();
      return new Promise<void>((r) => (resume = r)); // wait until the consumer took it
    },
  }).then(
    () => void (finished = true),
    (err) => void ((failure = err), (finished = true)),
  ).finally(poke);
  try {
    while (true) {
      if (queue.length > 0) {
        yield queue.shift()!;
        resume?.();
        resume = undefined;
        continue;
      }
      if (finished) break;
      await new Promise<void>((r) => (wake = r));
    }
    if (failure !== undefined) throw failure;
  } finally {
    stop.abort();
    resume?.();
    await run;
  }
}
