/**
 * LoRA adapters in PEFT's own format for Hugging Face's `GPT2LMHeadModel`, so that
 * `PeftModel.from_pretrained(GPT2LMHeadModel.from_pretrained(base), dir)` loads ours, and ours
 * load PEFT's (https://huggingface.co/docs/peft/developer_guides/checkpoint).
 *
 * PEFT wraps the model twice, so keys read `base_model.model.<module>.lora_A.weight` /
 * `.lora_B.weight` with modules `transformer.h.N.attn.c_attn`, `.attn.c_proj`, `.mlp.c_fc`,
 * `.mlp.c_proj` and `lm_head`. Its A and B are `nn.Linear` weights: lora_A [r, in], lora_B
 * [out, r], the transposes of the book's A [in, r] and B [r, out]; the update is
 * `scaling * B A` (transposed for GPT-2's Conv1D, `fan_in_fan_out`), scaling = alpha / r.
 *
 * GPT-2 fuses Q, K and V into `c_attn`; the book has three adapters. Stacked, A = [A_q A_k A_v]
 * and a block-diagonal B give exactly the three updates side by side, at rank 3r; the
 * `rank_pattern` / `alpha_pattern` entries for c_attn keep the scale. Loading splits c_attn again:
 * into the blocks when B is block-diagonal, else into three adapters that share A (also exact).
 * @module
 */
import { join } from "node:path";
import * as tf from "@tensorflow/tfjs";
import type { GPTModel } from "../model/gpt.ts";
import {
  isLoraParam,
  linearLayers,
  type LinearWithLoRA,
  loraLayers,
  replaceLinearWithLora,
} from "../model/lora.ts";
import { UserError } from "../util/errors.ts";
import { exists } from "../util/fs.ts";
import { readSafetensors, type TensorMap } from "./safetensors.ts";
import { ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE, writeAdapterFiles } from "./adapter.ts";
import { parseJsonFile } from "./json.ts";
import { transpose2d } from "./gpt2_layout.ts";

const PREFIX = "base_model.model.";
const QKV = ["W_query", "W_key", "W_value"] as const;

/** One LoRA update in the book's layout: scale * A B, A [in, r], B [r, out]. */
interface Update {
  A: Float32Array;
  B: Float32Array;
  rank: number;
  inDim: number;
  outDim: number;
  scale: number;
}

/** HF module of a book layer name (Q/K/V all map to the fused c_attn). */
function hfModule(book: string): string {
  if (book === "out_head") return "lm_head";
  const m = /^trf_blocks\.(\d+)\.(att\.(W_query|W_key|W_value|out_proj)|ff\.layers\.(0|2))$/
    .exec(book);
  if (!m) throw new UserError(`LoRA layer "${book}" has no place in Hugging Face's GPT-2`);
  const sub = m[3]
    ? (m[3] === "out_proj" ? "attn.c_proj" : "attn.c_attn")
    : m[4] === "0"
    ? "mlp.c_fc"
    : "mlp.c_proj";
  return `transformer.h.${m[1]}.${sub}`;
}

async function updates(model: GPTModel): Promise<Map<string, Update>> {
  const out = new Map<string, Update>();
  for (const [name, l] of loraLayers(model)) {
    const { A, B, rank, scale } = l.lora;
    out.set(name, {
      A: Float32Array.from((await A.data()) as Float32Array),
      B: Float32Array.from((await B.data()) as Float32Array),
      rank,
      inDim: l.inDim,
      outDim: l.outDim,
      scale,
    });
  }
  return out;
}

/** Q/K/V updates of one block stacked into one c_attn update (block-diagonal B). */
function stackQkv(parts: (Update | undefined)[], e: number): Update {
  const present = parts.filter((p): p is Update => p !== undefined);
  const rank = present.reduce((s, p) => s + p.rank, 0);
  const A = new Float32Array(e * rank), B = new Float32Array(rank * 3 * e);
  let r0 = 0;
  parts.forEach((p, k) => {
    if (!p) return;
    for (let i = 0; i < e; i++) {
      for (let j = 0; j < p.rank; j++) A[i * rank + r0 + j] = p.A[i * p.rank + j];
    }
    for (let j = 0; j < p.rank; j++) {
      B.set(p.B.subarray(j * e, (j + 1) * e), (r0 + j) * 3 * e + k * e);
    }
    r0 += p.rank;
  });
  if (present.some((p) => p.scale !== present[0].scale)) {
    throw new UserError("LoRA: Q, K and V adapters of one block have different scales");
  }
  return { A, B, rank, inDim: e, outDim: 3 * e, scale: present[0].scale };
}

/** The model's LoRA updates per HF module (Q/K/V stacked into c_attn). */
async function hfUpdates(model: GPTModel): Promise<Map<string, Update>> {
  const ours = await updates(model);
  if (ours.size === 0) throw new UserError("the model has no LoRA layers to save");
  if (model.config.vocabSize !== model.out_head.outDim) {
    throw new UserError("PEFT export is for the language-model head (not a classifier)");
  }
  const out = new Map<string, Update>();
  for (const [name, u] of ours) {
    const m = /^(trf_blocks\.\d+\.att)\.(W_query|W_key|W_value)$/.exec(name);
    if (!m) {
      out.set(hfModule(name), u);
      continue;
    }
    const module = hfModule(name);
    if (out.has(module)) continue;
    out.set(module, stackQkv(QKV.map((q) => ours.get(`${m[1]}.${q}`)), model.config.embDim));
  }
  return out;
}

/**
 * The shortest module-name suffixes (last 1, 2, ... name parts: "c_attn", "attn.c_proj") that
 * select exactly `modules` out of `all` by PEFT's rule (a name equals the key or ends with "." +
 * key); the full names when no suffix does.
 */
function suffixes(modules: string[], all: string[]): string[] {
  const want = new Set(modules);
  for (let depth = 1; depth <= 3; depth++) {
    const keys = [...new Set(modules.map((m) => m.split(".").slice(-depth).join(".")))];
    const hit = all.filter((m) => keys.some((k) => m === k || m.endsWith(`.${k}`)));
    if (hit.length === want.size && hit.every((m) => want.has(m))) return keys;
  }
  return modules;
}

/** The PEFT adapter_config.json and tensors of a model with LoRA layers. */
export async function peftAdapter(
  model: GPTModel,
  { baseModel }: { baseModel: string },
): Promise<{ config: Record<string, unknown>; tensors: TensorMap }> {
  const ups = await hfUpdates(model);
  const ranks = [...ups.values()].map((u) => u.rank);
  // The most common rank is `r`; the others (c_attn at 3r) go into rank_pattern.
  const r =
    ranks.sort((a, b) =>
      ranks.filter((x) => x === b).length - ranks.filter((x) => x === a).length
    )[0];
  const scale = [...ups.values()][0].scale;
  if ([...ups.values()].some((u) => u.scale !== scale)) {
    throw new UserError("PEFT export needs one LoRA scale for all layers");
  }
  const tensors: TensorMap = new Map();
  const rankPattern: Record<string, number> = {}, alphaPattern: Record<string, number> = {};
  const modules = [...ups.keys()];
  const allModules = hfAllModules(model);
  for (const rank of new Set(ranks)) {
    if (rank === r) continue;
    const withRank = modules.filter((m) => ups.get(m)!.rank === rank);
    for (const key of suffixes(withRank, modules)) {
      rankPattern[key] = rank;
      alphaPattern[key] = scale * rank;
    }
  }
  for (const [m, u] of ups) {
    tensors.set(`${PREFIX}${m}.lora_A.weight`, {
      shape: [u.rank, u.inDim],
      data: transpose2d(u.A, u.inDim, u.rank),
    });
    tensors.set(`${PREFIX}${m}.lora_B.weight`, {
      shape: [u.outDim, u.rank],
      data: transpose2d(u.B, u.rank, u.outDim),
    });
  }
  const dropout = [...loraLayers(model).values()][0].lora.dropout;
  const config = {
    alpha_pattern: alphaPattern,
    auto_mapping: null,
    base_model_name_or_path: baseModel,
    bias: "none",
    fan_in_fan_out: true,
    inference_mode: true,
    init_lora_weights: true,
    layers_pattern: null,
    layers_to_transform: null,
    lora_alpha: scale * r,
    lora_dropout: dropout,
    modules_to_save: null,
    peft_type: "LORA",
    r,
    rank_pattern: rankPattern,
    revision: null,
    target_modules: suffixes(modules, allModules),
    task_type: "CAUSAL_LM",
    use_dora: false,
    use_rslora: false,
  };
  return { config, tensors };
}

/** Every HF module that could carry LoRA in this model. */
function hfAllModules(model: GPTModel): string[] {
  const names = [...linearLayers(model).keys(), ...loraLayers(model).keys()];
  return [...new Set(names.map(hfModule))];
}

/** Writes the model's LoRA layers as a PEFT adapter folder (weights first, then the config). */
export async function savePeftAdapter(
  dir: string,
  model: GPTModel,
  options: { baseModel: string },
): Promise<string> {
  const { config, tensors } = await peftAdapter(model, options);
  return await writeAdapterFiles(dir, tensors, config);
}

/** True when `dir` holds a PEFT-format adapter (keys `base_model.model.*`). */
export async function isPeftAdapter(dir: string): Promise<boolean> {
  const path = join(dir, ADAPTER_WEIGHTS_FILE);
  if (!(await exists(path))) return false;
  const { tensors } = await readSafetensors(path, { label: path });
  return [...tensors.keys()].every((k) => k.startsWith(PREFIX));
}

/** The fields of PEFT's adapter_config.json that loading reads. */
interface PeftConfig {
  peft_type?: unknown;
  r?: number;
  lora_alpha?: number;
  use_rslora?: boolean;
  rank_pattern?: unknown;
  alpha_pattern?: unknown;
}

/** A PEFT pattern's value for a module (PEFT matches `(.*\.)?(key)$`). */
function patternValue(pattern: unknown, module: string): number | undefined {
  if (!pattern || typeof pattern !== "object") return undefined;
  for (const [key, v] of Object.entries(pattern as Record<string, number>)) {
    if (new RegExp(`^(.*\\.)?(${key})$`).test(module)) return v;
  }
  return undefined;
}

/** Splits a c_attn update into Q/K/V updates (exact; see the module doc). */
function splitQkv(u: Update, e: number): (Update | undefined)[] {
  const used = (k: number) => {
    const rows: number[] = [];
    for (let j = 0; j < u.rank; j++) {
      const row = u.B.subarray(j * 3 * e + k * e, j * 3 * e + (k + 1) * e);
      if (row.some((x) => x !== 0)) rows.push(j);
    }
    return rows;
  };
  const sets = [0, 1, 2].map(used);
  const disjoint = sets.every((s, k) =>
    sets.every((t, l) => l === k || !s.some((j) => t.includes(j)))
  );
  return sets.map((rows, k) => {
    if (rows.length === 0) return undefined;
    const pick = disjoint ? rows : Array.from({ length: u.rank }, (_, j) => j);
    const A = new Float32Array(e * pick.length), B = new Float32Array(pick.length * e);
    pick.forEach((j, c) => {
      for (let i = 0; i < e; i++) A[i * pick.length + c] = u.A[i * u.rank + j];
      B.set(u.B.subarray(j * 3 * e + k * e, j * 3 * e + (k + 1) * e), c * e);
    });
    return { A, B, rank: pick.length, inDim: e, outDim: e, scale: u.scale };
  });
}

/**
 * Applies a PEFT LoRA adapter for GPT2LMHeadModel (written by Python's PEFT or by
 * {@link savePeftAdapter}) to the book's model: wraps the layers in LoRA and loads A/B. A shape
 * that does not fit this model, or a rank that disagrees with the config, is a UserError.
 */
export async function loadPeftAdapter(dir: string, model: GPTModel): Promise<void> {
  const configPath = join(dir, ADAPTER_CONFIG_FILE);
  const config = parseJsonFile(await Deno.readTextFile(configPath), configPath) as PeftConfig;
  if (config.peft_type !== "LORA") {
    throw new UserError(`${dir}: peft_type is ${JSON.stringify(config.peft_type)}, not "LORA"`);
  }
  const path = join(dir, ADAPTER_WEIGHTS_FILE);
  const { tensors } = await readSafetensors(path, { label: path });
  const e = model.config.embDim;
  const book = new Map<string, Update>();
  const layers = new Map([...linearLayers(model)].map(([n, l]) => [hfModule(n), l]));
  for (const key of tensors.keys()) {
    const m = /^base_model\.model\.(.+)\.lora_A\.weight$/.exec(key);
    if (!m) continue;
    const module = m[1].startsWith("transformer.") || m[1] === "lm_head"
      ? m[1]
      : `transformer.${m[1]}`;
    const a = tensors.get(key)!, b = tensors.get(key.replace("lora_A", "lora_B"));
    if (!b) throw new UserError(`${path}: "${key}" has no lora_B`);
    const rank = a.shape[0];
    const want = patternValue(config.rank_pattern, module) ?? config.r;
    if (want !== undefined && rank !== want) {
      throw new UserError(
        `${path}: "${key}" has rank ${rank}, ${ADAPTER_CONFIG_FILE} says ${want}`,
      );
    }
    const alpha = patternValue(config.alpha_pattern, module) ?? config.lora_alpha ?? 8;
    const scale = config.use_rslora ? alpha / Math.sqrt(rank) : alpha / rank;
    const [inDim, outDim] = [a.shape[1], b.shape[0]];
    const fused = module.endsWith(".attn.c_attn");
    const target = fused ? { inDim: e, outDim: 3 * e } : layers.get(module);
    if (!target || target.inDim !== inDim || target.outDim !== outDim || b.shape[1] !== rank) {
      throw new UserError(
        `${path}: LoRA for "${module}" is [${inDim} -> ${outDim}], which this base model lacks`,
      );
    }
    const u: Update = {
      A: transpose2d(a.data, rank, inDim),
      B: transpose2d(b.data, outDim, rank),
      rank,
      inDim,
      outDim,
      scale,
    };
    const block = /^transformer\.h\.(\d+)\./.exec(module)?.[1];
    if (fused) {
      splitQkv(u, e).forEach((p, k) => p && book.set(`trf_blocks.${block}.att.${QKV[k]}`, p));
    } else {
      const name = [...linearLayers(model).keys()].find((n) => hfModule(n) === module)!;
      book.set(name, u);
    }
  }
  if (book.size === 0) {
    throw new UserError(`${path}: no LoRA tensors (base_model.model.*.lora_A.weight)`);
  }
  applyUpdates(model, book);
}

/** Wraps the named layers in LoRA holding these updates (padding ranks / folding scales if mixed). */
function applyUpdates(model: GPTModel, book: Map<string, Update>): void {
  const all = [...book.values()];
  const rank = Math.max(...all.map((u) => u.rank));
  const uniform = all.every((u) => u.rank === rank && u.scale === all[0].scale);
  // Mixed ranks: zero-pad A and B to the largest rank (adds exact zeros) and put each scale in B.
  const scale = uniform ? all[0].scale : 1;
  replaceLinearWithLora(model, {
    rank,
    alpha: scale,
    scaling: "alpha",
    targets: (n) => book.has(n),
  });
  for (const [name, l] of loraLayers(model) as Map<string, LinearWithLoRA>) {
    const u = book.get(name)!;
    const A = new Float32Array(u.inDim * rank), B = new Float32Array(rank * u.outDim);
    for (let i = 0; i < u.inDim; i++) A.set(u.A.subarray(i * u.rank, (i + 1) * u.rank), i * rank);
    B.set(uniform ? u.B : u.B.map((x) => x * u.scale));
    tf.tidy(() => {
      l.lora.A.assign(tf.tensor2d(A, [u.inDim, rank]));
      l.lora.B.assign(tf.tensor2d(B, [rank, u.outDim]));
    });
  }
  for (const [name, v] of model.namedParameters()) v.trainable = isLoraParam(name);
}
