/**
 * A pool of large Float32Arrays for kernel outputs.
 *
 * Why: the first touch of freshly allocated memory costs page faults, 0.4-2 ms per MB on the
 * project's VMs, i.e. 45-200 ms for each [512, 50257] logits-sized array, several times a step.
 * Arrays that a training step frees are taken back here and handed to the next kernel of the
 * same size, whose pages are already mapped.
 *
 * Safety: only arrays allocated by `allocF32` on the hooked cpu backend are pooled, and only when
 * tfjs frees their dataId. An array is never pooled once it may be seen outside the kernels:
 * returned by `readSync`/`read` (`dataSync()`, `data()`, `array()`, `print()`), or stored
 * twice or as a view (a `subarray` slice) through `backend.write`. Whoever keeps a typed array
 * from `backend.data.get(...).values` after its tensor is disposed must not rely on it.
 */
import type { CpuBackend } from "./util.ts";

/**
 * Arrays below this many elements (64 KiB) are not pooled. Above it, fresh arrays also cost V8
 * garbage collections (their external memory counts towards GC triggers).
 */
export const POOL_MIN_ELEMENTS = 1 << 14;
/** Free arrays kept per size: a step frees dozens of activations of the same shape. */
const PER_SIZE = 64;

interface Owned {
  arr: Float32Array;
  /** Stored under a live dataId. */
  live: boolean;
  /** Seen outside the kernels: never reuse. */
  exposed: boolean;
}

// deno-lint-ignore no-explicit-any
type AnyFn = (...args: any[]) => any;

interface HookedBackend extends CpuBackend {
  write: AnyFn;
  readSync: AnyFn;
  read: AnyFn;
  disposeData: AnyFn;
  data: CpuBackend["data"] & { has(dataId: object): boolean };
}

let hooked: HookedBackend | null = null;
let originals: { write: AnyFn; readSync: AnyFn; read: AnyFn; disposeData: AnyFn } | null = null;
const owned = new WeakMap<ArrayBufferLike, Owned>();
const free = new Map<number, Float32Array[]>();
let freeBytes = 0;
let limitBytes = 2 * (1 << 30);
const reuseListeners: ((arr: Float32Array) => void)[] = [];
const stats = { allocated: 0, reused: 0 };

function expose(values: unknown): void {
  if (!ArrayBuffer.isView(values)) return;
  const o = owned.get(values.buffer);
  if (o != null) o.exposed = true;
}

/**
 * Hooks `write`, `readSync`, `read` and `disposeData` of the cpu backend instance (once). Other
 * backend instances get unpooled arrays.
 */
export function installPool(backend: unknown): void {
  if (hooked != null) return;
  const be = backend as HookedBackend;
  if (
    typeof be?.write !== "function" || typeof be.readSync !== "function" ||
    typeof be.disposeData !== "function" || typeof be.data?.has !== "function"
  ) return;
  const o = {
    write: be.write,
    readSync: be.readSync,
    read: be.read,
    disposeData: be.disposeData,
  };
  be.write = function (values: unknown, ...rest: unknown[]) {
    if (ArrayBuffer.isView(values)) {
      const own = owned.get(values.buffer);
      if (own != null) {
        if (own.arr !== values || own.live) own.exposed = true; // a view, or stored twice
        else own.live = true;
      }
    }
    return o.write.call(this, values, ...rest);
  };
  be.readSync = function (...args: unknown[]) {
    const out = o.readSync.apply(this, args);
    expose(out);
    return out;
  };
  be.read = async function (...args: unknown[]) {
    const out = await o.read.apply(this, args);
    expose(out);
    return out;
  };
  be.disposeData = function (dataId: object, ...rest: unknown[]) {
    const values = be.data.has(dataId) ? be.data.get(dataId).values : undefined;
    const result = o.disposeData.call(this, dataId, ...rest);
    if (values instanceof Float32Array && !be.data.has(dataId)) release(values);
    return result;
  };
  hooked = be;
  originals = o;
}

/** Removes the hooks and empties the pool. */
export function uninstallPool(): void {
  if (hooked != null && originals != null) {
    hooked.write = originals.write;
    hooked.readSync = originals.readSync;
    hooked.read = originals.read;
    hooked.disposeData = originals.disposeData;
  }
  hooked = null;
  originals = null;
  clearPool();
}

function release(arr: Float32Array): void {
  const own = owned.get(arr.buffer);
  if (own == null || own.arr !== arr) return;
  own.live = false;
  if (own.exposed || freeBytes + arr.byteLength > limitBytes) return;
  const list = free.get(arr.length) ?? [];
  if (list.length >= PER_SIZE) return;
  list.push(arr);
  free.set(arr.length, list);
  freeBytes += arr.byteLength;
}

/**
 * A Float32Array of n elements for a kernel output on `backend`: reused from the pool when one
 * is free (zeroed only if `zero`), else new (always zero).
 */
export function allocF32(backend: unknown, n: number, zero = true): Float32Array {
  if (n < POOL_MIN_ELEMENTS || backend !== hooked) return new Float32Array(n);
  const list = free.get(n);
  const reused = list?.pop();
  if (reused != null) {
    freeBytes -= reused.byteLength;
    stats.reused++;
    for (const f of reuseListeners) f(reused);
    if (zero) reused.fill(0);
    return reused;
  }
  const arr = new Float32Array(n);
  owned.set(arr.buffer, { arr, live: false, exposed: false });
  stats.allocated++;
  return arr;
}

/** Called with each array handed out again (caches keyed by array must forget it). */
export function onReuse(listener: (arr: Float32Array) => void): void {
  reuseListeners.push(listener);
}

/** Frees the pooled arrays. */
export function clearPool(): void {
  free.clear();
  freeBytes = 0;
}

/** Caps the pool (bytes held between steps; default 2 GiB: enough to keep GPT-124M's 154 MB head-gradient buffers, whose first touch otherwise costs ~300 ms a step). */
export function setPoolLimit(bytes: number): void {
  limitBytes = bytes;
  if (freeBytes > limitBytes) clearPool();
}

/** Counters: arrays allocated for pooling, arrays reused, bytes held now. */
export function poolStats(): { allocated: number; reused: number; freeBytes: number } {
  return { ...stats, freeBytes };
}
