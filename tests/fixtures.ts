/**
 * Test helpers for the PyTorch reference fixtures in tests/fixtures/ (made by
 * tests/fixtures/make_fixtures.py): a small safetensors reader, loaders for the expected values
 * and the tiny models' weights in our layout, and a closeness assertion.
 *
 * Self-contained on purpose (no lib/ imports besides the GPTConfig type), so parity tests do not
 * depend on the code they check.
 * @module
 */
import type { GPTConfig } from "../lib/model/config.ts";

/** Folder of the fixture files. */
export const FIXTURES_DIR = new URL("./fixtures/", import.meta.url);

/** One tensor of a safetensors file. */
export interface RawTensor {
  dtype: string;
  shape: number[];
  data: Float32Array | Int32Array | BigInt64Array | Uint8Array;
}

/** A parsed safetensors file. */
export interface SafetensorsFile {
  tensors: Map<string, RawTensor>;
  metadata: Record<string, string>;
}

/** Parses safetensors bytes (F32, I32, I64, U8; little-endian). */
export function parseSafetensors(bytes: Uint8Array): SafetensorsFile {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const headerLen = Number(view.getBigUint64(0, true));
  const header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + headerLen)));
  const base = 8 + headerLen;
  const metadata: Record<string, string> = header.__metadata__ ?? {};
  const tensors = new Map<string, RawTensor>();
  for (const [name, info] of Object.entries(header)) {
    if (name === "__metadata__") continue;
    const { dtype, shape, data_offsets: [a, b] } = info as {
      dtype: string;
      shape: number[];
      data_offsets: [number, number];
    };
    const chunk = bytes.slice(base + a, base + b); // a copy: aligned for the typed array
    const buf = chunk.buffer;
    const data = dtype === "F32"
      ? new Float32Array(buf)
      : dtype === "I32"
      ? new Int32Array(buf)
      : dtype === "I64"
      ? new BigInt64Array(buf)
      : dtype === "U8"
      ? new Uint8Array(buf)
      : null;
    if (!data) throw new Error(`${name}: unsupported dtype ${dtype}`);
    tensors.set(name, { dtype, shape, data });
  }
  return { tensors, metadata };
}

/** Reads a safetensors file under tests/fixtures/. */
export async function readFixtureSafetensors(path: string): Promise<SafetensorsFile> {
  return parseSafetensors(await Deno.readFile(new URL(path, FIXTURES_DIR)));
}

/** Reads a JSON fixture (e.g. "adamw.json", "schedule.json"). */
export async function readFixtureJson<T = unknown>(path: string): Promise<T> {
  return JSON.parse(await Deno.readTextFile(new URL(path, FIXTURES_DIR))) as T;
}

/** The tiny parity models. */
export type TinyModelName = "gpt-tiny-noqkv" | "gpt-tiny-qkv";

/** A float tensor by shape and values. */
export interface FloatTensor {
  shape: number[];
  data: Float32Array;
}

/** What PyTorch computed for one tiny model (float64 reference, stored as float32). */
export interface ModelExpected {
  config: GPTConfig;
  /** Token ids [2, 16]. */
  inputIds: { shape: number[]; data: Int32Array };
  /** Targets [2, 16]; -100 at ignored positions. */
  targets: { shape: number[]; data: Int32Array };
  /** Logits [2, 16, 97]. */
  logits: FloatTensor;
  /** Mean cross-entropy over the non-ignored targets (ignore_index -100). */
  loss: number;
  /** d loss / d param, by the book's parameter names, in OUR layout (Linear weights [in, out]). */
  grads: Map<string, FloatTensor>;
  /** Prompt [1, 5] of the greedy generation. */
  promptIds: number[];
  /** Prompt + 10 greedy tokens (chapter 4's generate_text_simple = generate(temperature 0)). */
  generatedIds: number[];
  /** Prompt + 16 greedy tokens (21 > context 16: exercises the context crop). */
  generatedLongIds: number[];
  metadata: Record<string, string>;
}

/** The tiny model's config as our GPTConfig (from its HF config.json). */
export async function loadTinyConfig(name: TinyModelName): Promise<GPTConfig> {
  const c = await readFixtureJson<Record<string, number | boolean>>(`${name}/config.json`);
  return {
    vocabSize: c.vocab_size as number,
    contextLength: c.n_positions as number,
    embDim: c.n_embd as number,
    nHeads: c.n_head as number,
    nLayers: c.n_layer as number,
    dropRate: c.resid_pdrop as number,
    qkvBias: c.qkv_bias as boolean,
  };
}

/** Loads expected.safetensors (and config.json) of a tiny model. */
export async function loadModelExpected(name: TinyModelName): Promise<ModelExpected> {
  const { tensors, metadata } = await readFixtureSafetensors(`${name}/expected.safetensors`);
  const get = (key: string) => {
    const t = tensors.get(key);
    if (!t) throw new Error(`${name}/expected.safetensors has no "${key}"`);
    return t;
  };
  const f32 = (key: string): FloatTensor => ({
    shape: get(key).shape,
    data: get(key).data as Float32Array,
  });
  const i32 = (key: string) => ({ shape: get(key).shape, data: get(key).data as Int32Array });
  const grads = new Map<string, FloatTensor>();
  for (const key of tensors.keys()) {
    if (key.startsWith("grad.")) grads.set(key.slice("grad.".length), f32(key));
  }
  return {
    config: await loadTinyConfig(name),
    inputIds: i32("input_ids"),
    targets: i32("targets"),
    logits: f32("logits"),
    loss: (get("loss").data as Float32Array)[0],
    grads,
    promptIds: [...i32("prompt_ids").data],
    generatedIds: [...i32("generated_ids").data],
    generatedLongIds: [...i32("generated_long_ids").data],
    metadata,
  };
}

/**
 * The tiny model's weights in OUR layout (book names, Linear weights [in, out]), converted from its
 * HF-layout model.safetensors by this helper alone (independent of lib/io/weights.ts). With
 * qkvBias false there are no W_query/W_key/W_value biases (the file's c_attn.bias is zeros).
 */
export async function loadTinyParams(name: TinyModelName): Promise<Map<string, FloatTensor>> {
  const config = await loadTinyConfig(name);
  const { tensors } = await readFixtureSafetensors(`${name}/model.safetensors`);
  const t = (key: string): FloatTensor => {
    const x = tensors.get(key);
    if (!x) throw new Error(`${name}/model.safetensors has no "${key}"`);
    return { shape: x.shape, data: x.data as Float32Array };
  };
  const E = config.embDim, out = new Map<string, FloatTensor>();
  out.set("tok_emb.weight", t("wte.weight"));
  out.set("pos_emb.weight", t("wpe.weight"));
  for (let i = 0; i < config.nLayers; i++) {
    const h = `h.${i}.`, b = `trf_blocks.${i}.`;
    const cAttnW = t(h + "attn.c_attn.weight"), cAttnB = t(h + "attn.c_attn.bias");
    ["W_query", "W_key", "W_value"].forEach((n, j) => {
      out.set(`${b}att.${n}.weight`, sliceColumns(cAttnW, j * E, (j + 1) * E));
      if (config.qkvBias) {
        out.set(`${b}att.${n}.bias`, { shape: [E], data: cAttnB.data.slice(j * E, (j + 1) * E) });
      }
    });
    out.set(`${b}att.out_proj.weight`, t(h + "attn.c_proj.weight"));
    out.set(`${b}att.out_proj.bias`, t(h + "attn.c_proj.bias"));
    out.set(`${b}ff.layers.0.weight`, t(h + "mlp.c_fc.weight"));
    out.set(`${b}ff.layers.0.bias`, t(h + "mlp.c_fc.bias"));
    out.set(`${b}ff.layers.2.weight`, t(h + "mlp.c_proj.weight"));
    out.set(`${b}ff.layers.2.bias`, t(h + "mlp.c_proj.bias"));
    out.set(`${b}norm1.scale`, t(h + "ln_1.weight"));
    out.set(`${b}norm1.shift`, t(h + "ln_1.bias"));
    out.set(`${b}norm2.scale`, t(h + "ln_2.weight"));
    out.set(`${b}norm2.shift`, t(h + "ln_2.bias"));
  }
  out.set("final_norm.scale", t("ln_f.weight"));
  out.set("final_norm.shift", t("ln_f.bias"));
  out.set("out_head.weight", transpose2d(t("lm_head.weight"))); // [V, E] -> [E, V]
  return out;
}

function sliceColumns(m: FloatTensor, from: number, to: number): FloatTensor {
  const [rows, cols] = m.shape, w = to - from, data = new Float32Array(rows * w);
  for (let r = 0; r < rows; r++) data.set(m.data.subarray(r * cols + from, r * cols + to), r * w);
  return { shape: [rows, w], data };
}

function transpose2d(m: FloatTensor): FloatTensor {
  const [rows, cols] = m.shape, data = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) data[c * rows + r] = m.data[r * cols + c];
  }
  return { shape: [cols, rows], data };
}

/** Tolerances of `assertAllClose`: |a - e| <= atol + rtol * |e| elementwise (numpy's allclose). */
export interface CloseOptions {
  rtol?: number;
  atol?: number;
  /** Prefix of the failure message. */
  label?: string;
}

/** Throws with the worst element when arrays differ beyond `atol + rtol * |expected|`. */
export function assertAllClose(
  actual: ArrayLike<number>,
  expected: ArrayLike<number>,
  { rtol = 1e-5, atol = 1e-7, label = "values" }: CloseOptions = {},
): void {
  if (actual.length !== expected.length) {
    throw new Error(`${label}: length ${actual.length} != expected ${expected.length}`);
  }
  let worst = -1, worstExcess = 0;
  for (let i = 0; i < expected.length; i++) {
    const diff = Math.abs(actual[i] - expected[i]);
    const excess = diff - (atol + rtol * Math.abs(expected[i]));
    if (!(excess <= 0) && (worst < 0 || !(excess <= worstExcess))) {
      worst = i;
      worstExcess = excess;
    }
  }
  if (worst >= 0) {
    throw new Error(
      `${label}: element ${worst} is ${actual[worst]}, expected ${expected[worst]} ` +
        `(|diff| ${
          Math.abs(actual[worst] - expected[worst]).toExponential(3)
        } > atol ${atol} + rtol ${rtol} * |expected|)`,
    );
  }
}

/** Largest |a - e| / max(|e|, floor) over the elements (to report errors in test output). */
export function maxRelError(
  actual: ArrayLike<number>,
  expected: ArrayLike<number>,
  floor = 1e-6,
): number {
  let m = 0;
  for (let i = 0; i < expected.length; i++) {
    m = Math.max(m, Math.abs(actual[i] - expected[i]) / Math.max(Math.abs(expected[i]), floor));
  }
  return m;
}
