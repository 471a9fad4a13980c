/**
 * LoRA adapter folders: only the A/B matrices, in PEFT's file names (`adapter_config.json` +
 * `adapter_model.safetensors`), with the base model's architecture and a fingerprint of its
 * weights, checked on load.
 * @module
 */
import { join } from "node:path";
import * as tf from "@tensorflow/tfjs";
import type { GPTConfig } from "../model/config.ts";
import { UserError } from "../util/errors.ts";
import { exists, writeTextAtomic } from "../util/fs.ts";
import type { GPTModel } from "../model/gpt.ts";
import type { Module } from "../model/nn.ts";
import {
  baseParamName,
  isLoraParam,
  linearLayers,
  LinearWithLoRA,
  LORA_SCALINGS,
  loraLayers,
  loraScale,
  type LoraScaling,
  matchesTarget,
  replaceLinearWithLora,
  shortName,
} from "../model/lora.ts";
import { readSafetensors, type TensorMap, writeSafetensors } from "./safetensors.ts";
import { parseJsonFile } from "./json.ts";

/** File names of an adapter folder (PEFT's, for ours and for PEFT's own format). */
export const ADAPTER_CONFIG_FILE = "adapter_config.json";
export const ADAPTER_WEIGHTS_FILE = "adapter_model.safetensors";
const FORMAT = "llm-from-scratch-lora";

/** The contents of `adapter_config.json`: PEFT's fields first, then ours. */
export interface AdapterConfig {
  peft_type: "LORA";
  task_type: string;
  base_model_name_or_path: string;
  r: number;
  lora_alpha: number;
  lora_dropout: number;
  /** PEFT-style suffixes (`att.W_query`, `ff.layers.0`, `out_head`), or full names. */
  target_modules: string[];
  bias: "none";
  /** Our weights are [in, out] like GPT-2's Conv1D (PEFT sets this for GPT-2). */
  fan_in_fan_out: true;
  /** True for rsLoRA's alpha / sqrt(r) (`scaling_rule` "alpha/sqrt(rank)"). */
  use_rslora: boolean;
  /** Ours: "alpha/rank" (PEFT's rule), "alpha" (the printed book's erratum) or "alpha/sqrt(rank)" (rsLoRA). */
  scaling_rule: LoraScaling;
  /** Ours: the factor itself. */
  scaling: number;
  /** Ours: every wrapped layer with its shape; the tensors are `<name>.lora.A` [in, r], `.lora.B` [r, out]. */
  layers: { name: string; in_features: number; out_features: number }[];
  /** Ours: the base model's architecture (checked on load). */
  base_model_config: Pick<GPTConfig, "vocabSize" | "embDim" | "nHeads" | "nLayers" | "qkvBias">;
  /** Ours: a hash of a sample of the frozen base weights (checked on load). */
  base_model_fingerprint: string;
  format: typeof FORMAT;
  format_version: 1;
}

/** Options of `saveAdapter`. */
export interface SaveAdapterOptions {
  /** Name or path of the base model (PEFT's `base_model_name_or_path`), e.g. "gpt2-medium". */
  baseModel: string;
}

/** One shared LoRA setting of all layers (saveAdapter needs a single rank/alpha/rule). */
function uniformSetting(layers: Map<string, LinearWithLoRA>) {
  const [first] = layers.values();
  const f = first.lora;
  for (const [name, l] of layers) {
    const o = l.lora;
    if (
      o.rank !== f.rank || o.alpha !== f.alpha || o.scaling !== f.scaling || o.dropout !== f.dropout
    ) {
      throw new UserError(
        `LoRA layers differ (${name}: rank ${o.rank}, alpha ${o.alpha}; others rank ${f.rank}, alpha ${f.alpha}); an adapter holds one setting`,
      );
    }
  }
  return { rank: f.rank, alpha: f.alpha, scaling: f.scaling, dropout: f.dropout };
}

/** Base-model parameter names: the LoRA wrapper's `.linear` dropped, LoRA's own left out. */
function baseParameters(model: Module): Map<string, tf.Variable> {
  const out = new Map<string, tf.Variable>();
  for (const [name, v] of model.namedParameters()) {
    if (!isLoraParam(name)) out.set(baseParamName(name), v);
  }
  return out;
}

/**
 * A short hash of the base weights (FNV-1a over every parameter's name, shape and first and last
 * 16 values), the same for a plain model and for it with LoRA layers. Only small slices are read,
 * so GPU backends download little.
 */
export async function baseFingerprint(model: Module): Promise<string> {
  let h = 0x811c9dc5;
  const mix = (bytes: Uint8Array) => {
    for (const b of bytes) h = Math.imul(h ^ b, 0x01000193);
  };
  const enc = new TextEncoder();
  const params = [...baseParameters(model)].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  for (const [name, v] of params) {
    mix(enc.encode(`${name}[${v.shape}]`));
    const n = v.size, k = Math.min(16, n);
    const sample = tf.tidy(() => {
      const flat = v.reshape([-1]);
      return tf.concat([flat.slice(0, k), flat.slice(n - k, k)]);
    });
    const data = await sample.data() as Float32Array;
    sample.dispose();
    mix(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
  }
  return (h >>> 0).toString(16).padStart(8, "0");
}

/** `target_modules`: block-relative suffixes when they select exactly these layers, else full names. */
function targetModules(all: string[], picked: string[]): string[] {
  const short = [...new Set(picked.map(shortName))];
  const bySuffix = all.filter((n) => short.some((t) => matchesTarget(n, t)));
  const same = bySuffix.length === picked.length && bySuffix.every((n) => picked.includes(n));
  return same ? short : picked;
}

/**
 * Writes an adapter folder: `adapter_model.safetensors` (the A/B tensors under our names,
 * `<layer>.lora.A` [in, r] / `.lora.B` [r, out]) and then `adapter_config.json`, each atomically,
 * so a folder with a config always has its weights. Returns the folder.
 */
export async function saveAdapter(
  dir: string,
  model: GPTModel,
  { baseModel }: SaveAdapterOptions,
): Promise<string> {
  const layers = loraLayers(model);
  if (layers.size === 0) {
    throw new UserError("the model has no LoRA layers to save (call replaceLinearWithLora first)");
  }
  const s = uniformSetting(layers);
  const tensors: TensorMap = new Map();
  for (const [name, l] of layers) {
    for (const which of ["A", "B"] as const) {
      const v = l.lora[which];
      tensors.set(`${name}.lora.${which}`, {
        shape: [...v.shape],
        data: Float32Array.from(await v.data() as Float32Array),
      });
    }
  }
  const allLinear = [...linearLayers(model).keys(), ...layers.keys()];
  const names = [...layers.keys()];
  const head = model.out_head;
  const { vocabSize, embDim, nHeads, nLayers, qkvBias } = model.config;
  const config: AdapterConfig = {
    peft_type: "LORA",
    task_type: head.outDim === vocabSize ? "CAUSAL_LM" : "SEQ_CLS",
    base_model_name_or_path: baseModel,
    r: s.rank,
    lora_alpha: s.alpha,
    lora_dropout: s.dropout,
    target_modules: targetModules(allLinear, names),
    bias: "none",
    fan_in_fan_out: true,
    use_rslora: s.scaling === "alpha/sqrt(rank)",
    scaling_rule: s.scaling,
    scaling: loraScale(s.rank, s.alpha, s.scaling),
    layers: names.map((name) => ({
      name,
      in_features: layers.get(name)!.inDim,
      out_features: layers.get(name)!.outDim,
    })),
    base_model_config: { vocabSize, embDim, nHeads, nLayers, qkvBias },
    base_model_fingerprint: await baseFingerprint(model),
    format: FORMAT,
    format_version: 1,
  };
  return await writeAdapterFiles(dir, tensors, config);
}

/**
 * Writes an adapter folder in PEFT's file names (ours and PEFT's own format alike): the weights
 * first, then the config, so that a folder with a config is complete.
 */
export async function writeAdapterFiles(
  dir: string,
  tensors: TensorMap,
  config: object,
): Promise<string> {
  await Deno.mkdir(dir, { recursive: true });
  await writeSafetensors(join(dir, ADAPTER_WEIGHTS_FILE), tensors, { format: "pt" });
  await writeTextAtomic(join(dir, ADAPTER_CONFIG_FILE), JSON.stringify(config, null, 2) + "\n");
  return dir;
}

/** Options of `loadAdapter`. */
export interface LoadAdapterOptions {
  /** Refuse a base whose weights differ from the one the adapter was trained on (default true). */
  checkBaseWeights?: boolean;
  /** Freeze every non-LoRA parameter, ready to train the adapter further (default true). */
  freezeBase?: boolean;
}

/** Reads and checks `adapter_config.json`. */
export async function readAdapterConfig(dir: string): Promise<AdapterConfig> {
  const path = join(dir, ADAPTER_CONFIG_FILE);
  const missing = [];
  for (const f of [ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE]) {
    if (!await exists(join(dir, f))) missing.push(f);
  }
  if (missing.length > 0) {
    throw new UserError(
      `${dir}: missing ${
        missing.join(" and ")
      } (an adapter folder holds ${ADAPTER_CONFIG_FILE} and ${ADAPTER_WEIGHTS_FILE})`,
    );
  }
  const c = parseJsonFile(await Deno.readTextFile(path), path) as AdapterConfig;
  const bad = (what: string) => {
    throw new UserError(`${path}: ${what}`);
  };
  if (c === null || typeof c !== "object") bad("expected a JSON object");
  if (c.peft_type !== "LORA") bad(`peft_type is ${JSON.stringify(c.peft_type)}, expected "LORA"`);
  if (!Number.isInteger(c.r) || c.r <= 0) bad(`r must be a positive integer (got ${c.r})`);
  if (!(typeof c.lora_alpha === "number" && c.lora_alpha > 0)) {
    bad(`lora_alpha must be a positive number (got ${c.lora_alpha})`);
  }
  // PEFT's rule when the field is absent: alpha / r, or alpha / sqrt(r) with use_rslora.
  c.scaling_rule ??= c.use_rslora ? "alpha/sqrt(rank)" : "alpha/rank";
  if (!LORA_SCALINGS.includes(c.scaling_rule)) bad(`unknown scaling_rule "${c.scaling_rule}"`);
  c.lora_dropout ??= 0;
  if (!Array.isArray(c.layers) || c.layers.length === 0) {
    bad(`"layers" must list the wrapped layers (is this an adapter saved by saveAdapter?)`);
  }
  return c;
}

/**
 * Applies a saved adapter to a base model: wraps the adapter's layers in LoRA (with its rank,
 * alpha and scaling rule) and loads A/B. Throws a UserError naming the mismatch when the base does
 * not fit: another architecture (layers, widths), a missing layer, tensor shapes or rank that
 * disagree with the config, LoRA of another rank already present, or (with `checkBaseWeights`)
 * different base weights. Returns the adapter's config.
 */
export async function loadAdapter(
  dir: string,
  model: GPTModel,
  { checkBaseWeights = true, freezeBase = true }: LoadAdapterOptions = {},
): Promise<AdapterConfig> {
  const c = await readAdapterConfig(dir);
  const path = join(dir, ADAPTER_WEIGHTS_FILE);
  const { tensors } = await readSafetensors(path, { label: path });

  // The architecture first: the clearest message when the base is another model size.
  const want = c.base_model_config;
  if (want) {
    const diffs = (Object.keys(want) as (keyof typeof want)[])
      .filter((k) => want[k] !== model.config[k])
      .map((k) => `${k} ${want[k]} (this model: ${model.config[k]})`);
    if (diffs.length > 0) {
      throw new UserError(
        `adapter ${dir} was made for base "${c.base_model_name_or_path}" with ${diffs.join(", ")}`,
      );
    }
  }
  const plain = linearLayers(model), wrapped = loraLayers(model);
  for (const l of c.layers) {
    const layer = plain.get(l.name) ?? wrapped.get(l.name);
    if (!layer) {
      throw new UserError(
        `adapter ${dir} has LoRA weights for layer "${l.name}", which the base model lacks`,
      );
    }
    if (layer.inDim !== l.in_features || layer.outDim !== l.out_features) {
      throw new UserError(
        `adapter ${dir}: layer "${l.name}" is [${l.in_features}, ${l.out_features}] in the adapter but [${layer.inDim}, ${layer.outDim}] in the base model`,
      );
    }
    if (layer instanceof LinearWithLoRA) {
      const o = layer.lora;
      if (o.rank !== c.r || o.alpha !== c.lora_alpha || o.scaling !== c.scaling_rule) {
        throw new UserError(
          `adapter ${dir} has rank ${c.r}, alpha ${c.lora_alpha} (${c.scaling_rule}), but layer "${l.name}" already has LoRA of rank ${o.rank}, alpha ${o.alpha} (${o.scaling})`,
        );
      }
    }
    const expect: Record<string, number[]> = {
      A: [l.in_features, c.r],
      B: [c.r, l.out_features],
    };
    for (const which of ["A", "B"]) {
      const key = `${l.name}.lora.${which}`, t = tensors.get(key);
      if (!t) throw new UserError(`${path}: tensor "${key}" is missing`);
      const shape = expect[which];
      if (t.shape.length !== 2 || t.shape[0] !== shape[0] || t.shape[1] !== shape[1]) {
        throw new UserError(
          `${path}: tensor "${key}" has shape [${t.shape}], expected [${shape}] (rank r=${c.r})`,
        );
      }
    }
  }
  const expected = new Set(c.layers.flatMap((l) => [`${l.name}.lora.A`, `${l.name}.lora.B`]));
  const extra = [...tensors.keys()].filter((k) => !expected.has(k));
  if (extra.length > 0) {
    throw new UserError(
      `${path}: tensor(s) not listed in ${ADAPTER_CONFIG_FILE}: ${extra.slice(0, 3).join(", ")}`,
    );
  }
  if (checkBaseWeights && c.base_model_fingerprint) {
    const got = await baseFingerprint(model);
    if (got !== c.base_model_fingerprint) {
      throw new UserError(
        `adapter ${dir} was trained on other base weights than this model's ("${c.base_model_name_or_path}", fingerprint ${c.base_model_fingerprint}, this model ${got}); pass checkBaseWeights: false to apply it anyway`,
      );
    }
  }

  const toWrap = new Set(c.layers.map((l) => l.name).filter((n) => plain.has(n)));
  if (toWrap.size > 0) {
    if (wrapped.size > 0) {
      throw new UserError(
        `the model already has LoRA layers that do not match adapter ${dir} (e.g. ${
          [...toWrap][0]
        } has none)`,
      );
    }
    replaceLinearWithLora(model, {
      rank: c.r,
      alpha: c.lora_alpha,
      scaling: c.scaling_rule,
      dropout: c.lora_dropout,
      targets: (name) => toWrap.has(name),
    });
  }
  const now = loraLayers(model);
  for (const l of c.layers) {
    const lora = now.get(l.name)!.lora;
    for (const which of ["A", "B"] as const) {
      const t = tensors.get(`${l.name}.lora.${which}`)!;
      tf.tidy(() => lora[which].assign(tf.tensor(t.data, t.shape, "float32")));
    }
  }
  if (freezeBase) {
    for (const [name, v] of model.namedParameters()) v.trainable = isLoraParam(name);
  }
  return c;
}
