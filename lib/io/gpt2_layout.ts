/**
 * Hugging Face GPT-2 tensors <-> the book's parameter names (chapter 5.5). HF GPT-2's Conv1D
 * weights are stored [in, out], which is our layout: only the fused QKV projection (`c_attn`) is
 * split/fused and the untied `lm_head.weight` [V,E] is transposed.
 * @module
 */
import {
  blockLinearShapes,
  blockParameterShapes,
  type GPTConfig,
  parameterShapes,
} from "../model/config.ts";
import { UserError } from "../util/errors.ts";
import { hfConfigFromGpt, type HfGpt2Config, WEIGHTS_FILE } from "./hf_config.ts";
import type { TensorData, TensorMap } from "./safetensors.ts";
import { formatShape } from "./safetensors_header.ts";

/** Buffers that transformers' GPT-2 stores next to the weights (causal masks): not parameters. */
export const IGNORED_KEY = /^h\.\d+\.attn\.(bias|masked_bias)$/;

/** True when two shapes are equal. */
export function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

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

/**
 * The shapes of HF GPT-2's tensors, derived from the model's one table (../model/config.ts): the
 * renamed tensors have our shapes (Conv1D stores [in, out] as we do), c_attn fuses Q, K and V.
 */
function hfShapes(config: GPTConfig) {
  const ours = parameterShapes(config), block = blockParameterShapes(config);
  const q = blockLinearShapes(config)["att.W_query"];
  const perBlock: Record<string, number[]> = {
    "attn.c_attn.weight": [q.inDim, 3 * q.outDim],
    "attn.c_attn.bias": [3 * q.outDim],
  };
  for (const [book, hf] of BLOCK_RENAMES) perBlock[hf] = block.get(book)!;
  const [e, v] = ours.get("out_head.weight")!;
  return {
    ours,
    perBlock,
    qkvWeight: [q.inDim, q.outDim],
    qkvBias: [q.outDim],
    /** lm_head.weight is out_head.weight transposed: [V, E]. */
    lmHead: [v, e],
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
  const { vocabSize: v, embDim: e, nLayers } = config;
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
        `${label}: tensor "${name}" ${
          formatShape(shape)
        } is missing (does config.json match the weights?)`,
      );
    }
    if (!sameShape(t.shape, shape)) {
      throw new UserError(
        `${label}: tensor "${name}" has shape ${formatShape(t.shape)}, expected ${
          formatShape(shape)
        } from config.json`,
      );
    }
    used.add(name);
    return t;
  };

  const out: TensorMap = new Map();
  const { ours: sh, perBlock: shapes, qkvWeight, qkvBias, lmHead } = hfShapes(config);
  const wte = take("wte.weight", sh.get("tok_emb.weight")!)!;
  out.set("tok_emb.weight", wte);
  out.set("pos_emb.weight", take("wpe.weight", sh.get("pos_emb.weight")!)!);
  for (let i = 0; i < nLayers; i++) {
    const h = `h.${i}.`, ours = `trf_blocks.${i}.`;
    const qkvW = take(`${h}attn.c_attn.weight`, shapes["attn.c_attn.weight"])!;
    const [wq, wk, wv] = splitColumns(qkvW.data, e, e, 3);
    out.set(`${ours}att.W_query.weight`, { shape: qkvWeight, data: wq });
    out.set(`${ours}att.W_key.weight`, { shape: qkvWeight, data: wk });
    out.set(`${ours}att.W_value.weight`, { shape: qkvWeight, data: wv });
    const qkvB = take(`${h}attn.c_attn.bias`, shapes["attn.c_attn.bias"], !config.qkvBias);
    if (config.qkvBias) {
      const b = qkvB!.data;
      out.set(`${ours}att.W_query.bias`, { shape: qkvBias, data: b.slice(0, e) });
      out.set(`${ours}att.W_key.bias`, { shape: qkvBias, data: b.slice(e, 2 * e) });
      out.set(`${ours}att.W_value.bias`, { shape: qkvBias, data: b.slice(2 * e) });
    } else if (qkvB && qkvB.data.some((x) => x !== 0)) {
      throw new UserError(
        `${label}: config.json says qkv_bias false but "${h}attn.c_attn.bias" is not all zeros`,
      );
    }
    for (const [book, hfName] of BLOCK_RENAMES) {
      out.set(ours + book, take(h + hfName, shapes[hfName])!);
    }
  }
  out.set("final_norm.scale", take("ln_f.weight", sh.get("final_norm.scale")!)!);
  out.set("final_norm.shift", take("ln_f.bias", sh.get("final_norm.shift")!)!);
  const head = take("lm_head.weight", lmHead, true);
  out.set("out_head.weight", {
    shape: sh.get("out_head.weight")!,
    data: transpose2d((head ?? wte).data, v, e),
  });

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
  const { vocabSize: v, embDim: e, nLayers } = config;
  const used = new Set<string>();
  const get = (name: string, shape: number[]): Float32Array => {
    const t = params.get(name);
    if (!t) throw new UserError(`parameter "${name}" ${formatShape(shape)} is missing`);
    if (!sameShape(t.shape, shape)) {
      throw new UserError(
        `parameter "${name}" has shape ${formatShape(t.shape)}, expected ${formatShape(shape)}`,
      );
    }
    used.add(name);
    return t.data;
  };
  const { ours: sh, perBlock: shapes, qkvWeight, qkvBias, lmHead } = hfShapes(config);
  const wte = get("tok_emb.weight", sh.get("tok_emb.weight")!);
  const outHead = get("out_head.weight", sh.get("out_head.weight")!);
  const tied = isTransposeOf(outHead, wte, v, e);
  const prefix = tied ? "" : "transformer.";
  const out: TensorMap = new Map();
  const put = (name: string, shape: number[], data: Float32Array) =>
    out.set(prefix + name, { shape, data });

  put("wte.weight", sh.get("tok_emb.weight")!, wte);
  put("wpe.weight", sh.get("pos_emb.weight")!, get("pos_emb.weight", sh.get("pos_emb.weight")!));
  for (let i = 0; i < nLayers; i++) {
    const h = `h.${i}.`, ours = `trf_blocks.${i}.att.`;
    const w = ["W_query", "W_key", "W_value"].map((n) => get(`${ours}${n}.weight`, qkvWeight));
    put(`${h}attn.c_attn.weight`, shapes["attn.c_attn.weight"], fuseColumns(w, e, e));
    const bias = new Float32Array(3 * e);
    if (config.qkvBias) {
      ["W_query", "W_key", "W_value"].forEach((n, k) =>
        bias.set(get(`${ours}${n}.bias`, qkvBias), k * e)
      );
    }
    put(`${h}attn.c_attn.bias`, shapes["attn.c_attn.bias"], bias);
    for (const [book, hfName] of BLOCK_RENAMES) {
      put(h + hfName, shapes[hfName], get(`trf_blocks.${i}.${book}`, shapes[hfName]));
    }
  }
  for (
    const [book, hf] of [["final_norm.scale", "ln_f.weight"], ["final_norm.shift", "ln_f.bias"]]
  ) {
    put(hf, sh.get(book)!, get(book, sh.get(book)!));
  }
  if (!tied) out.set("lm_head.weight", { shape: lmHead, data: transpose2d(outHead, e, v) });

  const unknown = [...params.keys()].filter((k) => !used.has(k));
  if (unknown.length > 0) {
    throw new UserError(
      `parameter(s) not in a GPT-2 checkpoint for this config: ${unknown.slice(0, 3).join(", ")}` +
        (unknown.length > 3 ? ", ..." : ""),
    );
  }
  return { tensors: out, hfConfig: hfConfigFromGpt(config, { tied }), tied };
}
