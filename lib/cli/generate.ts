/** `llm generate`: continue a prompt with a checkpoint (the book's generate). */
import { initBackend } from "../backend.ts";
import { generate } from "../model/generate.ts";
import { decode, encode, END_OF_TEXT } from "../data/tokenizer.ts";
import { UserError } from "../util/errors.ts";
import type { Command, Flags } from "./args.ts";
import { loadBaseModel } from "../train/finetune.ts";

export const generateCmd: Command = {
  name: "generate",
  summary: "generate text from a prompt with a checkpoint or pretrained GPT-2",
  usage:
    "generate --weights DIR|NAME --prompt TEXT [--max-new-tokens N] [--temperature T] [--top-k K] [--seed S] [--json]",
  flags: {
    weights: {
      type: "string",
      required: true,
      help: "checkpoint folder (HF GPT-2 layout) or gpt2-small|-medium|-large|-xl",
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
      help: "0 = greedy; >0 samples from softmax(logits / T)",
    },
    "top-k": { type: "int", positive: true, help: "sample among the k most likely tokens" },
    seed: { type: "int", default: 123, help: "seed of the sampling" },
    "stop-at-eos": { type: "boolean", default: false, help: "stop at <|endoftext|> (50256)" },
    "no-cache": { type: "boolean", default: false, help: "recompute the whole context each token" },
    json: {
      type: "boolean",
      default: false,
      help: 'print one JSON line {"ids": [...new ids], "text": "..."}',
    },
  },
  async run(f) {
    promptIds(f); // validate before loading anything
    if ((f.temperature as number) < 0) throw new UserError("generate: --temperature must be >= 0");
    await initBackend({ log: !f.json });
    // Dropout is off in generation whatever the checkpoint says (generate runs in eval mode).
    const { model } = await loadBaseModel(f.weights as string);
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
    const ids = await generate(model, prompt, {
      maxNewTokens: f["max-new-tokens"] as number,
      temperature: f.temperature as number,
      topK: f["top-k"] as number | undefined,
      seed: f.seed as number,
      eosId: f["stop-at-eos"] ? END_OF_TEXT : undefined,
      useCache: !f["no-cache"],
    });
    const text = decode(ids);
    console.log(f.json ? JSON.stringify({ ids, text }) : decode(prompt) + text);
  },
};

function promptIds(f: Flags): number[] {
  if (f["prompt-ids"] !== undefined) {
    const ids = String(f["prompt-ids"]).split(",").map((s) => Number(s.trim()));
    if (ids.some((id) => !Number.isInteger(id) || id < 0)) {
      throw new UserError(
        `generate: --prompt-ids must be comma-separated token ids (got "${f["prompt-ids"]}")`,
      );
    }
    return ids;
  }
  if (f.prompt === undefined) {
    throw new UserError("generate: give --prompt TEXT or --prompt-ids IDS (see --help)");
  }
  const ids = encode(f.prompt as string);
  if (ids.length === 0) throw new UserError("generate: --prompt is empty");
  return ids;
}
