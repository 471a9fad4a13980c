/**
 * GPT configurations: the book's GPT_CONFIG_124M and the four OpenAI GPT-2 sizes.
 * Presets are plain data; `resolveConfig` applies overrides.
 */
import { UserError } from "../util/errors.ts";

/** The hyper-parameters of a GPTModel (the book's cfg dict, in camelCase). */
export interface GPTConfig {
  vocabSize: number;
  contextLength: number;
  embDim: number;
  nHeads: number;
  nLayers: number;
  dropRate: number;
  qkvBias: boolean;
}

const GPT2_BASE = { vocabSize: 50257, contextLength: 1024, dropRate: 0.1, qkvBias: false };

/** Named presets. The gpt2-* sizes are OpenAI's; `gpt-124m-book` is the book's GPT_CONFIG_124M. */
export const PRESETS: Record<string, GPTConfig> = {
  "gpt2-small": { ...GPT2_BASE, embDim: 768, nLayers: 12, nHeads: 12 },
  "gpt2-medium": { ...GPT2_BASE, embDim: 1024, nLayers: 24, nHeads: 16 },
  "gpt2-large": { ...GPT2_BASE, embDim: 1280, nLayers: 36, nHeads: 20 },
  "gpt2-xl": { ...GPT2_BASE, embDim: 1600, nLayers: 48, nHeads: 25 },
  // Appendix D / chapter 5: a 124M model with a short context for training on a laptop.
  "gpt-124m-book": { ...GPT2_BASE, contextLength: 256, embDim: 768, nLayers: 12, nHeads: 12 },
  // A small model for quick runs on two CPU cores (our choice, not the book's).
  "gpt-tiny": { ...GPT2_BASE, contextLength: 128, embDim: 128, nLayers: 2, nHeads: 4 },
};

/** The book's GPT_CONFIG_124M. */
export const GPT_CONFIG_124M: GPTConfig = PRESETS["gpt-124m-book"];

/** Overrides the book's code applies on top of a preset. */
export interface ConfigOverrides {
  contextLength?: number;
  dropRate?: number;
  qkvBias?: boolean;
  vocabSize?: number;
}

/** Looks up a preset by name and applies overrides; unknown names list the valid ones. */
export function resolveConfig(name: string, overrides: ConfigOverrides = {}): GPTConfig {
  const preset = PRESETS[name];
  if (!preset) {
    throw new UserError(
      `unknown model "${name}"; valid names: ${Object.keys(PRESETS).join(", ")}`,
    );
  }
  const config = { ...preset };
  for (const [key, value] of Object.entries(overrides)) {
    if (value !== undefined) (config as Record<string, unknown>)[key] = value;
  }
  validateConfig(config);
  return config;
}

/** Checks that a config describes a buildable model. */
export function validateConfig(c: GPTConfig): void {
  for (const key of ["vocabSize", "contextLength", "embDim", "nHeads", "nLayers"] as const) {
    if (!Number.isInteger(c[key]) || c[key] <= 0) {
      throw new UserError(`config.${key} must be a positive integer (got ${c[key]})`);
    }
  }
  if (c.embDim % c.nHeads !== 0) {
    throw new UserError(`embDim ${c.embDim} is not divisible by nHeads ${c.nHeads}`);
  }
  // Each parameter is one typed array; V8 and tfjs cap those at 2^31 - 1 elements.
  const largest = Math.max(c.vocabSize, c.contextLength, 4 * c.embDim) * c.embDim;
  if (largest > 2 ** 31 - 1) {
    throw new UserError(
      `config is too large: one parameter would have ${largest.toExponential(2)} elements ` +
        `(vocabSize ${c.vocabSize}, contextLength ${c.contextLength}, embDim ${c.embDim}); ` +
        "at most 2^31 - 1",
    );
  }
  if (typeof c.qkvBias !== "boolean") {
    throw new UserError(`config.qkvBias must be true or false (got ${JSON.stringify(c.qkvBias)})`);
  }
  if (typeof c.dropRate !== "number" || !(c.dropRate >= 0 && c.dropRate < 1)) {
    throw new UserError(`dropRate must be in [0, 1) (got ${c.dropRate})`);
  }
}

// ---------------------------------------------------------------------------------------------
// The GPT's shapes: one table that GPTModel, the counts, LoRA and the HF mapping all read

/** A linear layer's shape: weight [inDim, outDim] (x @ W), and a bias [outDim] when `bias`. */
export interface LinearShape {
  inDim: number;
  outDim: number;
  bias: boolean;
}

/**
 * The linear layers of one transformer block by their names in the block (the book's), in model
 * order: the attention's Q/K/V projections (biases only with qkvBias) and output projection, then
 * the feed-forward's Linear(E, 4E) and Linear(4E, E).
 */
export function blockLinearShapes(c: GPTConfig) {
  const e = c.embDim;
  return {
    "att.W_query": { inDim: e, outDim: e, bias: c.qkvBias },
    "att.W_key": { inDim: e, outDim: e, bias: c.qkvBias },
    "att.W_value": { inDim: e, outDim: e, bias: c.qkvBias },
    "att.out_proj": { inDim: e, outDim: e, bias: true },
    "ff.layers.0": { inDim: e, outDim: 4 * e, bias: true },
    "ff.layers.2": { inDim: 4 * e, outDim: e, bias: true },
  } satisfies Record<string, LinearShape>;
}

/** A block's LayerNorms (scale and shift [E] each), after its linear layers. */
export const BLOCK_NORMS = ["norm1", "norm2"] as const;

/** Options of the shape functions. */
export interface ShapeOptions {
  /** Chapter 6: the head is Linear(embDim, numClasses) with bias instead of [embDim, vocab]. */
  numClasses?: number;
}

/** The output head: [E, V] without bias (the book's), or chapter 6's classifier with bias. */
export function headShape(c: GPTConfig, { numClasses }: ShapeOptions = {}): LinearShape {
  return numClasses === undefined
    ? { inDim: c.embDim, outDim: c.vocabSize, bias: false }
    : { inDim: c.embDim, outDim: numClasses, bias: true };
}

/** Every linear layer of GPTModel(config) by full name, in model order (nothing allocated). */
export function linearLayerShapes(c: GPTConfig, opts: ShapeOptions = {}): Map<string, LinearShape> {
  const out = new Map<string, LinearShape>();
  for (let i = 0; i < c.nLayers; i++) {
    for (const [name, s] of Object.entries(blockLinearShapes(c))) {
      out.set(`trf_blocks.${i}.${name}`, s);
    }
  }
  out.set("out_head", headShape(c, opts));
  return out;
}

/** A linear layer's parameters: `<name>.weight` [in, out] and, with a bias, `<name>.bias` [out]. */
function linearParams(out: Map<string, number[]>, name: string, s: LinearShape): void {
  out.set(`${name}.weight`, [s.inDim, s.outDim]);
  if (s.bias) out.set(`${name}.bias`, [s.outDim]);
}

/** The parameters of one block by their names in the block (`att.W_query.weight`, ...). */
export function blockParameterShapes(c: GPTConfig): Map<string, number[]> {
  const out = new Map<string, number[]>();
  for (const [name, s] of Object.entries(blockLinearShapes(c))) linearParams(out, name, s);
  for (const n of BLOCK_NORMS) {
    out.set(`${n}.scale`, [c.embDim]);
    out.set(`${n}.shift`, [c.embDim]);
  }
  return out;
}

/** The shape of every parameter of GPTModel(config), by the book's state_dict names, in order. */
export function parameterShapes(c: GPTConfig, opts: ShapeOptions = {}): Map<string, number[]> {
  const e = c.embDim, shapes = new Map<string, number[]>();
  shapes.set("tok_emb.weight", [c.vocabSize, e]);
  shapes.set("pos_emb.weight", [c.contextLength, e]);
  const block = blockParameterShapes(c);
  for (let i = 0; i < c.nLayers; i++) {
    for (const [name, s] of block) shapes.set(`trf_blocks.${i}.${name}`, s);
  }
  shapes.set("final_norm.scale", [e]);
  shapes.set("final_norm.shift", [e]);
  linearParams(shapes, "out_head", headShape(c, opts));
  return shapes;
}

/** Parameter counts as the book prints them (chapter 4.6). */
export interface ParamCounts {
  totalParams: number;
  /** Without the output head, i.e. with the head tied to the token embedding (GPT-2's layout). */
  tiedParams: number;
  /** Size of all parameters as float32, in MB (1 MB = 1024 * 1024 bytes, as the book computes). */
  sizeMB: number;
}

/** Counts parameters from the shapes alone, without allocating the model. */
export function countParams(c: GPTConfig): ParamCounts {
  let total = 0;
  for (const shape of parameterShapes(c).values()) total += shape.reduce((a, b) => a * b, 1);
  const h = headShape(c), head = h.inDim * h.outDim;
  return {
    totalParams: total,
    tiedParams: total - head,
    sizeMB: Math.round((total * 4) / (1024 * 1024) * 100) / 100,
  };
}
