/**
 * Exercise A.2: how long one `rand(100, 200) @ rand(200, 300)` takes on each tfjs backend
 * (the book: 63.8 us on a CPU, 13.8 us on a V100 GPU).
 */
import * as tf from "@tensorflow/tfjs";

/** Options of timeMatmul: the product's shape and how long to measure. */
export interface MatmulTimingOptions {
  /** Rows of A. */
  m?: number;
  /** Columns of A = rows of B. */
  k?: number;
  /** Columns of B. */
  n?: number;
  /** Each measured loop runs at least this long (milliseconds), like %timeit's loop sizing. */
  minLoopMs?: number;
  /** Measured loops; the median loop's time per product is reported. */
  loops?: number;
}

/**
 * Microseconds per `A @ B` on the current backend, result read back (`await data()`), so that
 * asynchronous GPU backends are timed to completion.
 */
export async function timeMatmul(
  { m = 100, k = 200, n = 300, minLoopMs = 50, loops = 5 }: MatmulTimingOptions = {},
): Promise<number> {
  const a = tf.randomUniform([m, k], 0, 1, "float32", 1);
  const b = tf.randomUniform([k, n], 0, 1, "float32", 2);
  const once = async () => {
    const c = tf.matMul(a, b);
    await c.data();
    c.dispose();
  };
  try {
    // Warm up (kernel compilation on GPU backends), then size the loop.
    let runs = 1;
    for (;;) {
      const t0 = performance.now();
      for (let i = 0; i < runs; i++) await once();
      if (performance.now() - t0 >= minLoopMs || runs >= 1 << 16) break;
      runs *= 2;
    }
    const perRun: number[] = [];
    for (let l = 0; l < loops; l++) {
      const t0 = performance.now();
      for (let i = 0; i < runs; i++) await once();
      perRun.push(((performance.now() - t0) / runs) * 1000);
    }
    perRun.sort((x, y) => x - y);
    return perRun[Math.floor(perRun.length / 2)];
  } finally {
    a.dispose();
    b.dispose();
  }
}

/** One backend's result: microseconds per product, or why it could not run. */
export interface BackendTiming {
  backend: string;
  microseconds?: number;
  error?: string;
}

/**
 * Times the product on every registered backend (cpu always; wasm, webgpu or tensorflow when the
 * program registered them, see lib/backend.ts), then switches back to the backend in use before.
 */
export async function timeMatmulOnBackends(
  options: MatmulTimingOptions & { backends?: string[] } = {},
): Promise<BackendTiming[]> {
  const before = tf.getBackend();
  const out: BackendTiming[] = [];
  try {
    for (const backend of options.backends ?? tf.engine().backendNames()) {
      try {
        if (!(await tf.setBackend(backend))) {
          out.push({ backend, error: "failed to initialise" });
          continue;
        }
        out.push({ backend, microseconds: await timeMatmul(options) });
      } catch (err) {
        out.push({ backend, error: err instanceof Error ? err.message : String(err) });
      }
    }
  } finally {
    if (before) await tf.setBackend(before);
  }
  return out;
}
