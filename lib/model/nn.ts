/**
 * A minimal module system on TensorFlow.js, shaped like PyTorch's nn.Module: named parameters,
 * named sub-modules that can be replaced (LoRA swaps linears), and a train/eval flag.
 *
 * A module keeps its children as typed fields (`this.norm1 = this.addChild("norm1", ...)`, read as
 * `this.norm1`); the registration gives the book's parameter names (`trf_blocks.0.norm1.scale`),
 * and `setChild` swaps a child and its field together, as PyTorch's `setattr` does.
 */
import * as tf from "@tensorflow/tfjs";
import { dropoutMask } from "../kernels/fused/dropout.ts";
import { layerNorm } from "../kernels/fused/layernorm.ts";
import { gelu } from "../kernels/fused/gelu.ts";

export { dropoutMask } from "../kernels/fused/dropout.ts";
/** GELU, tanh approximation (the book's and GPT-2's "gelu_new"); fused where the backend can. */
export { gelu } from "../kernels/fused/gelu.ts";

/** A node of the model tree. Parameters are tf.Variables; `trainable` is the freeze flag. */
export abstract class Module {
  training = false;
  protected readonly ownParams = new Map<string, tf.Variable>();
  protected readonly children = new Map<string, Module>();

  /** Every parameter under this module, named like PyTorch's state_dict. */
  namedParameters(prefix = ""): Map<string, tf.Variable> {
    const out = new Map<string, tf.Variable>();
    for (const [name, v] of this.ownParams) out.set(prefix + name, v);
    for (const [name, child] of this.children) {
      for (const [n, v] of child.namedParameters(`${prefix}${name}.`)) out.set(n, v);
    }
    return out;
  }

  /** Every module under this one (itself first, as ""), like named_modules(). */
  namedModules(prefix = ""): Map<string, Module> {
    const out = new Map<string, Module>([[prefix.replace(/\.$/, ""), this]]);
    for (const [name, child] of this.children) {
      for (const [n, m] of child.namedModules(`${prefix}${name}.`)) out.set(n, m);
    }
    return out;
  }

  /**
   * Replaces a direct child: how LoRA swaps a Linear for a LinearWithLoRA. The typed field of the
   * same name (`model.out_head`) follows.
   */
  setChild(name: string, module: Module): void {
    if (!this.children.has(name)) {
      throw new Error(`${this.constructor.name} has no child "${name}" to replace`);
    }
    this.children.set(name, module);
    if (Object.hasOwn(this, name)) Reflect.set(this, name, module);
  }

  /** Switches dropout on (train) or off (eval) in this module and all below it. */
  train(on = true): this {
    for (const m of this.namedModules().values()) m.training = on;
    return this;
  }

  /** Eval mode: dropout off. */
  eval(): this {
    return this.train(false);
  }

  /** Freezes (or unfreezes) every parameter, like `param.requires_grad = False` for all. */
  setTrainable(on: boolean): void {
    for (const v of this.namedParameters().values()) v.trainable = on;
  }

  /** Number of parameters; `trainableOnly` counts those not frozen. */
  numParams({ trainableOnly = false } = {}): number {
    let n = 0;
    for (const v of this.namedParameters().values()) if (!trainableOnly || v.trainable) n += v.size;
    return n;
  }

  /** Frees every parameter's memory. */
  dispose(): void {
    for (const v of this.namedParameters().values()) v.dispose();
  }

  protected addParam(name: string, value: tf.Tensor, trainable = true): tf.Variable {
    const v = tf.variable(value, trainable);
    value.dispose();
    this.ownParams.set(name, v);
    return v;
  }

  protected addChild<T extends Module>(name: string, m: T): T {
    this.children.set(name, m);
    return m;
  }
}

/** A module that maps a tensor to a tensor: what `Sequential` chains. */
export interface Layer extends Module {
  apply(x: tf.Tensor): tf.Tensor;
}

/** Something that maps [..., inDim] to [..., outDim]: a Linear or a LoRA-wrapped one. */
export interface LinearLike extends Layer {
  readonly inDim: number;
  readonly outDim: number;
}

function isLayer(m: Module): m is Layer {
  return "apply" in m && typeof m.apply === "function";
}

/** PyTorch's `nn.Sequential`: layers applied in order, named "0", "1", ... */
export class Sequential extends Module implements Layer {
  readonly #layers: Layer[];
  constructor(...layers: Layer[]) {
    super();
    layers.forEach((l, i) => this.addChild(String(i), l));
    this.#layers = layers;
  }

  /** The layers in order. */
  get layers(): readonly Layer[] {
    return this.#layers;
  }

  override setChild(name: string, module: Module): void {
    if (!isLayer(module)) throw new Error(`Sequential: "${name}" must be a layer with apply()`);
    super.setChild(name, module);
    this.#layers[Number(name)] = module;
  }

  apply(x: tf.Tensor): tf.Tensor {
    return this.#layers.reduce((h, layer) => layer.apply(h), x);
  }
}

/** PyTorch's `nn.ModuleList`: modules named "0", "1", ..., fixed once built. */
export class ModuleList<T extends Module> extends Module {
  readonly items: readonly T[];
  constructor(items: T[]) {
    super();
    items.forEach((m, i) => this.addChild(String(i), m));
    this.items = items;
  }

  override setChild(name: string, _module?: Module): void {
    throw new Error(`ModuleList: item "${name}" cannot be replaced (replace modules inside it)`);
  }
}

/** The book's `GELU()` module (no parameters), for `Sequential`. */
export class GELU extends Module implements Layer {
  apply(x: tf.Tensor): tf.Tensor {
    return gelu(x);
  }
}

/** A source of distinct seeds, so that dropout masks repeat from run to run and resume exactly. */
export class SeedStream {
  constructor(public base: number, public counter = 0) {}
  next(): number {
    this.counter++;
    // Mix base and counter into a 31-bit seed (a simple integer hash; quality is ample for masks).
    let h = Math.imul(this.base ^ 0x9e3779b9, 0x85ebca6b) ^ Math.imul(this.counter, 0xc2b2ae35);
    h ^= h >>> 16;
    h = Math.imul(h, 0x7feb352d);
    h ^= h >>> 15;
    return h >>> 1;
  }
}

/** PyTorch's default Linear init: weight and bias from U(-1/sqrt(inDim), 1/sqrt(inDim)). */
export class Linear extends Module implements LinearLike {
  readonly weight: tf.Variable;
  readonly bias?: tf.Variable;
  constructor(
    readonly inDim: number,
    readonly outDim: number,
    { bias = true, seed = 0 }: { bias?: boolean; seed?: number } = {},
  ) {
    super();
    const bound = 1 / Math.sqrt(inDim);
    // Stored [inDim, outDim] (HF Conv1D layout): forward is x @ W, no transpose.
    this.weight = this.addParam(
      "weight",
      tf.randomUniform([inDim, outDim], -bound, bound, "float32", seed),
    );
    if (bias) {
      this.bias = this.addParam(
        "bias",
        tf.randomUniform([outDim], -bound, bound, "float32", seed + 1),
      );
    }
  }

  apply(x: tf.Tensor): tf.Tensor {
    return tf.tidy(() => {
      const shape = x.shape;
      const x2 = x.reshape([-1, this.inDim]);
      const y = this.bias
        ? tf.add(tf.matMul(x2, this.weight), this.bias)
        : tf.matMul(x2, this.weight);
      return y.reshape([...shape.slice(0, -1), this.outDim]);
    });
  }
}

/** nn.Embedding: rows drawn from N(0, 1) as PyTorch does. */
export class Embedding extends Module {
  readonly weight: tf.Variable;
  constructor(num: number, dim: number, { seed = 0 } = {}) {
    super();
    this.weight = this.addParam("weight", tf.randomNormal([num, dim], 0, 1, "float32", seed));
  }
  apply(ids: tf.Tensor): tf.Tensor {
    return embeddingLookup(this.weight, ids);
  }
}

/**
 * tf.gather with a scatter-add gradient. tfjs' own gradient of gather (UnsortedSegmentSum) loops
 * over all 50,257 vocabulary rows on the cpu backend; scatterND sums duplicates in one pass.
 */
export function embeddingLookup(weight: tf.Tensor, ids: tf.Tensor): tf.Tensor {
  const f = tf.customGrad(
    ((w: tf.Tensor, idx: tf.Tensor, save: tf.GradSaveFunc) => {
      save([idx]);
      const value = tf.gather(w, idx);
      const gradFunc = (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const [n, d] = [saved[0].size, w.shape[1]!];
        const rows = saved[0].reshape([n, 1]);
        return [tf.scatterND(rows, dy.reshape([n, d]), w.shape), tf.zerosLike(saved[0])];
      };
      return { value, gradFunc };
    }) as unknown as Parameters<typeof tf.customGrad>[0],
  );
  return f(weight, ids);
}

/** The book's LayerNorm: biased variance, eps 1e-5, learnable scale and shift. */
export class LayerNorm extends Module {
  readonly eps = 1e-5;
  readonly scale: tf.Variable;
  readonly shift: tf.Variable;
  constructor(dim: number) {
    super();
    this.scale = this.addParam("scale", tf.ones([dim]));
    this.shift = this.addParam("shift", tf.zeros([dim]));
  }
  apply(x: tf.Tensor): tf.Tensor {
    return layerNorm(x, this.scale, this.shift, this.eps);
  }
}

/**
 * Inverted dropout with a seed from the stream; identity in eval mode or at rate 0. The mask
 * (0 or 1 / (1 - rate)) comes from lib/kernels/fused/dropout.ts: tfjs' own tf.dropout draws its
 * uniforms through a much slower generator and needs four more kernels.
 */
export function dropout(
  x: tf.Tensor,
  rate: number,
  training: boolean,
  seeds: SeedStream,
): tf.Tensor {
  if (!training || rate === 0) return x;
  return tf.tidy(() => tf.mul(x, dropoutMask(x.shape, rate, seeds.next())));
}
