/**
 * `--config FILE.json`: a model shape from a Hugging Face GPT-2 `config.json` (`n_embd`,
 * `n_layer`, `n_head`, `n_positions`, `vocab_size`, ...) or from the book's cfg dict
 * (`emb_dim`, `n_layers`, `n_heads`, `context_length`, `vocab_size`, `drop_rate`, `qkv_bias`),
 * checked once: not GPT-2, or inconsistent, is one clear line.
 */
import { type GPTConfig, validateConfig } from "../model/config.ts";
import { UserError } from "../util/errors.ts";
import { gptConfigFromHf } from "./hf_config.ts";
import { parseJsonFile } from "./json.ts";

/** The book's GPT_CONFIG_124M keys. */
const BOOK_KEYS = {
  vocab_size: "vocabSize",
  context_length: "contextLength",
  emb_dim: "embDim",
  n_heads: "nHeads",
  n_layers: "nLayers",
  drop_rate: "dropRate",
  qkv_bias: "qkvBias",
} as const;

/** GELU variants that are the book's tanh approximation. */
const TANH_GELU = ["gelu_new", "gelu_pytorch_tanh", "gelu_fast"];

/**
 * A GPTConfig from parsed JSON in either style; `label` names the source in errors. HF style
 * defaults to GPT-2's q/k/v biases (qkvBias true), the book's dict to its `qkv_bias: False`.
 */
export function configFromJson(json: unknown, label: string): GPTConfig {
  if (json === null || typeof json !== "object" || Array.isArray(json)) {
    throw new UserError(`${label}: expected a JSON object`);
  }
  const j = json as Record<string, unknown>;
  if (j.model_type !== undefined && j.model_type !== "gpt2") {
    throw new UserError(
      `${label}: model_type is ${JSON.stringify(j.model_type)}, not a GPT-2 ("gpt2") config`,
    );
  }
  if ("n_embd" in j) {
    checkHfExtras(j, label);
    return gptConfigFromHf(j as Parameters<typeof gptConfigFromHf>[0], label).config;
  }
  if (!("emb_dim" in j)) {
    throw new UserError(
      `${label}: not a GPT-2 config (expected Hugging Face's n_embd, n_layer, n_head, ... or ` +
        `the book's emb_dim, n_layers, n_heads, ...)`,
    );
  }
  const c: Record<string, unknown> = { dropRate: 0.1, qkvBias: false };
  for (const [key, ours] of Object.entries(BOOK_KEYS)) if (key in j) c[ours] = j[key];
  if (typeof c.qkvBias !== "boolean") {
    throw new UserError(
      `${label}: qkv_bias must be true or false (got ${JSON.stringify(c.qkvBias)})`,
    );
  }
  if (typeof c.dropRate !== "number") {
    throw new UserError(`${label}: drop_rate must be a number (got ${JSON.stringify(c.dropRate)})`);
  }
  try {
    validateConfig(c as unknown as GPTConfig);
  } catch (err) {
    throw new UserError(`${label}: ${(err as Error).message}`);
  }
  return c as unknown as GPTConfig;
}

/** HF fields our GPTModel cannot follow: another MLP width or activation. */
function checkHfExtras(j: Record<string, unknown>, label: string): void {
  const e = j.n_embd, inner = j.n_inner;
  if (inner !== undefined && inner !== null && typeof e === "number" && inner !== 4 * e) {
    throw new UserError(`${label}: n_inner ${inner} is not 4 * n_embd (${4 * e}), as GPT-2 has`);
  }
  const act = j.activation_function;
  if (act !== undefined && !TANH_GELU.includes(String(act))) {
    throw new UserError(
      `${label}: activation_function ${JSON.stringify(act)} is not GPT-2's tanh GELU ("gelu_new")`,
    );
  }
}

/** Reads `--config FILE.json`. */
export async function readConfigFile(path: string): Promise<GPTConfig> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (err) {
    throw new UserError(`cannot read --config ${path}: ${(err as Error).message.split("\n")[0]}`);
  }
  return configFromJson(parseJsonFile(text, path), path);
}
