/** `llm model-info`: the book's parameter counts and size of a preset, without allocating it. */
import { countParams, PRESETS, resolveConfig } from "../config.ts";
import type { Command } from "./args.ts";

export const modelInfo: Command = {
  name: "model-info",
  summary: "parameter counts and float32 size of a model preset (book chapter 4.6)",
  usage: "model-info --model NAME [--context-length N] [--qkv-bias]",
  flags: {
    model: {
      type: "string",
      help: `preset: ${Object.keys(PRESETS).join(", ")}`,
      default: "gpt2-small",
    },
    "context-length": { type: "int", positive: true, help: "override the context length" },
    "qkv-bias": {
      type: "boolean",
      help: "add biases to the query/key/value projections",
      default: false,
    },
  },
  run(flags) {
    const config = resolveConfig(flags.model as string, {
      contextLength: flags["context-length"] as number | undefined,
      qkvBias: flags["qkv-bias"] as boolean,
    });
    const counts = countParams(config);
    console.log(
      JSON.stringify({
        model: flags.model,
        ...counts,
        trainableParams: counts.totalParams,
        config,
      }),
    );
    return Promise.resolve();
  },
};
