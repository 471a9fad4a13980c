/**
 * Fast kernels for tfjs' pure-JS "cpu" backend.
 *
 * `registerFastKernels()` replaces the cpu backend's hottest kernels for a GPT training step
 * (matrix products through a system BLAS, elementwise/broadcast ops, reductions, softmax,
 * transposes, the embedding gather and its gradient: overrides/) and adds the fused ops'
 * kernels (fused/, one file per op: cross-entropy without a one-hot, in-place AdamW, LayerNorm,
 * GELU; names in names.ts). Each replaced kernel handles the common cases and calls the stock
 * kernel for the rest, so results match the stock kernels (to float32 rounding). Row softmax,
 * cross-entropy and AdamW run in WebAssembly SIMD (simd.ts); large outputs come from a pool of
 * recycled arrays (pool.ts) instead of fresh, page-faulting memory.
 *
 * Off when the environment has `LLM_FAST_KERNELS=0`. Without a BLAS (or without
 * `--allow-ffi`) everything but the matrix products is still registered; `LLM_SIMD=0` keeps the
 * JS loops instead of WebAssembly SIMD. `LLM_FAST_KERNELS_DEBUG=1` prints the first stock
 * fallbacks of each kernel (with shapes) to stderr; `fastKernelStats()` counts them.
 */
import * as tf from "@tensorflow/tfjs";
import { type Blas, loadBlas } from "./overrides/blas.ts";
import { cpuOverrides } from "./overrides/mod.ts";
import { adamwOp } from "./fused/adamw.ts";
import { causalSoftmaxOp } from "./fused/causal_softmax.ts";
import { crossEntropyOp } from "./fused/cross_entropy.ts";
import { dropoutOp } from "./fused/dropout.ts";
import { geluOp } from "./fused/gelu.ts";
import { layerNormOp } from "./fused/layernorm.ts";
import type { FastKernel, FusedOp, KernelArgs } from "./util.ts";
import { installPool, uninstallPool } from "./pool.ts";
import { simdRows } from "./simd.ts";

export * from "./names.ts";
export { adamwReference, type AdamWStep } from "./fused/adamw.ts";
export { sparseXentReference } from "./fused/cross_entropy.ts";
export { type Blas, loadBlas } from "./overrides/blas.ts";
export { clearPool, poolStats, setPoolLimit } from "./pool.ts";
export { setSimdEnabled } from "./simd.ts";

/** The fused ops (one file each under fused/); adding one is one line here. */
const FUSED_OPS: FusedOp[] = [
  crossEntropyOp,
  adamwOp,
  layerNormOp,
  geluOp,
  dropoutOp,
  causalSoftmaxOp,
];

/** What registerFastKernels did. */
export interface FastKernelStatus {
  /** Whether the kernels are registered on the cpu backend. */
  enabled: boolean;
  /** One line: why not, or what (BLAS library and threads). */
  reason: string;
}

const BACKEND = "cpu";

interface Registered {
  status: FastKernelStatus;
  /** Stock kernel configs that were replaced (null: the kernel did not exist before). */
  replaced: Map<string, tf.KernelConfig | null>;
}

let state: Registered | null = null;

/** Per kernel: calls the fast path handled, and calls passed on to the stock kernel. */
const counts = new Map<string, { fast: number; stock: number }>();

/**
 * How often each replaced kernel ran its fast path or fell back to the stock kernel since
 * registration (a stock fallback on a big tensor is a slow spot worth a fast path).
 */
export function fastKernelStats(): Record<string, { fast: number; stock: number }> {
  return Object.fromEntries([...counts].map(([k, v]) => [k, { ...v }]));
}

/** Names of the kernels a call to registerFastKernels replaced or added (empty when off). */
export function fastKernelNames(): string[] {
  return state?.status.enabled ? [...state.replaced.keys()] : [];
}

function envDisabled(): boolean {
  try {
    return Deno.env.get("LLM_FAST_KERNELS") === "0";
  } catch {
    return false; // no --allow-env: default on
  }
}

function envFlag(name: string): boolean {
  try {
    return (Deno.env.get(name) ?? "0") !== "0";
  } catch {
    return false;
  }
}

/** Options of registerFastKernels. */
export interface RegisterOptions {
  /** The BLAS to use (null: none, matrix products stay stock); default: `loadBlas()`. */
  blas?: Blas | null;
  /** Register again even if done before (restores the stock kernels first). */
  force?: boolean;
}

/**
 * Registers the fast kernels on tfjs' "cpu" backend (idempotent: later calls return the first
 * result). Call before running ops; works whichever backend is active, but only cpu uses them.
 */
export function registerFastKernels(options: RegisterOptions = {}): FastKernelStatus {
  if (state != null && !options.force) return state.status;
  if (state != null) restoreStockKernels();
  if (envDisabled()) {
    state = {
      status: { enabled: false, reason: "LLM_FAST_KERNELS=0" },
      replaced: new Map(),
    };
    return state.status;
  }
  if (tf.getKernelsForBackend(BACKEND).length === 0) {
    state = {
      status: { enabled: false, reason: "tfjs has no cpu backend registered" },
      replaced: new Map(),
    };
    return state.status;
  }
  const blas = options.blas !== undefined ? options.blas : loadBlas();
  const debug = envFlag("LLM_FAST_KERNELS_DEBUG");
  installPool(tf.findBackend(BACKEND));
  const replaced = new Map<string, tf.KernelConfig | null>();
  const replace = (name: string, fast: FastKernel) => {
    const stock = tf.getKernel(name, BACKEND) ?? null;
    replaced.set(name, stock);
    if (stock != null) tf.unregisterKernel(name, BACKEND);
    const stockFunc = stock?.kernelFunc;
    const count = { fast: 0, stock: 0 };
    counts.set(name, count);
    tf.registerKernel({
      ...(stock ?? {}),
      kernelName: name,
      backendName: BACKEND,
      kernelFunc: (args: KernelArgs) => {
        const out = fast(args);
        if (out != null) {
          count.fast++;
          return out;
        }
        count.stock++;
        if (debug && count.stock <= 3) {
          const ins = Object.entries(args.inputs).map(([k, t]) => `${k}:${t?.dtype}[${t?.shape}]`);
          console.error(`fast kernels: ${name} falls back to stock for ${ins.join(" ")}`);
        }
        if (stockFunc == null) throw new Error(`${name}: case not handled by the fast kernel`);
        // deno-lint-ignore no-explicit-any
        return stockFunc(args as any);
      },
    } as tf.KernelConfig);
  };

  for (const [name, fast] of cpuOverrides(blas)) replace(name, fast);
  for (const op of FUSED_OPS) {
    for (const [name, fast] of Object.entries(op.kernels[BACKEND] ?? {})) replace(name, fast);
    for (const g of op.gradients ?? []) {
      if (tf.getGradient(g.kernelName) == null) tf.registerGradient(g);
    }
  }

  const how =
    (blas == null
      ? "no BLAS found: matrix products stay on the stock kernel"
      : `BLAS ${blas.path}${blas.threads != null ? `, ${blas.threads} threads` : ""}`) +
    (simdRows() == null ? "; no WebAssembly SIMD" : "; WebAssembly SIMD");
  state = { status: { enabled: true, reason: how }, replaced };
  return state.status;
}

/**
 * Puts the stock kernels back and removes the added ones (tests compare the two). The fused
 * ops' tape gradients stay registered; they are only used when their kernels run.
 */
export function restoreStockKernels(): void {
  if (state == null) return;
  for (const [name, stock] of state.replaced) {
    tf.unregisterKernel(name, BACKEND);
    if (stock != null) tf.registerKernel(stock);
  }
  uninstallPool();
  counts.clear();
  state = null;
}

let webgpuNames: string[] | null = null;

/**
 * Registers the fused ops' WGSL kernels on tfjs' "webgpu" backend (idempotent), so that the
 * library's ops take their fused path there; off with `LLM_FAST_KERNELS=0`. The stock webgpu
 * kernels are not replaced; the status names the kernels.
 */
export function registerWebGpuKernels(): FastKernelStatus {
  if (envDisabled()) return { enabled: false, reason: "LLM_FAST_KERNELS=0" };
  if (webgpuNames == null) {
    webgpuNames = [];
    for (const op of FUSED_OPS) {
      for (const [name, kernel] of Object.entries(op.kernels.webgpu ?? {})) {
        if (tf.getKernel(name, "webgpu") != null) continue;
        tf.registerKernel({
          kernelName: name,
          backendName: "webgpu",
          kernelFunc: (args: KernelArgs) => {
            const out = kernel(args);
            if (out == null) throw new Error(`${name}: case not handled by the webgpu kernel`);
            return out;
          },
        } as tf.KernelConfig);
        webgpuNames.push(name);
      }
      for (const g of op.gradients ?? []) {
        if (tf.getGradient(g.kernelName) == null) tf.registerGradient(g);
      }
    }
  }
  return { enabled: true, reason: `fused WGSL kernels: ${webgpuNames.join(", ")}` };
}

/** Removes the kernels registerWebGpuKernels added (tests compare fused and composite paths). */
export function unregisterWebGpuKernels(): void {
  for (const name of webgpuNames ?? []) tf.unregisterKernel(name, "webgpu");
  webgpuNames = null;
}
