/**
 * A system BLAS loaded with `Deno.dlopen`: `cblas_sgemm` on Float32Arrays.
 *
 * Looked for, in order: OpenBLAS (Debian/Ubuntu `libopenblas0-pthread`, Fedora `openblas`,
 * Homebrew), a generic `libcblas.so.3`/`libblas.so.3` alternative, macOS Accelerate.
 * Needs `--allow-ffi`; without it (or without a BLAS) `loadBlas()` returns null and callers
 * keep the pure-JS kernels.
 */

/** CBLAS enum values (identical in OpenBLAS, reference CBLAS and Accelerate). */
const ROW_MAJOR = 101;
const NO_TRANS = 111;
const TRANS = 112;

/** Candidate libraries, most preferred first. */
export const BLAS_CANDIDATES: readonly string[] = [
  "/usr/lib/x86_64-linux-gnu/libopenblas.so.0",
  "/usr/lib/x86_64-linux-gnu/openblas-pthread/libopenblas.so.0",
  "/usr/lib/aarch64-linux-gnu/libopenblas.so.0",
  "/usr/lib/aarch64-linux-gnu/openblas-pthread/libopenblas.so.0",
  "/usr/lib64/libopenblas.so.0",
  "/usr/lib/libopenblas.so.0",
  "/opt/homebrew/opt/openblas/lib/libopenblas.dylib",
  "/usr/local/opt/openblas/lib/libopenblas.dylib",
  "libopenblas.so.0",
  "/usr/lib/x86_64-linux-gnu/libcblas.so.3",
  "/usr/lib/aarch64-linux-gnu/libcblas.so.3",
  "libcblas.so.3",
  "/System/Library/Frameworks/Accelerate.framework/Accelerate",
];

const SGEMM = {
  parameters: [
    "i32", // order
    "i32", // transA
    "i32", // transB
    "i32", // M
    "i32", // N
    "i32", // K
    "f32", // alpha
    "buffer", // A
    "i32", // lda
    "buffer", // B
    "i32", // ldb
    "f32", // beta
    "buffer", // C
    "i32", // ldc
  ],
  result: "void",
  nonblocking: false,
} as const;

/** cblas_sgemv: one row times a matrix is memory-bound, and sgemm's packing makes it 2-7x slower. */
const SGEMV = {
  parameters: [
    "i32", // order
    "i32", // trans
    "i32", // M
    "i32", // N
    "f32", // alpha
    "buffer", // A
    "i32", // lda
    "buffer", // X
    "i32", // incX
    "f32", // beta
    "buffer", // Y
    "i32", // incY
  ],
  result: "void",
  nonblocking: false,
} as const;

/** A loaded BLAS. */
export interface Blas {
  /** The library file that was opened. */
  path: string;
  /** Threads BLAS uses (null when the library has no thread control). */
  threads: number | null;
  /**
   * Row-major C = alpha * op(A) @ op(B) + beta * C, with op(A) [m,k], op(B) [k,n], C [m,n].
   * `a`, `b`, `c` may be subarrays (the view's offset is honoured); leading dimensions are
   * those of the stored (untransposed) matrices, defaulting to packed storage.
   */
  sgemm(
    transA: boolean,
    transB: boolean,
    m: number,
    n: number,
    k: number,
    alpha: number,
    a: Float32Array,
    b: Float32Array,
    beta: number,
    c: Float32Array,
    lda?: number,
    ldb?: number,
    ldc?: number,
  ): void;
  /** Closes the library. */
  close(): void;
}

let cached: Blas | null | undefined;

/** Whether this process may call `Deno.dlopen` (asks nothing, never prompts). */
function ffiAllowed(): boolean {
  try {
    return Deno.permissions.querySync({ name: "ffi" }).state === "granted";
  } catch {
    return false;
  }
}

/**
 * Opens the first BLAS found (cached per process) and sets OpenBLAS' thread count to `threads`,
 * else to `navigator.hardwareConcurrency` unless OPENBLAS_NUM_THREADS or OMP_NUM_THREADS is set.
 * Returns null when none can be opened.
 */
export function loadBlas(
  options: { threads?: number; paths?: readonly string[] } = {},
): Blas | null {
  if (cached !== undefined && options.paths === undefined) return cached;
  const result = openFirst(options.paths ?? BLAS_CANDIDATES, options.threads);
  if (options.paths === undefined) cached = result;
  return result;
}

function openFirst(paths: readonly string[], threads?: number): Blas | null {
  if (typeof Deno === "undefined" || typeof Deno.dlopen !== "function" || !ffiAllowed()) {
    return null;
  }
  for (const path of paths) {
    // Bare names go through the dynamic loader's search path; absolute ones must exist, except
    // macOS system frameworks, which live only in the dyld shared cache since macOS 11.
    if (path.startsWith("/") && !path.startsWith("/System/")) {
      try {
        Deno.statSync(path);
      } catch {
        continue;
      }
    }
    let lib;
    try {
      lib = Deno.dlopen(path, { cblas_sgemm: SGEMM });
    } catch {
      continue;
    }
    return wrap(path, lib, threads);
  }
  return null;
}

function envSet(name: string): boolean {
  try {
    return (Deno.env.get(name) ?? "") !== "";
  } catch {
    return false;
  }
}

/**
 * GEMMs below this many multiply-adds run on one thread: fanning a 512x128x128 product out to two
 * OpenBLAS threads gains ~0.05 ms on an idle 2-core machine and loses several ms whenever another
 * process holds a core (the caller waits for a descheduled worker; measured 4 ms vs 0.17 ms).
 */
export const SMALL_GEMM = 1 << 26;

function wrap(
  path: string,
  lib: Deno.DynamicLibrary<{ cblas_sgemm: typeof SGEMM }>,
  threads?: number,
): Blas {
  let nThreads: number | null = null;
  let setThreads: ((n: number) => void) | null = null;
  try {
    // OpenBLAS' optional thread control (absent in reference CBLAS and Accelerate).
    const ctl = Deno.dlopen(path, {
      openblas_set_num_threads: { parameters: ["i32"], result: "void" },
      openblas_get_num_threads: { parameters: [], result: "i32" },
    });
    // OPENBLAS_NUM_THREADS / OMP_NUM_THREADS, when set, win over the core count.
    const fromEnv = threads == null &&
      (envSet("OPENBLAS_NUM_THREADS") || envSet("OMP_NUM_THREADS"));
    if (!fromEnv) {
      ctl.symbols.openblas_set_num_threads(
        Math.max(1, threads ?? navigator.hardwareConcurrency ?? 1),
      );
    }
    nThreads = ctl.symbols.openblas_get_num_threads();
    setThreads = (n) => ctl.symbols.openblas_set_num_threads(n);
  } catch {
    // Not OpenBLAS: it manages its own threads.
  }
  const sgemm = lib.symbols.cblas_sgemm;
  let sgemv: Deno.DynamicLibrary<{ cblas_sgemv: typeof SGEMV }>["symbols"]["cblas_sgemv"] | null =
    null;
  try {
    sgemv = Deno.dlopen(path, { cblas_sgemv: SGEMV }).symbols.cblas_sgemv;
  } catch {
    // No sgemv symbol: single rows go through sgemm.
  }
  let current = nThreads ?? 1;
  return {
    path,
    threads: nThreads,
    sgemm(transA, transB, m, n, k, alpha, a, b, beta, c, lda, ldb, ldc) {
      if (m === 0 || n === 0) return;
      if (setThreads != null && nThreads != null && nThreads > 1) {
        const want = m * n * k < SMALL_GEMM ? 1 : nThreads;
        if (want !== current) {
          setThreads(want);
          current = want;
        }
      }
      if (m === 1 && sgemv && lda === undefined && ldb === undefined && ldc === undefined) {
        // c[n] = op(B)^T a: B stored [k,n] (no transB) is read transposed, [n,k] as it is.
        // A single row is contiguous whether or not it is marked transposed.
        if (transB) sgemv(ROW_MAJOR, NO_TRANS, n, k, alpha, b, Math.max(1, k), a, 1, beta, c, 1);
        else sgemv(ROW_MAJOR, TRANS, k, n, alpha, b, Math.max(1, n), a, 1, beta, c, 1);
        return;
      }
      sgemm(
        ROW_MAJOR,
        transA ? TRANS : NO_TRANS,
        transB ? TRANS : NO_TRANS,
        m,
        n,
        k,
        alpha,
        a,
        lda ?? Math.max(1, transA ? m : k),
        b,
        ldb ?? Math.max(1, transB ? k : n),
        beta,
        c,
        ldc ?? Math.max(1, n),
      );
    },
    close() {
      lib.close();
      if (cached?.path === path) cached = undefined;
    },
  };
}
