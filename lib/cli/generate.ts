/** `llm generate`: continue a prompt with a checkpoint (the book's generate). */
import { initBackend } from "../backend.ts";
import { cutAtStop, generate, type GenerateOptions } from "../model/generate.ts";
import { generateText } from "../data/stream.ts";
import { LiveText } from "../notebook/live_text.ts";
import { loadAdapter } from "../io/adapter.ts";
import { decode, encode, END_OF_TEXT, VOCAB_SIZE } from "../data/tokenizer.ts";
import { UserError } from "../util/errors.ts";
import { defineCommand, defineFlags, type Flags } from "./args.ts";
import { loadBaseModel } from "../io/resolve.ts";

const FLAGS = defineFlags({
  weights: {
    type: "string",
    required: true,
    help: "checkpoint folder (HF GPT-2 layout), gpt2-small|-medium|-large|-xl, or a Hub " +
      "GPT-2 repo id (ORG/NAME or hf:NAME, e.g. distilbert/distilgpt2)",
  },
  prompt: { type: "string", help: "text to continue" },
  "prompt-ids": {
    type: "string",
    help: "token ids to continue instead of --prompt, e.g. 15496,11",
  },
  "max-new-tokens": { type: "int", positive: true, default: 50, help: "tokens to generate" },
  temperature: {
    type: "number",
    default: 0,
    min: 0,
    help: "0 = greedy; >0 samples from softmax(logits / T)",
  },
  "top-k": { type: "int", positive: true, help: "sample among the k most likely tokens" },
  "top-p": {
    type: "number",
    positive: true,
    max: 1,
    help: "nucleus sampling: keep the most likely tokens up to this probability, in (0, 1]",
  },
  "repetition-penalty": {
    type: "number",
    positive: true,
    help: "CTRL/Hugging Face penalty (> 0) on tokens already in prompt or output; 1 = none",
  },
  stop: {
    type: "string",
    repeatable: true,
    help: 'stop when the output contains this text (\\n for a newline, e.g. "\\n\\n")',
  },
  adapter: {
    type: "string",
    help: "apply this LoRA adapter folder (finetune's adapter/) without merging it",
  },
  seed: { type: "int", default: 123, help: "seed of the sampling" },
  "stop-at-eos": { type: "boolean", default: false, help: "stop at <|endoftext|> (50256)" },
  "no-cache": { type: "boolean", default: false, help: "recompute the whole context each token" },
  stream: {
    type: "boolean",
    default: false,
    help: "print the text token by token as it is generated",
  },
  json: {
    type: "boolean",
    default: false,
    help: 'print one JSON line {"ids": [...new ids], "text": "..."}',
  },
});

export const generateCmd = defineCommand({
  name: "generate",
  summary: "generate text from a prompt with a checkpoint or pretrained GPT-2",
  usage:
    "generate --weights DIR|NAME|ORG/REPO --prompt TEXT [--max-new-tokens N] [--temperature T] [--top-k K] [--top-p P] [--repetition-penalty R] [--stop S ...] [--adapter DIR] [--seed S] [--stream] [--json]",
  flags: FLAGS,
  async run(f) {
    promptIds(f); // validate before loading anything
    const topP = f["top-p"];
    const penalty = f["repetition-penalty"];
    const stops = f.stop.map(unescapeStop);
    if (stops.includes("")) throw new UserError("generate: --stop is empty");
    await initBackend({ log: !f.json });
    // Dropout is off in generation whatever the checkpoint says (generate runs in eval mode).
    const { model } = await loadBaseModel(f.weights);
    if (f.adapter !== undefined) await loadAdapter(f.adapter, model);
    const prompt = promptIds(f);
    const vocab = model.config.vocabSize;
    const bad = prompt.find((id) => id >= vocab);
    if (bad !== undefined) {
      throw new UserError(
        `generate: prompt token ${bad} is outside the model's vocabulary of ${vocab} tokens`,
      );
    }
    const ctx = model.config.contextLength;
    if (prompt.length > ctx && !f.json) {
      console.error(
        `note: prompt has ${prompt.length} tokens; only the last ${ctx} (the context) are used`,
      );
    }
    const options: GenerateOptions = {
      maxNewTokens: f["max-new-tokens"],
      temperature: f.temperature,
      topK: f["top-k"],
      topP,
      repetitionPenalty: penalty,
      stop: stops,
      decode: decodeIds,
      seed: f.seed,
      eosId: f["stop-at-eos"] ? END_OF_TEXT : undefined,
      useCache: !f["no-cache"],
    };
    const live = f.stream && !f.json ? new StopAwareStream(decode(prompt), stops) : undefined;
    const ids = live
      ? (await generateText(model, prompt, {
        ...options,
        onToken: (id) => void decodeIds([id]), // an id past the tokenizer: one line, as below
        onText: (delta) => live.append(delta),
      })).ids
      : await generate(model, prompt, options);
    const text = cutAtStop(decodeIds(ids), stops).text;
    if (live) await live.finish(text);
    else console.log(f.json ? JSON.stringify({ ids, text }) : decode(prompt) + text);
  },
});

/**
 * The GPT-2 tokenizer's decode, refusing in one line an id a model with a larger vocabulary
 * (e.g. nanoGPT's 50,304) produced that the tokenizer has no text for.
 */
function decodeIds(ids: Iterable<number>): string {
  for (const id of ids) {
    if (id >= VOCAB_SIZE) {
      throw new UserError(
        `generate: the model produced token ${id}, which the GPT-2 tokenizer ` +
          `(${VOCAB_SIZE} ids) cannot decode (its vocab_size is larger)`,
      );
    }
  }
  return decode(ids);
}

/**
 * Streamed text that never shows a --stop string: the last characters (one fewer than the
 * longest stop string) wait until no stop string can start there; the end is the cut text.
 */
class StopAwareStream {
  readonly #live: LiveText;
  #text = "";
  #shown = 0;
  readonly #held: number;
  constructor(prompt: string, readonly stops: readonly string[]) {
    this.#live = new LiveText(prompt);
    this.#held = Math.max(0, ...stops.map((s) => s.length - 1));
  }

  append(delta: string): Promise<void> {
    this.#text += delta;
    let safe = this.#text.length - this.#held;
    if (this.stops.some((s) => this.#text.includes(s))) safe = this.#shown; // the end is cut anyway
    const code = this.#text.charCodeAt(safe - 1);
    if (code >= 0xd800 && code <= 0xdbff) safe--; // never split a surrogate pair
    if (safe <= this.#shown) return Promise.resolve();
    const out = this.#text.slice(this.#shown, safe);
    this.#shown = safe;
    return this.#live.append(out);
  }

  /** Shows the rest of the final (cut) text and ends the line. */
  async finish(text: string): Promise<void> {
    if (text.length > this.#shown) await this.#live.append(text.slice(this.#shown));
    await this.#live.finish();
  }
}

/** `\n`, `\t` and `\\` in a --stop value, so that a shell user can pass a newline. */
function unescapeStop(text: string): string {
  return text.replace(/\\([nt\\])/g, (_, c) => (c === "n" ? "\n" : c === "t" ? "\t" : "\\"));
}

function promptIds(f: Flags<typeof FLAGS>): number[] {
  if (f["prompt-ids"] !== undefined) {
    const parts = f["prompt-ids"].split(",").map((s) => s.trim());
    // Number("") is 0: an empty list or an empty item must not become token 0.
    const bad = parts.findIndex((s) => !/^\d+$/.test(s) || !Number.isSafeInteger(Number(s)));
    if (bad >= 0) {
      throw new UserError(
        `generate: --prompt-ids must be comma-separated token ids (got "${f["prompt-ids"]}"; ` +
          `item ${bad + 1} is ${JSON.stringify(parts[bad])})`,
      );
    }
    return parts.map(Number);
  }
  if (f.prompt === undefined) {
    throw new UserError("generate: give --prompt TEXT or --prompt-ids IDS (see --help)");
  }
  const ids = encode(f.prompt);
  if (ids.length === 0) throw new UserError("generate: --prompt is empty");
  return ids;
}
