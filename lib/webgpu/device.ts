/**
 * The WebGPU device behind tfjs' webgpu backend, set up by us rather than by tfjs' default
 * factory, so that:
 * - the device gets the adapter's own limits (largest buffer and binding, storage buffers per
 *   shader stage, workgroup sizes), not WebGPU's defaults: GPT-2 medium's 50,257 x 1,024
 *   embedding (196 MiB) binds wherever the hardware allows it;
 * - a validation error (a kernel that the device cannot run) fails the next read with its message
 *   instead of being dropped in silence: WebGPU then skips the whole command buffer, and the read
 *   returns whatever its reused staging buffer held before (this is how clipping once returned
 *   the previous step's loss as the gradient norm);
 * - a lost device stops the run with one line at the next read, before anything more is written.
 */
import * as tf from "@tensorflow/tfjs";
import { UserError } from "../util/errors.ts";

/** What the backend line reports about the device. */
export interface WebGPUDeviceInfo {
  /** Adapter name (vendor and description, e.g. "NVIDIA H200" or "llvmpipe (LLVM 15.0.6)"). */
  adapter: string;
  /** True for a software (CPU) implementation such as Mesa's lavapipe. */
  software: boolean;
  /** The device's limits that decide what fits. */
  maxStorageBufferBindingSize: number;
  maxBufferSize: number;
  maxStorageBuffersPerShaderStage: number;
}

/** Limits raised to the adapter's maximum (the rest keep WebGPU's defaults). */
const RAISED_LIMITS = [
  "maxStorageBufferBindingSize",
  "maxBufferSize",
  "maxStorageBuffersPerShaderStage",
  "maxComputeWorkgroupStorageSize",
  "maxComputeWorkgroupsPerDimension",
  "maxComputeWorkgroupSizeX",
  "maxComputeInvocationsPerWorkgroup",
] as const;

/** The device of the running webgpu backend, and what went wrong on it. */
interface DeviceState {
  device: GPUDevice;
  info: WebGPUDeviceInfo;
  lost?: string;
  validationError?: string;
}

let state: DeviceState | undefined;

/** A software (CPU) Vulkan/Metal/D3D implementation: far slower than the cpu backend with BLAS. */
export function isSoftwareAdapter(info: GPUAdapterInfo): boolean {
  return Boolean(info.isFallbackAdapter) ||
    /llvmpipe|lavapipe|swiftshader|softpipe|warp/i.test(`${info.device} ${info.description}`);
}

/**
 * Requests the adapter and a device with its limits, and registers tfjs' "webgpu" backend on it.
 * Returns a reason string when there is no usable adapter (a software one only when `forced`).
 */
export async function setUpWebGPU(forced: boolean): Promise<WebGPUDeviceInfo | string> {
  if (state) return state.info;
  const gpu = (navigator as Navigator & { gpu?: GPU }).gpu;
  if (!gpu) return "this Deno has no WebGPU (run deno with --unstable-webgpu)";
  // Mesa's Vulkan loader complains on stderr without it (harmless, but noise in every run).
  if (!Deno.env.get("XDG_RUNTIME_DIR")) Deno.env.set("XDG_RUNTIME_DIR", Deno.makeTempDirSync());
  const adapter = await gpu.requestAdapter({ powerPreference: "high-performance" });
  if (!adapter) return "no WebGPU adapter (is a Vulkan, Metal or D3D12 driver installed?)";
  const name = adapterName(adapter.info);
  const software = isSoftwareAdapter(adapter.info);
  if (software && !forced) return `adapter "${name}" is a software renderer`;
  const requiredLimits: Record<string, number> = {};
  for (const k of RAISED_LIMITS) requiredLimits[k] = adapter.limits[k];
  const requiredFeatures = adapter.features.has("timestamp-query")
    ? ["timestamp-query" as GPUFeatureName]
    : [];
  const device = await adapter.requestDevice({ requiredLimits, requiredFeatures });
  const info: WebGPUDeviceInfo = {
    adapter: name,
    software,
    maxStorageBufferBindingSize: device.limits.maxStorageBufferBindingSize,
    maxBufferSize: device.limits.maxBufferSize,
    maxStorageBuffersPerShaderStage: device.limits.maxStorageBuffersPerShaderStage,
  };
  const s: DeviceState = { device, info };
  device.addEventListener("uncapturederror", (e) => {
    s.validationError ??= firstLine((e as GPUUncapturedErrorEvent).error.message);
  });
  device.lost.then((lost) => {
    s.lost = `${lost.reason}${lost.message ? `: ${firstLine(lost.message)}` : ""}`;
  });
  const webgpu = await import("@tensorflow/tfjs-backend-webgpu");
  // Importing the package registered tfjs' own factory (default limits); put ours in its place.
  tf.removeBackend("webgpu");
  tf.registerBackend("webgpu", () => {
    const backend = new webgpu.WebGPUBackend(device, adapter.info);
    guardReads(backend as unknown as ReadingBackend, s);
    return backend;
  }, 3);
  state = s;
  return info;
}

/** The device of the webgpu backend (undefined before setUpWebGPU succeeded). */
export function webgpuDevice(): GPUDevice | undefined {
  return state?.device;
}

/** The part of tfjs' WebGPUBackend that every read goes through. */
interface ReadingBackend {
  getBufferData(buffer: GPUBuffer): Promise<ArrayBuffer>;
}

/**
 * Makes every read (tfjs' `getBufferData`) fail loudly after a lost device or a dropped command.
 * `LLM_WEBGPU_LOSE_DEVICE_AFTER=N` destroys the device after N reads: the fault-injection hook
 * with which the tests check that a lost device stops a run cleanly.
 */
function guardReads(backend: ReadingBackend, s: DeviceState): void {
  const read = backend.getBufferData.bind(backend);
  const loseAfter = Number(Deno.env.get("LLM_WEBGPU_LOSE_DEVICE_AFTER") ?? NaN);
  let reads = 0;
  backend.getBufferData = async (buffer: GPUBuffer) => {
    if (++reads > loseAfter && !s.lost) s.device.destroy();
    throwIfBroken(s);
    let values: ArrayBuffer;
    try {
      values = await read(buffer);
    } catch (err) {
      // A read fails when the device went away; `device.lost` may resolve a moment later.
      await waitForLoss(s, 2000);
      throwIfBroken(s);
      throw err;
    }
    throwIfBroken(s);
    return values;
  };
}

/** Waits up to `ms` for `device.lost` to resolve (and its handler to record why). */
async function waitForLoss(s: DeviceState, ms: number): Promise<void> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<void>((resolve) => timer = setTimeout(resolve, ms));
  await Promise.race([s.device.lost.then(() => {}), timeout]);
  clearTimeout(timer);
}

function throwIfBroken(s: DeviceState): void {
  if (s.lost) {
    throw new UserError(
      `the WebGPU device was lost (${s.lost}); the run stopped, and its last checkpoint is ` +
        `intact (resume with --resume, or use LLM_BACKEND=cpu)`,
    );
  }
  if (s.validationError) {
    const msg = s.validationError;
    s.validationError = undefined;
    throw new Error(`WebGPU rejected a kernel, so this read would return stale data: ${msg}`);
  }
}

/** "NVIDIA H200": the description, with the vendor when it is a name not already in it. */
export function adapterName(info: GPUAdapterInfo): string {
  const what = info.description || info.device || "unknown adapter";
  const vendor = /^\d*$/.test(info.vendor) || what.includes(info.vendor) ? "" : `${info.vendor} `;
  return `${vendor}${what}`;
}

function firstLine(text: string): string {
  return text.split("\n")[0].trim();
}
