/** `llm model-info`: the book's parameter counts and size of a preset, without allocating it. */
import {
  countParams,
  type GPTConfig,
  PRESETS,
  resolveConfig,
  validateConfig,
} from "../model/config.ts";
import { UserError } from "../util/errors.ts";
import { countLoraParams } from "../model/lora_counts.ts";
import { readConfigFile } from "../io/config_file.ts";
import { defineCommand } from "./args.ts";

export const modelInfo = defineCommand({
  name: "model-info",
  summary: "parameter counts and float32 size of a model preset (book chapter 4.6, appendix E)",
  usage:
    "model-info --model NAME|--config FILE.json [--context-length N] [--qkv-bias] [--num-classes N] [--lora-rank R --lora-alpha A]",
  flags: {
    model: {
      type: "string",
      help: `preset: ${Object.keys(PRESETS).join(", ")}`,
      default: "gpt2-small",
    },
    config: {
      type: "string",
      help:
        "any shape: a Hugging Face GPT-2 config.json or the book's cfg dict as JSON (instead of --model)",
    },
    "context-length": { type: "int", positive: true, help: "override the context length" },
    "qkv-bias": {
      type: "boolean",
      help: "add biases to the query/key/value projections",
      default: false,
    },
    "num-classes": {
      type: "int",
      positive: true,
      help: "replace the output head by a classifier (chapter 6)",
    },
    "lora-rank": {
      type: "int",
      positive: true,
      help: "LoRA on every linear layer: trainableParams counts A and B",
    },
    "lora-alpha": {
      type: "number",
      positive: true,
      help: "LoRA alpha (does not change the counts)",
    },
  },
  async run(flags) {
    const overrides = {
      contextLength: flags["context-length"],
      qkvBias: flags["qkv-bias"],
    };
    const file = flags.config;
    const config = file
      ? withOverrides(await readConfigFile(file), overrides)
      : resolveConfig(flags.model, overrides);
    const numClasses = flags["num-classes"];
    const rank = flags["lora-rank"];
    if ((rank === undefined) !== (flags["lora-alpha"] === undefined)) {
      throw new UserError("model-info: give --lora-rank and --lora-alpha together");
    }
    const counts = countParams(config);
    // Without a classifier or LoRA: the book's chapter 4 numbers (every parameter trainable).
    const lora = countLoraParams(config, { rank: rank ?? 1, numClasses });
    const totalParams = numClasses === undefined ? counts.totalParams : lora.baseParams;
    const info: Record<string, unknown> = {
      model: file ?? flags.model,
      ...counts,
      totalParams,
      trainableParams: rank === undefined ? totalParams : lora.loraParams,
      config,
    };
    if (numClasses !== undefined) {
      // A classifier head has nothing to tie to the token embedding.
      delete info.tiedParams;
      info.sizeMB = Math.round((totalParams * 4) / (1024 * 1024) * 100) / 100;
      info.numClasses = numClasses;
    }
    if (rank !== undefined) {
      Object.assign(info, {
        loraRank: rank,
        loraAlpha: flags["lora-alpha"],
        loraLayers: lora.layers,
      });
    }
    console.log(JSON.stringify(info));
  },
});

/** A config file's shape with --context-length (and --qkv-bias when set) applied. */
function withOverrides(
  config: GPTConfig,
  o: { contextLength?: number; qkvBias: boolean },
): GPTConfig {
  const c = { ...config, contextLength: o.contextLength ?? config.contextLength };
  if (o.qkvBias) c.qkvBias = true;
  validateConfig(c);
  return c;
}
