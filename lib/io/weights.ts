/**
 * Hugging Face GPT-2 checkpoints <-> the book's parameter names (chapter 5.5, appendix D/E,
 * chapter 7). A checkpoint is a folder with `config.json` and `model.safetensors`, exactly what
 * `openai-community/gpt2` publishes, so other tools (transformers, safetensors) read ours too.
 *
 * The name mapping is in ./gpt2_layout.ts, config.json in ./hf_config.ts, and the step from
 * `--weights NAME|DIR` to a model in ./resolve.ts.
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
import type { GPTConfig } from "../model/config.ts";
import { UserError } from "../util/errors.ts";
import { exists, writeTextAtomic } from "../util/fs.ts";
import { bookToHf, hfToBook, IGNORED_KEY, sameShape } from "./gpt2_layout.ts";
import { CONFIG_FILE, readHfConfigFull, WEIGHTS_FILE } from "./hf_config.ts";
import { readSafetensors, type TensorMap, writeSafetensors } from "./safetensors.ts";
import { formatShape } from "./safetensors_header.ts";
import type { FloatType } from "./dtypes.ts";
import { GPT2_VOCAB_SIZE, writeTokenizerFiles } from "./tokenizer_files.ts";

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
      throw new UserError(
        `weights have no tensor for parameter "${name}" ${formatShape(variable.shape)}`,
      );
    }
    if (!sameShape(t.shape, variable.shape)) {
      throw new UserError(
        `tensor "${name}" has shape ${formatShape(t.shape)}, the model expects ${
          formatShape(variable.shape)
        }`,
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
