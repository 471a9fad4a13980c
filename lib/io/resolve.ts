/**
 * Weight resolution, what nanoGPT calls `from_pretrained`: `--weights NAME|DIR` is a checkpoint
 * folder, one of OpenAI's GPT-2 sizes (downloaded once into the cache) or a GPT-2 on the Hub
 * (`ORG/NAME`, `hf:NAME`, or last a bare `NAME` such as `distilgpt2`), and `loadBaseModel`
 * builds the GPTModel with those weights (chapter 7.5).
 *
 * @example
 * ```ts
 * import { loadBaseModel } from "./resolve.ts";
 * const { model } = await loadBaseModel("gpt2-medium"); // downloads once (1.4 GB)
 * ```
 * @module
 */
import { join } from "node:path";
import { type GPTConfig, PRESETS } from "../model/config.ts";
import { GPTModel } from "../model/gpt.ts";
import { UserError } from "../util/errors.ts";
import { bareRepoId, downloadRepo, parseRepoId } from "./hub.ts";
import { exists } from "../util/fs.ts";
import { defaultCacheDir, downloadPretrained, PRETRAINED } from "./download.ts";
import { checkSafetensorsFile } from "./safetensors_header.ts";
import { loadCheckpoint, loadWeightsInto } from "./weights.ts";
import { readHfConfig } from "./hf_config.ts";

/** Options of `loadBaseModel`. */
export interface BaseModelOptions {
  /** Dropout of the finetuned model (book: 0). */
  dropRate?: number;
  /** Download cache for pretrained names (default: env LLM_CACHE_DIR, else data/cache). */
  cacheDir?: string;
  /** Cancels a download (the partial file is kept and resumed next time). */
  signal?: AbortSignal;
}

/** A loaded base model and where its weights came from. */
export interface BaseModel {
  model: GPTModel;
  /** The checkpoint folder read. */
  dir: string;
}

function unknownWeights(weights: string): UserError {
  return new UserError(
    `--weights "${weights}" is neither a folder nor a pretrained name nor a Hugging Face repo ` +
      `id (ORG/NAME, NAME or hf:NAME); valid names: ${Object.keys(PRETRAINED).join(", ")}`,
  );
}

/** The Hub repo `weights` names (`ORG/NAME`, `hf:ID`, else a bare NAME that is no known name). */
function hubId(weights: string): { repo: string; guessed: boolean } | null {
  const repo = parseRepoId(weights);
  if (repo) return { repo, guessed: false };
  const known = weights in PRETRAINED || weights in PRESETS;
  const bare = known ? null : bareRepoId(weights);
  return bare ? { repo: bare, guessed: true } : null;
}

/**
 * The config of `weights` without loading the tensors: a pretrained name's preset (with the
 * book's qkvBias true for OpenAI's weights), or a checkpoint folder's config.json.
 */
export async function baseModelConfig(weights: string): Promise<GPTConfig> {
  if (await exists(weights)) return await readHfConfig(weights);
  if (weights in PRETRAINED) return { ...PRESETS[weights], qkvBias: true };
  const hub = hubId(weights);
  if (!hub) throw unknownWeights(weights);
  const { repo, guessed } = hub;
  return await readHfConfig(await downloadRepo(repo, { configOnly: true, guessed }));
}

/**
 * The cache folder of a pretrained name when its files are there and complete (config.json and
 * a whole model.safetensors), else null. Never downloads: notebooks use it to decide offline.
 */
export async function cachedPretrained(
  name: string,
  { cacheDir = defaultCacheDir() }: { cacheDir?: string } = {},
): Promise<string | null> {
  if (!(name in PRETRAINED)) throw unknownWeights(name);
  const dir = join(cacheDir, name);
  if (!(await exists(join(dir, "config.json")))) return null;
  return (await checkSafetensorsFile(join(dir, "model.safetensors"))).status === "ok" ? dir : null;
}

/**
 * The checkpoint folder of `weights`: the folder itself, for a pretrained name or a Hub repo id
 * (`ORG/NAME`, `hf:NAME`, a bare `NAME`; a GPT-2) the Python Hugging Face cache's snapshot or our cache
 * folder, downloading the files the first time (a truncated cached file is resumed).
 */
export async function resolveWeights(
  weights: string,
  { cacheDir, signal }: { cacheDir?: string; signal?: AbortSignal } = {},
): Promise<string> {
  if (await exists(weights)) return weights;
  const hub = weights in PRETRAINED ? null : hubId(weights);
  if (hub) return await downloadRepo(hub.repo, { cacheDir, signal, guessed: hub.guessed });
  if (!(weights in PRETRAINED)) throw unknownWeights(weights);
  return await downloadPretrained(weights, { cacheDir, signal });
}

/**
 * Chapter 7.5: a GPTModel with pretrained weights. `weights` is one of gpt2-small, gpt2-medium
 * (the book's choice), gpt2-large, gpt2-xl (downloaded once into the cache, then read from it),
 * or a checkpoint folder (config.json + model.safetensors). OpenAI's weights carry the Q/K/V
 * biases (qkvBias true, as the book sets for them); dropout is 0 for finetuning, as in the book.
 */
export async function loadBaseModel(
  weights: string,
  { dropRate = 0, cacheDir, signal }: BaseModelOptions = {},
): Promise<BaseModel> {
  const dir = await resolveWeights(weights, { cacheDir, signal });
  const { config, tensors } = await loadCheckpoint(dir);
  const model = new GPTModel({ ...config, dropRate });
  loadWeightsInto(model, tensors);
  return { model, dir };
}
