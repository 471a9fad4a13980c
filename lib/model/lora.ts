/**
 * LoRA, low-rank adaptation (appendix E, exercise 7.4): a frozen `Linear` plus a trainable
 * low-rank update, `y = x W + b + scale * (x A B)`, with A [inDim, rank] and B [rank, outDim].
 * B starts at zero, so a model with fresh LoRA layers computes exactly what the base model does.
 *
 * The book's steps, with this module's names:
 *
 * ```ts
 * import { countTrainable, freezeAll, replaceLinearWithLora } from "./lora.ts";
 * countTrainable(model);                                  // 124,441,346 (GPT-2 124M, 2 classes)
 * freezeAll(model);                                       // 0
 * replaceLinearWithLora(model, { rank: 16, alpha: 16 });  // 2,666,528 trainable
 * ```
 *
 * Then `mergeLora` folds the update back into plain weights (a normal GPTModel that
 * `saveCheckpoint` writes in the HF layout), and `saveAdapter` / `loadAdapter` keep only the A/B
 * matrices (a PEFT-like `adapter_config.json` + `adapter_model.safetensors`).
 *
 * **Scaling, and an erratum.** The printed book (and its exercise 7.4 solution) multiplies the
 * update by `alpha`; the book's repository was corrected to `alpha / rank`, which is what the LoRA
 * paper and Hugging Face PEFT use and our default (`scaling: "alpha/rank"`). With the book's
 * rank 16 / alpha 16 the printed version scales the update 16 times more; `scaling: "alpha"`
 * reproduces it. Parameter counts do not depend on it. `"alpha/sqrt(rank)"` is rsLoRA (Kalajdzievski
 * 2023, PEFT's `use_rslora`), which keeps the update's size stable as the rank grows.
 * @module
 */
import { join } from "node:path";
import * as tf from "@tensorflow/tfjs";
import { type GPTConfig, parameterShapes } from "./config.ts";
import { UserError } from "../util/errors.ts";
import { exists, writeTextAtomic } from "../util/fs.ts";
import { GPTModel } from "./gpt.ts";
import { dropout, Linear, type LinearLike, Module, SeedStream } from "./nn.ts";
import { readSafetensors, type TensorMap, writeSafetensors } from "../io/safetensors.ts";

/** How `alpha` turns into the factor of the update: see the module notes (erratum). */
export type LoraScaling = "alpha/rank" | "alpha" | "alpha/sqrt(rank)";
/** The scaling rules, default first. */
export const LORA_SCALINGS: readonly LoraScaling[] = ["alpha/rank", "alpha", "alpha/sqrt(rank)"];

/** Options of a LoRA layer. */
export interface LoRAOptions {
  /**
   * `"alpha/rank"` (default; the book's repository, the LoRA paper, PEFT) or `"alpha"` (the
   * printed book and the exercise 7.4 script: an erratum, kept to reproduce them).
   */
  scaling?: LoraScaling;
  /** Dropout on the LoRA branch's input, as PEFT's `lora_dropout` (default 0: the book has none). */
  dropout?: number;
  /** Seed of A's initial values and of the dropout masks (default 123). */
  seed?: number;
}

/** The factor of the update: alpha / rank, alpha (the printed book's erratum), or rsLoRA's alpha / sqrt(rank). */
export function loraScale(
  rank: number,
  alpha: number,
  scaling: LoraScaling = "alpha/rank",
): number {
  if (scaling === "alpha/sqrt(rank)") return alpha / Math.sqrt(rank);
  return scaling === "alpha" ? alpha : alpha / rank;
}

/**
 * `--lora-targets`: `all-linear` (every Linear, the book), `all-but-head`, a regular expression
 * written `/.../` that must match a whole layer name (e.g. `/.*att\.W_(query|value)/`), or a
 * comma-separated list of names or block-relative suffixes (`att.W_query,att.W_value`).
 */
export function parseLoraTargets(text: string): LoraTargets {
  const t = text.trim();
  if (t === "all-linear" || t === "all") return "all";
  if (t === "all-but-head") return "all-but-head";
  const re = /^\/(.+)\/$/.exec(t);
  if (re) {
    let pattern: RegExp;
    try {
      pattern = new RegExp(`^(?:${re[1]})$`);
    } catch (err) {
      throw new UserError(`--lora-targets ${t}: ${(err as Error).message}`);
    }
    return (name: string) => pattern.test(name);
  }
  const list = t.split(",").map((x) => x.trim()).filter(Boolean);
  if (list.length === 0) throw new UserError("--lora-targets is empty");
  return list;
}

function checkLoraArgs(rank: number, alpha: number, o: LoRAOptions): void {
  if (!Number.isInteger(rank) || rank <= 0) {
    throw new UserError(`LoRA rank must be a positive integer (got ${rank})`);
  }
  if (!(Number.isFinite(alpha) && alpha > 0)) {
    throw new UserError(`LoRA alpha must be a positive number (got ${alpha})`);
  }
  if (o.scaling !== undefined && !LORA_SCALINGS.includes(o.scaling)) {
    throw new UserError(
      `LoRA scaling must be one of ${
        LORA_SCALINGS.map((s) => `"${s}"`).join(", ")
      } (got "${o.scaling}")`,
    );
  }
  const d = o.dropout ?? 0;
  if (!(d >= 0 && d < 1)) throw new UserError(`LoRA dropout must be in [0, 1) (got ${d})`);
}

/**
 * The book's `LoRALayer`: `scale * (x @ A @ B)`.
 *
 * A is drawn as `torch.nn.init.kaiming_uniform_(A, a=sqrt(5))` does on the book's A of shape
 * (in_dim, rank): torch takes fan_in from dimension 1, i.e. `rank` (not in_dim), so the bound is
 * sqrt(6 / ((1 + 5) * rank)) = 1 / sqrt(rank), 0.25 for rank 16. B is zeros.
 */
export class LoRALayer extends Module {
  readonly A: tf.Variable;
  readonly B: tf.Variable;
  /** The factor applied to x A B. */
  readonly scale: number;
  readonly scaling: LoraScaling;
  readonly dropout: number;
  readonly #dropSeeds: SeedStream;

  constructor(
    readonly inDim: number,
    readonly outDim: number,
    readonly rank: number,
    readonly alpha: number,
    opts: LoRAOptions = {},
  ) {
    super();
    checkLoraArgs(rank, alpha, opts);
    const { scaling = "alpha/rank", dropout = 0, seed = 123 } = opts;
    this.scaling = scaling;
    this.dropout = dropout;
    this.scale = loraScale(rank, alpha, scaling);
    this.#dropSeeds = new SeedStream(seed + 1);
    const bound = kaimingUniformBound([inDim, rank], Math.sqrt(5));
    this.A = this.addParam("A", tf.randomUniform([inDim, rank], -bound, bound, "float32", seed));
    this.B = this.addParam("B", tf.zeros([rank, outDim]));
  }

  /** x: [..., inDim] -> scale * (x A B): [..., outDim]. */
  apply(x: tf.Tensor): tf.Tensor {
    return tf.tidy(() => {
      const shape = x.shape;
      let x2 = x.reshape([-1, this.inDim]);
      x2 = dropout(x2, this.dropout, this.training, this.#dropSeeds);
      // ((x A) * scale) B: two thin products instead of the [inDim, outDim] matrix A B, and the
      // scale applied to the [N, rank] tensor, not to the [N, outDim] one (the vocabulary-wide
      // head's output would otherwise be copied once more).
      const y = tf.matMul(tf.mul(tf.matMul(x2, this.A), this.scale), this.B);
      return y.reshape([...shape.slice(0, -1), this.outDim]);
    });
  }

  /** The update of the weight, scale * A B: [inDim, outDim] (what `mergeLora` adds). */
  delta(): tf.Tensor2D {
    return tf.tidy(() => tf.mul(tf.matMul(this.A, this.B), this.scale) as tf.Tensor2D);
  }
}

/**
 * The bound of torch's `kaiming_uniform_(w, a)` (leaky_relu gain, mode fan_in) for a tensor of
 * `shape` in torch's layout: fan_in = shape[1] (times the receptive field for rank > 2).
 */
export function kaimingUniformBound(shape: readonly number[], a: number): number {
  const fanIn = shape[1] * shape.slice(2).reduce((p, s) => p * s, 1);
  return Math.sqrt(6 / ((1 + a * a) * fanIn));
}

/** The book's `LinearWithLoRA`: the original layer plus a LoRA branch, children `linear`, `lora`. */
export class LinearWithLoRA extends Module implements LinearLike {
  readonly inDim: number;
  readonly outDim: number;

  constructor(linear: Linear, rank: number, alpha: number, opts: LoRAOptions = {}) {
    super();
    this.inDim = linear.inDim;
    this.outDim = linear.outDim;
    this.addChild("linear", linear);
    this.addChild("lora", new LoRALayer(linear.inDim, linear.outDim, rank, alpha, opts));
  }

  /** The wrapped (usually frozen) layer. */
  get linear(): Linear {
    return this.child<Linear>("linear");
  }

  /** The trainable low-rank branch. */
  get lora(): LoRALayer {
    return this.child<LoRALayer>("lora");
  }

  apply(x: tf.Tensor): tf.Tensor {
    return tf.tidy(() => tf.add(this.linear.apply(x), this.lora.apply(x)));
  }
}

// ---------------------------------------------------------------------------------------------
// Choosing layers

/**
 * Which linear layers get LoRA: `"all"` (the book: every Linear, the output head included),
 * `"all-but-head"`, a list of names, or a predicate on the full layer name. A listed name matches
 * a layer whose full name equals it or ends with "." + it (PEFT's `target_modules` rule): `"W_query"`,
 * `"att.out_proj"`, `"ff.layers.0"`, `"out_head"`, `"trf_blocks.3.att.W_value"`.
 */
export type LoraTargets = "all" | "all-but-head" | readonly string[] | ((name: string) => boolean);

/** Options of `replaceLinearWithLora`. */
export interface ReplaceLinearOptions extends LoRAOptions {
  rank: number;
  alpha: number;
  /** Default "all", as the book. */
  targets?: LoraTargets;
}

/** True when layer `name` matches the target string `t` (equal, or ends with "." + t). */
function matchesTarget(name: string, t: string): boolean {
  return name === t || name.endsWith("." + t);
}

/**
 * The layer names (out of `names`) that `targets` selects. A listed target that matches no layer,
 * or a selection that is empty, is a UserError listing the names that exist.
 */
export function selectTargets(names: readonly string[], targets: LoraTargets = "all"): string[] {
  const known = () => {
    const short = [...new Set(names.map(shortName))];
    return `the linear layers are ${short.join(", ")}` +
      (names.length > short.length
        ? ` (in every block: trf_blocks.0.${short.find((s) => s !== "out_head") ?? ""}, ...)`
        : "");
  };
  let picked: string[];
  if (targets === "all") picked = [...names];
  else if (targets === "all-but-head") picked = names.filter((n) => n !== "out_head");
  else if (typeof targets === "function") picked = names.filter((n) => targets(n));
  else if (Array.isArray(targets)) {
    if (targets.length === 0) throw new UserError("LoRA targets: the list is empty");
    for (const t of targets) {
      if (typeof t !== "string" || !names.some((n) => matchesTarget(n, t))) {
        throw new UserError(`LoRA target "${t}" matches no linear layer; ${known()}`);
      }
    }
    picked = names.filter((n) => targets.some((t) => matchesTarget(n, t)));
  } else {
    throw new UserError(
      `LoRA targets must be "all", "all-but-head", a list of layer names or a predicate (got ${
        JSON.stringify(targets)
      })`,
    );
  }
  if (picked.length === 0) throw new UserError(`LoRA targets select no linear layer; ${known()}`);
  return picked;
}

/** `trf_blocks.3.att.W_query` -> `att.W_query`; `out_head` stays. */
function shortName(name: string): string {
  return name.replace(/^trf_blocks\.\d+\./, "");
}

/** The plain `Linear` layers under `model` (not those wrapped in LoRA), by full name, in model order. */
export function linearLayers(model: Module): Map<string, Linear> {
  const out = new Map<string, Linear>();
  const modules = model.namedModules();
  for (const [name, m] of modules) {
    // The layer inside a LinearWithLoRA is already taken.
    const parent = modules.get(name.slice(0, Math.max(0, name.lastIndexOf("."))));
    if (m instanceof Linear && !(parent instanceof LinearWithLoRA)) out.set(name, m);
  }
  return out;
}

/** The LoRA-wrapped layers under `model`, by full name, in model order. */
export function loraLayers(model: Module): Map<string, LinearWithLoRA> {
  const out = new Map<string, LinearWithLoRA>();
  for (const [name, m] of model.namedModules()) if (m instanceof LinearWithLoRA) out.set(name, m);
  return out;
}

/** Sets a module by its dotted name (its parent must exist). */
function setModule(root: Module, name: string, module: Module): void {
  const dot = name.lastIndexOf(".");
  const parent = dot < 0 ? root : root.namedModules().get(name.slice(0, dot));
  if (!parent) throw new Error(`no module "${name.slice(0, dot)}"`);
  parent.setChild(dot < 0 ? name : name.slice(dot + 1), module);
}

/**
 * The book's `replace_linear_with_lora(model, rank, alpha)`: wraps every `Linear` (out_head
 * included) in a `LinearWithLoRA`, or only the `targets`. The new A/B are trainable; freeze the
 * model first (`freezeAll`) so that they are the only trainable parameters, as the book does.
 * Each layer's A gets its own seed from `seed`. Returns the names of the wrapped layers.
 * Throws a UserError for rank/alpha <= 0, targets that match nothing, or a model that already
 * has LoRA layers.
 */
export function replaceLinearWithLora(model: Module, opts: ReplaceLinearOptions): string[] {
  const { rank, alpha, targets = "all", seed = 123, ...rest } = opts;
  checkLoraArgs(rank, alpha, rest);
  const existing = [...loraLayers(model).keys()];
  if (existing.length > 0) {
    throw new UserError(
      `the model already has LoRA layers (${
        existing[0]
      }, ...); merge them (mergeLora) or start from the base model`,
    );
  }
  const layers = linearLayers(model);
  const picked = selectTargets([...layers.keys()], targets);
  const seeds = new SeedStream(seed);
  for (const name of picked) {
    setModule(
      model,
      name,
      new LinearWithLoRA(layers.get(name)!, rank, alpha, {
        ...rest,
        seed: seeds.next(),
      }),
    );
  }
  return picked;
}

/** Freezes every parameter (the book's `for param in model.parameters(): param.requires_grad = False`). */
export function freezeAll(model: Module): void {
  for (const v of model.namedParameters().values()) v.trainable = false;
}

/** Number of trainable parameters (`sum(p.numel() for p in model.parameters() if p.requires_grad)`). */
export function countTrainable(model: Module): number {
  let n = 0;
  for (const v of model.namedParameters().values()) if (v.trainable) n += v.size;
  return n;
}

/**
 * Chapter 6's classification head: `model.out_head = Linear(embDim, numClasses)` (with bias), in
 * place of the vocabulary-wide head. The old head's memory is freed. Returns the new head.
 */
export function replaceHeadWithClassifier(
  model: GPTModel,
  numClasses: number,
  { seed = 123 }: { seed?: number } = {},
): Linear {
  if (!Number.isInteger(numClasses) || numClasses <= 0) {
    throw new UserError(`numClasses must be a positive integer (got ${numClasses})`);
  }
  const old = model.child("out_head");
  const head = new Linear(model.config.embDim, numClasses, { bias: true, seed });
  model.setChild("out_head", head);
  old.dispose();
  return head;
}

// ---------------------------------------------------------------------------------------------
// Counting from shapes alone

/** A linear layer's shape. */
export interface LinearShape {
  inDim: number;
  outDim: number;
  bias: boolean;
}

/** Options of the shape-only counts. */
export interface ShapeCountOptions {
  /** Chapter 6: the head is Linear(embDim, numClasses) with bias instead of [embDim, vocab]. */
  numClasses?: number;
}

/** Every linear layer of GPTModel(config) by name, from the config alone (nothing allocated). */
export function linearLayerShapes(
  config: GPTConfig,
  { numClasses }: ShapeCountOptions = {},
): Map<string, LinearShape> {
  const e = config.embDim, out = new Map<string, LinearShape>();
  for (let i = 0; i < config.nLayers; i++) {
    const p = `trf_blocks.${i}.`;
    for (const w of ["W_query", "W_key", "W_value"]) {
      out.set(`${p}att.${w}`, { inDim: e, outDim: e, bias: config.qkvBias });
    }
    out.set(`${p}att.out_proj`, { inDim: e, outDim: e, bias: true });
    out.set(`${p}ff.layers.0`, { inDim: e, outDim: 4 * e, bias: true });
    out.set(`${p}ff.layers.2`, { inDim: 4 * e, outDim: e, bias: true });
  }
  out.set(
    "out_head",
    numClasses === undefined
      ? { inDim: e, outDim: config.vocabSize, bias: false }
      : { inDim: e, outDim: numClasses, bias: true },
  );
  return out;
}

/** What `countLoraParams` returns. */
export interface LoraParamCounts {
  /** Parameters of the base model (all trainable before freezing). */
  baseParams: number;
  /** Parameters the LoRA layers add (the only trainable ones after freeze + replace). */
  loraParams: number;
  /** Number of wrapped layers. */
  layers: number;
}

/**
 * The book's parameter counts of exercise 7.4 / appendix E from the config alone, so that
 * gpt2-medium (1.6 GB of float32) need not be built: each wrapped Linear(in, out) adds
 * rank * (in + out) parameters.
 */
export function countLoraParams(
  config: GPTConfig,
  opts: ShapeCountOptions & { rank: number; targets?: LoraTargets },
): LoraParamCounts {
  if (!Number.isInteger(opts.rank) || opts.rank <= 0) {
    throw new UserError(`LoRA rank must be a positive integer (got ${opts.rank})`);
  }
  const shapes = parameterShapes(config);
  if (opts.numClasses !== undefined) {
    shapes.set("out_head.weight", [config.embDim, opts.numClasses]);
    shapes.set("out_head.bias", [opts.numClasses]);
  }
  let baseParams = 0;
  for (const s of shapes.values()) baseParams += s.reduce((a, b) => a * b, 1);
  const layers = linearLayerShapes(config, opts);
  const picked = selectTargets([...layers.keys()], opts.targets ?? "all");
  let loraParams = 0;
  for (const name of picked) {
    const l = layers.get(name)!;
    loraParams += opts.rank * (l.inDim + l.outDim);
  }
  return { baseParams, loraParams, layers: picked.length };
}

// ---------------------------------------------------------------------------------------------
// Merging

/**
 * A plain GPTModel whose Linear weights are `W + scale * A B` (biases and every other parameter
 * copied): the same logits as the LoRA model, no LoRA cost at inference, and `saveCheckpoint`
 * writes it in the HF layout. The LoRA model is left as it was. A classification head is kept.
 */
export function mergeLora(model: GPTModel): GPTModel {
  const merged = new GPTModel(model.config);
  const head = model.child<LinearLike>("out_head");
  const headLinear = head instanceof LinearWithLoRA ? head.linear : head as Linear;
  if (headLinear.outDim !== model.config.vocabSize || headLinear.bias !== undefined) {
    replaceHeadWithClassifier(merged, headLinear.outDim);
  }
  const source = new Map<string, tf.Tensor>();
  const keep: tf.Tensor[] = [];
  for (const [name, p] of model.namedParameters()) {
    if (!/\.(linear|lora)\.[^.]+$/.test(name)) source.set(name, p);
  }
  for (const [name, layer] of loraLayers(model)) {
    const w = tf.tidy(() => tf.add(layer.linear.weight, layer.lora.delta()));
    keep.push(w);
    source.set(`${name}.weight`, w);
    if (layer.linear.bias) source.set(`${name}.bias`, layer.linear.bias);
  }
  try {
    for (const [name, v] of merged.namedParameters()) {
      const t = source.get(name);
      if (!t) throw new Error(`mergeLora: no value for "${name}"`);
      v.assign(t);
    }
  } finally {
    tf.dispose(keep);
  }
  merged.dropSeeds.counter = model.dropSeeds.counter;
  merged.train(model.training);
  return merged;
}

// ---------------------------------------------------------------------------------------------
// Adapters: only the A/B matrices, PEFT-like files

/** File names of an adapter folder (PEFT's). */
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
    if (/\.lora\.(A|B)$/.test(name)) continue;
    out.set(name.replace(/\.linear\.(weight|bias)$/, ".$1"), v);
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
  const head = model.child<LinearLike>("out_head");
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
  let c: AdapterConfig;
  try {
    c = JSON.parse(await Deno.readTextFile(path));
  } catch (err) {
    throw new UserError(`${path}: not valid JSON (${(err as Error).message})`);
  }
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
    for (const [name, v] of model.namedParameters()) v.trainable = /\.lora\.(A|B)$/.test(name);
  }
  return c;
}
