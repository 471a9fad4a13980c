/**
 * Hugging Face GPT-2 checkpoints <-> the book's parameter names (chapter 5.5, appendix D/E,
 * chapter 7). A checkpoint is a folder with `config.json` and `model.safetensors`, exactly what
 * `openai-community/gpt2` publishes, so other tools (transformers, safetensors) read ours too.
 *
 * HF GPT-2's Conv1D weights are stored [in, out], which is our layout: only the fused QKV
 * projection (`c_attn`) is split/fused and the untied `lm_head.weight` [V,E] is transposed.
 *
 * @example
 * ```ts
 * import { loadCheckpoint, loadWeightsInto } from "./weights.ts";
 * import { downloadPretrained } from "./download.ts";
 * import { GPTModel } from "../model/gpt.ts";
 * const { config, tensors } = await loadCheckpoint(await downloadPretrained("gpt2-small"));
 * const model = new GPTModel({ ...config, dropRate: 0 });
 * loadWeightsInto(model, tensors);
 * ```
 * @module
 */
import { join } from "node:path";
import * as tf from "@tensorflow/tfjs";
import { type GPTConfig, validateConfig } from "../model/config.ts";
import { UserError } from "../util/errors.ts";
import { exists, writeTextAtomic } from "../util/fs.ts";
import {
  readSafetensors,
  type TensorData,
  type TensorMap,
  writeSafetensors,
} from "./safetensors.ts";
import type { FloatType } from "./half.ts";
import { GPT2_VOCAB_SIZE, writeTokenizerFiles } from "./tokenizer_files.ts";

export type { TensorData, TensorMap } from "./safetensors.ts";

/** The file names of a checkpoint folder. */
export const CONFIG_FILE = "config.json";
export const WEIGHTS_FILE = "model.safetensors";

/** Buffers that transformers' GPT-2 stores next to the weights (causal masks): not parameters. */
const IGNORED_KEY = /^h\.\d+\.attn\.(bias|masked_bias)$/;

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

// ---------------------------------------------------------------------------------------------
// config.json

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

async function readHfConfigFull(dir: string): Promise<{ config: GPTConfig; tied: boolean }> {
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
  let json: HfGpt2Config;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new UserError(`${path}: not valid JSON (${(err as Error).message})`);
  }
  return gptConfigFromHf(json, path);
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

// ---------------------------------------------------------------------------------------------
// Tensor layout helpers

function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

const fmt = (shape: readonly number[]) => `[${shape.join(",")}]`;

/** Transposes a row-major [rows, cols] matrix (blocked, so 50,257 x 1,600 stays cache friendly). */
export function transpose2d(data: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(rows * cols);
  const B = 64;
  for (let r0 = 0; r0 < rows; r0 += B) {
    const r1 = Math.min(r0 + B, rows);
    for (let c0 = 0; c0 < cols; c0 += B) {
      const c1 = Math.min(c0 + B, cols);
      for (let r = r0; r < r1; r++) {
        const row = r * cols;
        for (let c = c0; c < c1; c++) out[c * rows + r] = data[row + c];
      }
    }
  }
  return out;
}

/** Splits the columns of [rows, parts*width] into `parts` matrices [rows, width]. */
function splitColumns(
  data: Float32Array,
  rows: number,
  width: number,
  parts: number,
): Float32Array[] {
  const out = Array.from({ length: parts }, () => new Float32Array(rows * width));
  for (let r = 0; r < rows; r++) {
    for (let p = 0; p < parts; p++) {
      const from = r * width * parts + p * width;
      out[p].set(data.subarray(from, from + width), r * width);
    }
  }
  return out;
}

/** Concatenates matrices [rows, width] side by side into [rows, parts*width]. */
function fuseColumns(mats: Float32Array[], rows: number, width: number): Float32Array {
  const parts = mats.length;
  const out = new Float32Array(rows * width * parts);
  for (let r = 0; r < rows; r++) {
    for (let p = 0; p < parts; p++) {
      out.set(mats[p].subarray(r * width, (r + 1) * width), r * width * parts + p * width);
    }
  }
  return out;
}

/** True when `head` [E,V] is exactly the transpose of `emb` [V,E]. */
function isTransposeOf(head: Float32Array, emb: Float32Array, v: number, e: number): boolean {
  for (let i = 0; i < e; i++) {
    const row = i * v;
    for (let j = 0; j < v; j++) if (head[row + j] !== emb[j * e + i]) return false;
  }
  return true;
}

// Our name <- HF name for the tensors that map one to one (per block; `{i}` is the block index).
const BLOCK_RENAMES: [string, string][] = [
  ["norm1.scale", "ln_1.weight"],
  ["norm1.shift", "ln_1.bias"],
  ["att.out_proj.weight", "attn.c_proj.weight"],
  ["att.out_proj.bias", "attn.c_proj.bias"],
  ["norm2.scale", "ln_2.weight"],
  ["norm2.shift", "ln_2.bias"],
  ["ff.layers.0.weight", "mlp.c_fc.weight"],
  ["ff.layers.0.bias", "mlp.c_fc.bias"],
  ["ff.layers.2.weight", "mlp.c_proj.weight"],
  ["ff.layers.2.bias", "mlp.c_proj.bias"],
];

function blockShapes(e: number): Record<string, number[]> {
  return {
    "ln_1.weight": [e],
    "ln_1.bias": [e],
    "attn.c_attn.weight": [e, 3 * e],
    "attn.c_attn.bias": [3 * e],
    "attn.c_proj.weight": [e, e],
    "attn.c_proj.bias": [e],
    "ln_2.weight": [e],
    "ln_2.bias": [e],
    "mlp.c_fc.weight": [e, 4 * e],
    "mlp.c_fc.bias": [4 * e],
    "mlp.c_proj.weight": [4 * e, e],
    "mlp.c_proj.bias": [e],
  };
}

// ---------------------------------------------------------------------------------------------
// HF -> book

/**
 * Maps HF GPT-2 tensors to the book's names. Accepts the plain layout (`wte.weight`, `h.0.*`, as in
 * openai-community/gpt2) and transformers' (`transformer.` prefix, optional `lm_head.weight`).
 * Without `lm_head.weight` the head is tied: out_head = wte^T. Throws a UserError for a missing,
 * misshapen or unknown tensor. F32 tensors are passed through without copying.
 */
export function hfToBook(tensors: TensorMap, config: GPTConfig, label = WEIGHTS_FILE): TensorMap {
  const { vocabSize: v, contextLength: c, embDim: e, nLayers } = config;
  // Normalise the two layouts to the plain names.
  const hf = new Map<string, TensorData>();
  for (const [key, t] of tensors) {
    const name = key.startsWith("transformer.") ? key.slice("transformer.".length) : key;
    if (hf.has(name)) {
      throw new UserError(
        `${label}: tensor "${name}" appears twice (with and without "transformer.")`,
      );
    }
    if (!IGNORED_KEY.test(name)) hf.set(name, t);
  }
  const used = new Set<string>();
  const take = (name: string, shape: number[], optional = false): TensorData | undefined => {
    const t = hf.get(name);
    if (!t) {
      if (optional) return undefined;
      throw new UserError(
        `${label}: tensor "${name}" ${fmt(shape)} is missing (does config.json match the weights?)`,
      );
    }
    if (!sameShape(t.shape, shape)) {
      throw new UserError(
        `${label}: tensor "${name}" has shape ${fmt(t.shape)}, expected ${
          fmt(shape)
        } from config.json`,
      );
    }
    used.add(name);
    return t;
  };

  const out: TensorMap = new Map();
  const wte = take("wte.weight", [v, e])!;
  out.set("tok_emb.weight", wte);
  out.set("pos_emb.weight", take("wpe.weight", [c, e])!);
  const shapes = blockShapes(e);
  for (let i = 0; i < nLayers; i++) {
    const h = `h.${i}.`, ours = `trf_blocks.${i}.`;
    const qkvW = take(`${h}attn.c_attn.weight`, shapes["attn.c_attn.weight"])!;
    const [wq, wk, wv] = splitColumns(qkvW.data, e, e, 3);
    out.set(`${ours}att.W_query.weight`, { shape: [e, e], data: wq });
    out.set(`${ours}att.W_key.weight`, { shape: [e, e], data: wk });
    out.set(`${ours}att.W_value.weight`, { shape: [e, e], data: wv });
    const qkvB = take(`${h}attn.c_attn.bias`, shapes["attn.c_attn.bias"], !config.qkvBias);
    if (config.qkvBias) {
      const b = qkvB!.data;
      out.set(`${ours}att.W_query.bias`, { shape: [e], data: b.slice(0, e) });
      out.set(`${ours}att.W_key.bias`, { shape: [e], data: b.slice(e, 2 * e) });
      out.set(`${ours}att.W_value.bias`, { shape: [e], data: b.slice(2 * e) });
    } else if (qkvB && qkvB.data.some((x) => x !== 0)) {
      throw new UserError(
        `${label}: config.json says qkv_bias false but "${h}attn.c_attn.bias" is not all zeros`,
      );
    }
    for (const [book, hfName] of BLOCK_RENAMES) {
      out.set(ours + book, take(h + hfName, shapes[hfName])!);
    }
  }
  out.set("final_norm.scale", take("ln_f.weight", [e])!);
  out.set("final_norm.shift", take("ln_f.bias", [e])!);
  const head = take("lm_head.weight", [v, e], true);
  out.set("out_head.weight", { shape: [e, v], data: transpose2d((head ?? wte).data, v, e) });

  const unknown = [...hf.keys()].filter((k) => !used.has(k));
  if (unknown.length > 0) {
    const layers = unknown.map((k) => /^h\.(\d+)\./.exec(k)?.[1]).filter((x) => x !== undefined)
      .map(Number);
    const hint = layers.length > 0
      ? ` (weights for layer ${Math.max(...layers)} but config.json n_layer is ${nLayers})`
      : "";
    const list = unknown.slice(0, 3).map((k) => `"${k}"`).join(", ") +
      (unknown.length > 3 ? ", ..." : "");
    throw new UserError(`${label}: ${unknown.length} unexpected tensor(s) ${list}${hint}`);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// book -> HF

/** What {@link bookToHf} returns: tensors to write and the matching config.json. */
export interface HfCheckpoint {
  tensors: TensorMap;
  hfConfig: HfGpt2Config;
  /** True when out_head is exactly wte^T (then no lm_head.weight is written). */
  tied: boolean;
}

/**
 * Maps the book's parameters to HF GPT-2 tensors (the inverse of {@link hfToBook}): fuses Q/K/V
 * into c_attn (a zero bias when the model has none, so every GPT-2 loader accepts it). A tied head
 * gives the plain layout of openai-community/gpt2; an untied head is written as transformers'
 * `save_pretrained` does, with the `transformer.` prefix and `lm_head.weight` [V,E].
 */
export function bookToHf(params: TensorMap, config: GPTConfig): HfCheckpoint {
  const { vocabSize: v, contextLength: c, embDim: e, nLayers } = config;
  const used = new Set<string>();
  const get = (name: string, shape: number[]): Float32Array => {
    const t = params.get(name);
    if (!t) throw new UserError(`parameter "${name}" ${fmt(shape)} is missing`);
    if (!sameShape(t.shape, shape)) {
      throw new UserError(`parameter "${name}" has shape ${fmt(t.shape)}, expected ${fmt(shape)}`);
    }
    used.add(name);
    return t.data;
  };
  const wte = get("tok_emb.weight", [v, e]);
  const outHead = get("out_head.weight", [e, v]);
  const tied = isTransposeOf(outHead, wte, v, e);
  const prefix = tied ? "" : "transformer.";
  const out: TensorMap = new Map();
  const put = (name: string, shape: number[], data: Float32Array) =>
    out.set(prefix + name, { shape, data });

  put("wte.weight", [v, e], wte);
  put("wpe.weight", [c, e], get("pos_emb.weight", [c, e]));
  const shapes = blockShapes(e);
  for (let i = 0; i < nLayers; i++) {
    const h = `h.${i}.`, ours = `trf_blocks.${i}.att.`;
    const w = ["W_query", "W_key", "W_value"].map((n) => get(`${ours}${n}.weight`, [e, e]));
    put(`${h}attn.c_attn.weight`, [e, 3 * e], fuseColumns(w, e, e));
    const bias = new Float32Array(3 * e);
    if (config.qkvBias) {
      ["W_query", "W_key", "W_value"].forEach((n, k) =>
        bias.set(get(`${ours}${n}.bias`, [e]), k * e)
      );
    }
    put(`${h}attn.c_attn.bias`, [3 * e], bias);
    for (const [book, hfName] of BLOCK_RENAMES) {
      put(h + hfName, shapes[hfName], get(`trf_blocks.${i}.${book}`, shapes[hfName]));
    }
  }
  put("ln_f.weight", [e], get("final_norm.scale", [e]));
  put("ln_f.bias", [e], get("final_norm.shift", [e]));
  if (!tied) out.set("lm_head.weight", { shape: [v, e], data: transpose2d(outHead, e, v) });

  const unknown = [...params.keys()].filter((k) => !used.has(k));
  if (unknown.length > 0) {
    throw new UserError(
      `parameter(s) not in a GPT-2 checkpoint for this config: ${unknown.slice(0, 3).join(", ")}` +
        (unknown.length > 3 ? ", ..." : ""),
    );
  }
  return { tensors: out, hfConfig: hfConfigFromGpt(config, { tied }), tied };
}

// ---------------------------------------------------------------------------------------------
// Checkpoint folders

/** A checkpoint loaded with the book's names. */
export interface LoadedCheckpoint {
  config: GPTConfig;
  tensors: TensorMap;
  /** True when the file had no separate lm_head.weight (out_head = wte^T). */
  tied: boolean;
}

/** Loads `dir/config.json` + `dir/model.safetensors` (HF GPT-2 layout) with the book's names. */
export async function loadCheckpoint(dir: string): Promise<LoadedCheckpoint> {
  const where = `a checkpoint folder holds ${CONFIG_FILE} and ${WEIGHTS_FILE}`;
  let info: Deno.FileInfo;
  try {
    info = await Deno.stat(dir);
  } catch {
    throw new UserError(`checkpoint folder ${dir} does not exist (${where})`);
  }
  if (!info.isDirectory) throw new UserError(`${dir} is not a folder (${where})`);
  const missing = [];
  for (const f of [CONFIG_FILE, WEIGHTS_FILE]) if (!await exists(join(dir, f))) missing.push(f);
  if (missing.length > 0) {
    throw new UserError(`${dir}: missing ${missing.join(" and ")} (${where})`);
  }

  const { config, tied } = await readHfConfigFull(dir);
  const path = join(dir, WEIGHTS_FILE);
  const file = await readSafetensors(path, {
    label: path,
    include: (name) => !IGNORED_KEY.test(name.replace(/^transformer\./, "")),
  });
  const hasHead = file.tensors.has("lm_head.weight");
  if (!tied && !hasHead) {
    throw new UserError(
      `${path}: config.json says tie_word_embeddings false but there is no lm_head.weight`,
    );
  }
  return { config, tensors: hfToBook(file.tensors, config, path), tied: !hasHead };
}

/** Options of {@link saveCheckpoint}. */
export interface SaveCheckpointOptions {
  /** Storage type of the weights (default "f32"; "f16"/"bf16" halve the file). */
  type?: FloatType;
  /** Jinja chat template for tokenizer_config.json (a finetuned model's prompt format). */
  chatTemplate?: string;
}

/**
 * Writes a checkpoint folder: `model.safetensors` (HF GPT-2 layout), `config.json`, and for a
 * model with GPT-2's vocabulary the tokenizer and generation files (tokenizer_files.ts), each
 * atomically. Returns the folder.
 */
export async function saveCheckpoint(
  dir: string,
  config: GPTConfig,
  params: TensorMap,
  { type = "f32", chatTemplate }: SaveCheckpointOptions = {},
): Promise<string> {
  const { tensors, hfConfig } = bookToHf(params, config);
  hfConfig.torch_dtype = { f32: "float32", f16: "float16", bf16: "bfloat16" }[type];
  await Deno.mkdir(dir, { recursive: true });
  // transformers refuses safetensors files without format "pt".
  await writeSafetensors(join(dir, WEIGHTS_FILE), tensors, { format: "pt" }, { type });
  // GPT-2's tokenizer files only fit a model with GPT-2's vocabulary (not small test models).
  if (config.vocabSize === GPT2_VOCAB_SIZE) {
    await writeTokenizerFiles(dir, { contextLength: config.contextLength, chatTemplate });
  }
  await writeTextAtomic(join(dir, CONFIG_FILE), JSON.stringify(hfConfig, null, 2) + "\n");
  return dir;
}

/** True when `dir` holds both checkpoint files. */
export async function isCheckpointDir(dir: string): Promise<boolean> {
  return await exists(join(dir, CONFIG_FILE)) && await exists(join(dir, WEIGHTS_FILE));
}

// ---------------------------------------------------------------------------------------------
// Model <-> tensors (only through namedParameters(), so any module with that method works)

/** Anything with the book-named parameters, such as GPTModel. */
export interface HasNamedParameters {
  namedParameters(): Map<string, tf.Variable>;
}

/**
 * Copies tensors into the model's variables. Every parameter must be present with its shape, and
 * every tensor must belong to a parameter.
 */
export function loadWeightsInto(model: HasNamedParameters, tensors: TensorMap): void {
  const params = model.namedParameters();
  for (const [name, variable] of params) {
    const t = tensors.get(name);
    if (!t) {
      throw new UserError(`weights have no tensor for parameter "${name}" ${fmt(variable.shape)}`);
    }
    if (!sameShape(t.shape, variable.shape)) {
      throw new UserError(
        `tensor "${name}" has shape ${fmt(t.shape)}, the model expects ${fmt(variable.shape)}`,
      );
    }
  }
  const extra = [...tensors.keys()].filter((k) => !params.has(k));
  if (extra.length > 0) {
    throw new UserError(
      `weights have tensor(s) the model lacks: ${extra.slice(0, 3).join(", ")}${
        extra.length > 3 ? ", ..." : ""
      }`,
    );
  }
  for (const [name, variable] of params) {
    const t = tensors.get(name)!;
    const value = tf.tensor(t.data, t.shape, "float32");
    variable.assign(value);
    value.dispose();
  }
}

/**
 * Reads the model's variables into tensors with the book's names (ready for {@link saveCheckpoint}).
 * Uses `await data()` so GPU backends download asynchronously.
 */
export async function paramsToTensors(model: HasNamedParameters): Promise<TensorMap> {
  const out: TensorMap = new Map();
  for (const [name, variable] of model.namedParameters()) {
    out.set(name, { shape: [...variable.shape], data: (await variable.data()) as Float32Array });
  }
  return out;
}
