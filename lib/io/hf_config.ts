/**
 * A Hugging Face GPT-2 `config.json` <-> our GPTConfig (what `openai-community/gpt2` publishes and
 * transformers' GPT2LMHeadModel reads), and the file names of a checkpoint folder.
 * @module
 */
import { join } from "node:path";
import { type GPTConfig, validateConfig } from "../model/config.ts";
import { UserError } from "../util/errors.ts";
import { parseJsonFile } from "./json.ts";

/** The file names of a checkpoint folder. */
export const CONFIG_FILE = "config.json";
export const WEIGHTS_FILE = "model.safetensors";

/** The part of a HF `config.json` we read and write (plus whatever else the file holds). */
export interface HfGpt2Config {
  model_type?: string;
  vocab_size?: number;
  n_positions?: number;
  n_ctx?: number;
  n_embd?: number;
  n_layer?: number;
  n_head?: number;
  resid_pdrop?: number;
  embd_pdrop?: number;
  attn_pdrop?: number;
  tie_word_embeddings?: boolean;
  /** Ours: false when the model was trained without Q/K/V biases (c_attn.bias is then zero). */
  qkv_bias?: boolean;
  [key: string]: unknown;
}

/** Converts a parsed HF config.json to our GPTConfig; `label` names the file in errors. */
export function gptConfigFromHf(
  hf: HfGpt2Config,
  label = CONFIG_FILE,
): { config: GPTConfig; tied: boolean } {
  if (hf === null || typeof hf !== "object" || Array.isArray(hf)) {
    throw new UserError(`${label}: expected a JSON object`);
  }
  if (hf.model_type !== undefined && hf.model_type !== "gpt2") {
    throw new UserError(
      `${label}: model_type is "${hf.model_type}", only "gpt2" checkpoints are supported`,
    );
  }
  const int = (key: keyof HfGpt2Config, fallback?: keyof HfGpt2Config): number => {
    const value = hf[key] ?? (fallback ? hf[fallback] : undefined);
    if (typeof value !== "number" || !Number.isInteger(value) || value <= 0) {
      const name = fallback ? `${key} (or ${fallback})` : key;
      throw new UserError(
        `${label}: ${name} must be a positive integer (got ${JSON.stringify(value)})`,
      );
    }
    return value;
  };
  const bool = (key: "qkv_bias" | "tie_word_embeddings"): boolean => {
    const value = hf[key] ?? true;
    if (typeof value !== "boolean") {
      throw new UserError(`${label}: ${key} must be true or false (got ${JSON.stringify(value)})`);
    }
    return value;
  };
  for (const key of ["resid_pdrop", "embd_pdrop", "attn_pdrop"] as const) {
    if (hf[key] !== undefined && hf[key] !== null && typeof hf[key] !== "number") {
      throw new UserError(`${label}: ${key} must be a number (got ${JSON.stringify(hf[key])})`);
    }
  }
  const drop = hf.resid_pdrop ?? hf.embd_pdrop ?? hf.attn_pdrop ?? 0.1;
  const config: GPTConfig = {
    vocabSize: int("vocab_size"),
    contextLength: int("n_positions", "n_ctx"),
    embDim: int("n_embd"),
    nHeads: int("n_head"),
    nLayers: int("n_layer"),
    dropRate: drop,
    // HF's GPT-2 always has the c_attn bias; our custom field records a model trained without.
    qkvBias: bool("qkv_bias"),
  };
  try {
    validateConfig(config);
  } catch (err) {
    throw new UserError(`${label}: ${(err as Error).message}`);
  }
  return { config, tied: bool("tie_word_embeddings") };
}

/** Reads `dir/config.json` as our GPTConfig. */
export async function readHfConfig(dir: string): Promise<GPTConfig> {
  return (await readHfConfigFull(dir)).config;
}

/** Reads `dir/config.json`: our GPTConfig and whether the head is tied to the token embedding. */
export async function readHfConfigFull(dir: string): Promise<{ config: GPTConfig; tied: boolean }> {
  const path = join(dir, CONFIG_FILE);
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) {
      throw new UserError(
        `${path} is missing (a checkpoint folder holds ${CONFIG_FILE} and ${WEIGHTS_FILE})`,
      );
    }
    throw err;
  }
  return gptConfigFromHf(parseJsonFile(text, path) as HfGpt2Config, path);
}

/** The HF config.json for a GPTConfig (what transformers' GPT2LMHeadModel expects). */
export function hfConfigFromGpt(
  config: GPTConfig,
  { tied = true }: { tied?: boolean } = {},
): HfGpt2Config {
  return {
    architectures: ["GPT2LMHeadModel"],
    model_type: "gpt2",
    vocab_size: config.vocabSize,
    n_positions: config.contextLength,
    n_ctx: config.contextLength,
    n_embd: config.embDim,
    n_layer: config.nLayers,
    n_head: config.nHeads,
    n_inner: null,
    activation_function: "gelu_new", // the tanh approximation the book's GELU uses
    resid_pdrop: config.dropRate,
    embd_pdrop: config.dropRate,
    attn_pdrop: config.dropRate,
    layer_norm_epsilon: 1e-5,
    initializer_range: 0.02,
    bos_token_id: 50256,
    eos_token_id: 50256,
    tie_word_embeddings: tied,
    torch_dtype: "float32",
    qkv_bias: config.qkvBias,
  };
}
