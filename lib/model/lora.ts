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
 * Then `mergeLora` (./lora_merge.ts) folds the update back into plain weights (a normal GPTModel
 * that `saveCheckpoint` writes in the HF layout), `countLoraParams` (./lora_counts.ts) counts from
 * the config alone, and `saveAdapter` / `loadAdapter` (../io/adapter.ts) keep only the A/B
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
import * as tf from "@tensorflow/tfjs";
import { UserError } from "../util/errors.ts";
import { dropout, Linear, type LinearLike, Module, SeedStream } from "./nn.ts";

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
  /** The wrapped (usually frozen) layer. */
  readonly linear: Linear;
  /** The trainable low-rank branch. */
  readonly lora: LoRALayer;

  constructor(linear: Linear, rank: number, alpha: number, opts: LoRAOptions = {}) {
    super();
    this.inDim = linear.inDim;
    this.outDim = linear.outDim;
    this.linear = this.addChild("linear", linear);
    this.lora = this.addChild(
      "lora",
      new LoRALayer(linear.inDim, linear.outDim, rank, alpha, opts),
    );
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
export function matchesTarget(name: string, t: string): boolean {
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
export function shortName(name: string): string {
  return name.replace(/^trf_blocks\.\d+\./, "");
}

/** True for a LoRA matrix's parameter name (`<layer>.lora.A`, `<layer>.lora.B`). */
export function isLoraParam(name: string): boolean {
  return /\.lora\.(A|B)$/.test(name);
}

/**
 * A parameter's name in the base model: a wrapped layer's `<layer>.linear.weight` (or `.bias`)
 * becomes `<layer>.weight`; every other name is returned as it is.
 */
export function baseParamName(name: string): string {
  return name.replace(/\.linear\.(weight|bias)$/, ".$1");
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
  model.setTrainable(false);
}

/** Number of trainable parameters (`sum(p.numel() for p in model.parameters() if p.requires_grad)`). */
export function countTrainable(model: Module): number {
  return model.numParams({ trainableOnly: true });
}

/** The three counts of exercise 7.4, and the wrapped layers. */
export interface LoraCounts {
  /** Trainable parameters of the loaded model. */
  before: number;
  /** After freezing every parameter: 0. */
  afterFreeze: number;
  /** After `replaceLinearWithLora`: the LoRA A/B matrices only. */
  lora: number;
  layers: string[];
}

/** Options of `applyLora`. */
export interface ApplyLoraOptions {
  /** Book: 16. */
  rank: number;
  /** Book: 16. */
  alpha: number;
  /** "alpha/rank" (default, the corrected book repository), "alpha" (the printed book), "alpha/sqrt(rank)" (rsLoRA). */
  scaling?: LoraScaling;
  /** Which linear layers get LoRA (default "all", as the book). */
  targets?: LoraTargets;
  /** Dropout on the LoRA branch (default 0, as the book). */
  dropout?: number;
  seed?: number;
}

/**
 * Exercise 7.4's steps: count the trainable parameters, freeze all (count again: 0), wrap every
 * Linear in LoRA (count the new trainable ones). Create the optimizer afterwards.
 */
export function applyLora(model: Module, opts: ApplyLoraOptions): LoraCounts {
  const before = countTrainable(model);
  freezeAll(model);
  const afterFreeze = countTrainable(model);
  const layers = replaceLinearWithLora(model, opts);
  return { before, afterFreeze, lora: countTrainable(model), layers };
}

/** The book's printout of the counts. */
export function formatLoraCounts(c: LoraCounts): string {
  const n = (x: number) => x.toLocaleString("en-US");
  return [
    `Total trainable parameters before: ${n(c.before)}`,
    `Total trainable parameters after: ${n(c.afterFreeze)}`,
    `Total trainable LoRA parameters: ${n(c.lora)}`,
  ].join("\n");
}
