/**
 * AdamW with `torch.optim.AdamW` semantics (torch 1.13's `_single_tensor_adamw`), which tfjs lacks:
 *
 *   step += 1
 *   p *= 1 - lr * weightDecay                      (decoupled weight decay)
 *   m  = beta1 * m + (1 - beta1) * g
 *   v  = beta2 * v + (1 - beta2) * g * g
 *   p -= lr / (1 - beta1^step) * m / (sqrt(v) / sqrt(1 - beta2^step) + eps)
 *
 * Defaults are torch's: lr 1e-3, betas [0.9, 0.999], eps 1e-8, weightDecay 0.01 (the book passes
 * 0.1). Moments are tf.Variables updated in place, so the tensor count stays flat across steps.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { AdamW } from "./adamw.ts";
 * const params = new Map([["w", tf.variable(tf.ones([2, 2]))]]);
 * const opt = new AdamW(params, { lr: 4e-4, weightDecay: 0.1 });
 * const grads = new Map([["w", tf.fill([2, 2], 0.5)]]);
 * opt.step(grads); // updates params.get("w") in place; grads stay owned by the caller
 * tf.dispose([...grads.values()]);
 * ```
 * @module
 */
import * as tf from "@tensorflow/tfjs";
import { adamwUpdate } from "../kernels/fused/adamw.ts";
import { ADAMW } from "../kernels/names.ts";

/**
 * Name of an optional fused kernel (lib/kernels/fused/adamw.ts). When one is registered for the current backend (and
 * `useKernel` is not false) `step` calls it instead of the composite ops, with
 * inputs `{param, grad, m, v}` (float32, same shape) and attrs
 * `{lr, beta1, beta2, eps, weightDecay, step}` (`step` already incremented, >= 1); it must return
 * `[newParam, newM, newV]` computed exactly as the formula above.
 */
export const ADAMW_KERNEL = ADAMW;

/** Hyper-parameters of AdamW (torch's defaults). */
export interface AdamWOptions {
  /** Learning rate (default 1e-3). */
  lr?: number;
  /** Decay rates of the first and second moments (default [0.9, 0.999]). */
  betas?: [number, number];
  /** Added to the denominator (default 1e-8). */
  eps?: number;
  /** Decoupled weight decay (default 0.01, torch's; the book uses 0.1). */
  weightDecay?: number;
  /** Use a registered `LlmAdamW` kernel when there is one (default true). */
  useKernel?: boolean;
  /**
   * Which parameters get the weight decay (default: all, as the book). `decayMatricesOnly` is
   * nanoGPT's rule: tensors of rank >= 2 (matrices, embeddings), never biases or LayerNorm.
   */
  decay?: (name: string, shape: readonly number[]) => boolean;
}

/** nanoGPT's decay groups: decay matrices and embeddings (rank >= 2), not biases or norms. */
export function decayMatricesOnly(_name: string, shape: readonly number[]): boolean {
  return shape.length >= 2;
}

/** Gradients by parameter name; the optimizer reads them and never disposes them. */
export type NamedGrads = Map<string, tf.Tensor> | Record<string, tf.Tensor>;

/** A checkpointable copy of the optimizer state (moments as plain Float32Arrays). */
export interface AdamWStateDict {
  /** Number of `step()` calls so far. */
  step: number;
  lr: number;
  betas: [number, number];
  eps: number;
  weightDecay: number;
  /** Per parameter name: its own step count (torch keeps one per parameter) and moments. */
  state: Record<string, { step: number; shape: number[]; m: Float32Array; v: Float32Array }>;
}

interface ParamState {
  m: tf.Variable;
  v: tf.Variable;
  step: number;
  /** This parameter's weight decay (0 outside the decay group). */
  weightDecay: number;
}

/** AdamW over named tf.Variables (only the `trainable` ones get state and are updated). */
export class AdamW {
  lr: number;
  readonly betas: [number, number];
  readonly eps: number;
  readonly weightDecay: number;
  readonly useKernel: boolean;
  /** Number of `step()` calls so far. */
  stepCount = 0;
  readonly #params: Map<string, tf.Variable>;
  readonly #state = new Map<string, ParamState>();

  constructor(params: Map<string, tf.Variable>, opts: AdamWOptions = {}) {
    const { lr = 1e-3, betas = [0.9, 0.999], eps = 1e-8, weightDecay = 0.01, useKernel = true } =
      opts;
    const decay = opts.decay ?? (() => true);
    checkLr(lr);
    for (const b of betas) {
      if (!(b >= 0 && b < 1)) throw new RangeError(`AdamW betas must be in [0, 1) (got ${betas})`);
    }
    if (!(eps >= 0)) throw new RangeError(`AdamW eps must be >= 0 (got ${eps})`);
    if (!(weightDecay >= 0)) {
      throw new RangeError(`AdamW weightDecay must be >= 0 (got ${weightDecay})`);
    }
    this.lr = lr;
    this.betas = [betas[0], betas[1]];
    this.eps = eps;
    this.weightDecay = weightDecay;
    this.useKernel = useKernel;
    this.#params = new Map();
    for (const [name, p] of params) {
      if (!p.trainable) continue;
      this.#params.set(name, p);
      // Unnamed (tfjs variable names are global) and made inside tidy so the zeros are freed.
      const zeros = () => tf.tidy(() => tf.variable(tf.zeros(p.shape, "float32"), false));
      const wd = decay(name, p.shape) ? weightDecay : 0;
      this.#state.set(name, { m: zeros(), v: zeros(), step: 0, weightDecay: wd });
    }
  }

  /** Names of the parameters that get no weight decay (empty by default). */
  get noDecayNames(): string[] {
    return [...this.#state].filter(([, s]) => s.weightDecay === 0).map(([name]) => name);
  }

  /** Names of the parameters this optimizer updates. */
  get paramNames(): string[] {
    return [...this.#params.keys()];
  }

  /** Sets the learning rate of later steps (the book's `param_group["lr"] = lr`). */
  setLr(lr: number): void {
    checkLr(lr);
    this.lr = lr;
  }

  /**
   * One AdamW update of every parameter that has a gradient (parameters without one are skipped,
   * like torch's `p.grad is None`). `lr`, when given, is set first (and kept) as with `setLr`.
   * The gradients stay owned by the caller.
   */
  step(grads: NamedGrads, lr?: number): void {
    if (lr !== undefined) this.setLr(lr);
    const entries = grads instanceof Map ? [...grads.entries()] : Object.entries(grads);
    for (const [name] of entries) {
      if (!this.#state.has(name)) {
        throw new Error(
          `AdamW.step(): no trainable parameter named "${name}" was given to the optimizer`,
        );
      }
    }
    this.stepCount++;
    const [beta1, beta2] = this.betas;
    for (const [name, grad] of entries) {
      const p = this.#params.get(name)!, s = this.#state.get(name)!;
      if (!arraysEqual(grad.shape, p.shape)) {
        throw new Error(
          `AdamW.step(): gradient of "${name}" has shape [${grad.shape}], parameter [${p.shape}]`,
        );
      }
      s.step++;
      const h = { lr: this.lr, beta1, beta2, eps: this.eps, weightDecay: s.weightDecay };
      tf.tidy(() => {
        const [newP, newM, newV] = adamwUpdate(
          p,
          grad,
          s.m,
          s.v,
          { ...h, step: s.step },
          this.useKernel,
        );
        p.assign(newP);
        s.m.assign(newM);
        s.v.assign(newV);
      });
    }
  }

  /** A copy of the state for a checkpoint (the moments read back with `await data()`). */
  async stateDict(): Promise<AdamWStateDict> {
    const state: AdamWStateDict["state"] = {};
    for (const [name, s] of this.#state) {
      state[name] = {
        step: s.step,
        shape: [...s.m.shape],
        m: Float32Array.from((await s.m.data()) as Float32Array),
        v: Float32Array.from((await s.v.data()) as Float32Array),
      };
    }
    return {
      step: this.stepCount,
      lr: this.lr,
      betas: [...this.betas],
      eps: this.eps,
      weightDecay: this.weightDecay,
      state,
    };
  }

  /**
   * Restores a `stateDict()` (step counts, moments and lr; betas/eps/weightDecay stay as
   * constructed). Every parameter of this optimizer must be present with the same shape.
   */
  loadStateDict(sd: AdamWStateDict): void {
    for (const [name, s] of this.#state) {
      const saved = sd.state[name];
      if (!saved) throw new Error(`AdamW.loadStateDict(): no state for parameter "${name}"`);
      if (!arraysEqual(saved.shape, s.m.shape)) {
        throw new Error(
          `AdamW.loadStateDict(): "${name}" has shape [${saved.shape}] in the checkpoint, [${s.m.shape}] here`,
        );
      }
      const n = s.m.size;
      if (saved.m.length !== n || saved.v.length !== n) {
        throw new Error(`AdamW.loadStateDict(): moments of "${name}" do not have ${n} values`);
      }
    }
    for (const name of Object.keys(sd.state)) {
      if (!this.#state.has(name)) {
        throw new Error(
          `AdamW.loadStateDict(): checkpoint has state for unknown parameter "${name}"`,
        );
      }
    }
    for (const [name, s] of this.#state) {
      const saved = sd.state[name];
      tf.tidy(() => {
        s.m.assign(tf.tensor(saved.m, s.m.shape, "float32"));
        s.v.assign(tf.tensor(saved.v, s.v.shape, "float32"));
      });
      s.step = saved.step;
    }
    this.stepCount = sd.step;
    this.setLr(sd.lr);
  }

  /** Frees the moment variables. */
  dispose(): void {
    for (const s of this.#state.values()) {
      s.m.dispose();
      s.v.dispose();
    }
    this.#state.clear();
    this.#params.clear();
  }
}

function checkLr(lr: number): void {
  if (!(lr >= 0) || !Number.isFinite(lr)) {
    throw new RangeError(`AdamW lr must be a finite number >= 0 (got ${lr})`);
  }
}

function arraysEqual(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}
