/**
 * Chooses the TensorFlow.js backend: tfjs-node(-gpu) when installed, else WebGPU on a hardware
 * adapter, else the cpu backend with our fast kernels. `LLM_BACKEND` forces one.
 */
import * as tf from "@tensorflow/tfjs";
import { UserError } from "./util/errors.ts";
import { registerGroupedAddN } from "./webgpu/addn.ts";
import { setUpWebGPU, type WebGPUDeviceInfo } from "./webgpu/device.ts";

/** The backends this project knows. */
export const BACKENDS = ["tensorflow", "webgpu", "wasm", "cpu"] as const;
export type BackendName = typeof BACKENDS[number];

/** What `initBackend` chose, and why the others were skipped. */
export interface BackendInfo {
  name: BackendName;
  detail: string;
  skipped: string[];
  /** Largest tensor the device can bind, in bytes (WebGPU's maxStorageBufferBindingSize). */
  maxTensorBytes?: number;
}

let current: BackendInfo | undefined;

/** Options of initBackend. */
export interface InitBackendOptions {
  /** Force a backend (default: env LLM_BACKEND, else automatic). */
  backend?: string;
  /** Print the one-line report (default true). */
  log?: boolean;
}

/**
 * Picks and initialises the backend once; later calls return the first choice. The backend line
 * is printed once, by the first call that asks for it.
 */
export async function initBackend(opts: InitBackendOptions = {}): Promise<BackendInfo> {
  if (current) return logOnce(current, opts);
  const forced = opts.backend ?? Deno.env.get("LLM_BACKEND") ?? "";
  if (forced && !(BACKENDS as readonly string[]).includes(forced)) {
    throw new UserError(`LLM_BACKEND="${forced}" is not one of ${BACKENDS.join(", ")}`);
  }
  const order: BackendName[] = forced ? [forced as BackendName] : ["tensorflow", "webgpu", "cpu"];
  const skipped: string[] = [];
  for (const name of order) {
    const result = await TRY[name](Boolean(forced));
    if (typeof result === "string") {
      if (forced) throw new UserError(`backend ${name} is not available: ${result}`);
      skipped.push(`${name} (${result})`);
      continue;
    }
    current = { name, detail: result.detail, skipped, maxTensorBytes: result.maxTensorBytes };
    return logOnce(current, opts);
  }
  throw new Error("no tfjs backend could be initialised");
}

let logged = false;

/** Prints the backend line the first time a caller asks for it (a silent first call may precede). */
function logOnce(info: BackendInfo, opts: InitBackendOptions): BackendInfo {
  if ((opts.log ?? true) && !logged) {
    logged = true;
    console.error(describeBackend(info));
  }
  return info;
}

/** One line: which backend runs, and why the others were skipped. */
export function describeBackend(info: BackendInfo): string {
  const skipped = info.skipped.length ? `; skipped ${info.skipped.join(", ")}` : "";
  return `backend: ${info.name} (${info.detail})${skipped}`;
}

type Attempt = (forced: boolean) => Promise<{ detail: string; maxTensorBytes?: number } | string>;

const TRY: Record<BackendName, Attempt> = {
  async tensorflow() {
    // Only when the user installed it: importing an absent npm package would try to download it.
    for (const pkg of ["tfjs-node-gpu", "tfjs-node"]) {
      const dir = new URL(`../node_modules/@tensorflow/${pkg}/`, import.meta.url);
      try {
        await Deno.stat(dir);
      } catch {
        continue;
      }
      try {
        await import(`npm:@tensorflow/${pkg}@4.22.0`);
        if (await tf.setBackend("tensorflow")) return { detail: `@tensorflow/${pkg}` };
        return `@tensorflow/${pkg} is installed but did not initialise`;
      } catch (err) {
        return `@tensorflow/${pkg} failed to load: ${firstLine(err)}`;
      }
    }
    return "tfjs-node-gpu not installed";
  },
  async webgpu(forced) {
    const info = await setUpWebGPU(forced);
    if (typeof info === "string") return info;
    registerGroupedAddN();
    if (!(await tf.setBackend("webgpu"))) return "tfjs webgpu backend did not initialise";
    const fused = (await import("./kernels/mod.ts")).registerWebGpuKernels();
    return {
      detail: describeDevice(
        info,
        fused.enabled ? "with fused WGSL kernels" : `without fused kernels (${fused.reason})`,
      ),
      // One tensor is one buffer, bound whole: the smaller limit decides.
      maxTensorBytes: Math.min(info.maxStorageBufferBindingSize, info.maxBufferSize),
    };
  },
  async wasm() {
    const wasm = await import("@tensorflow/tfjs-backend-wasm");
    const dir = new URL("../node_modules/@tensorflow/tfjs-backend-wasm/dist/", import.meta.url);
    wasm.setWasmPaths(dir.pathname);
    if (!(await tf.setBackend("wasm"))) return "wasm backend did not initialise";
    return { detail: "XNNPACK, single thread" };
  },
  async cpu() {
    await tf.setBackend("cpu");
    // Silence tfjs' "install tfjs-node" banner: we report the choice ourselves.
    (tf.backend() as unknown as { firstUse: boolean }).firstUse = false;
    const fast = await registerFastKernelsIfPresent();
    return { detail: fast };
  },
};

/**
 * Tensors of these shapes (float32) that the current device cannot bind: a WebGPU device refuses
 * storage buffers above its maxStorageBufferBindingSize (128 MiB on Mesa's lavapipe, less than
 * GPT-2's 768 x 50,257 output head). Throws a UserError naming them and what to do instead.
 */
export function assertFitsDevice(
  shapes: Map<string, number[]>,
  info: BackendInfo | undefined = current,
): void {
  const limit = info?.maxTensorBytes;
  if (!limit) return;
  const tooBig = [...shapes].filter(([, s]) => s.reduce((a, b) => a * b, 1) * 4 > limit);
  if (tooBig.length === 0) return;
  const [name, shape] = tooBig[0];
  const mb = (shape.reduce((a, b) => a * b, 1) * 4 / 2 ** 20).toFixed(0);
  throw new UserError(
    `${name} [${shape}] needs ${mb} MiB but this ${info!.name} device binds at most ` +
      `${(limit / 2 ** 20).toFixed(0)} MiB per tensor (${tooBig.length} tensor(s) too large); ` +
      `use LLM_BACKEND=cpu or a GPU with a larger maxStorageBufferBindingSize`,
  );
}

/**
 * tfjs' plain cpu backend without its "install tfjs-node" banner, for tests that compare against
 * the stock kernels (initBackend would register the fast ones).
 */
export async function useStockCpu(): Promise<void> {
  await tf.setBackend("cpu");
  (tf.backend() as unknown as { firstUse: boolean }).firstUse = false;
}

/**
 * Makes the other backends available for side-by-side timing (appendix A's exercise A.2) without
 * switching to them: wasm always, WebGPU when Deno offers an adapter. Returns their names.
 */
export async function registerOtherBackends(): Promise<string[]> {
  const names: string[] = [];
  try {
    const wasm = await import("@tensorflow/tfjs-backend-wasm");
    wasm.setWasmPaths(
      new URL("../node_modules/@tensorflow/tfjs-backend-wasm/dist/", import.meta.url).pathname,
    );
    names.push("wasm");
  } catch { /* not installed */ }
  // A software adapter too: appendix A's timing shows what it costs.
  if (typeof (await setUpWebGPU(true).catch(() => "failed")) !== "string") {
    registerGroupedAddN();
    names.push("webgpu");
  }
  return names;
}

async function registerFastKernelsIfPresent(): Promise<string> {
  try {
    const mod = await import("./kernels/mod.ts");
    const r = mod.registerFastKernels();
    return r.enabled ? `fast kernels: ${r.reason}` : `plain JS kernels: ${r.reason}`;
  } catch (err) {
    return `plain JS kernels: ${firstLine(err)}`;
  }
}

/** "NVIDIA H200; 2048 MiB per tensor, ..." : the adapter and the limits that decide what fits. */
function describeDevice(info: WebGPUDeviceInfo, kernels = ""): string {
  const mib = (n: number) => `${Math.floor(n / 2 ** 20)} MiB`;
  return `${info.adapter}${info.software ? " (software)" : ""}${kernels && ` ${kernels}`}; binds ${
    mib(info.maxStorageBufferBindingSize)
  } per tensor, buffers up to ${
    mib(info.maxBufferSize)
  }, ${info.maxStorageBuffersPerShaderStage} storage buffers per kernel`;
}

function firstLine(err: unknown): string {
  return String(err instanceof Error ? err.message : err).split("\n")[0];
}
