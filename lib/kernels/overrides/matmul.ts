/**
 * BatchMatMul and _FusedMatMul through BLAS sgemm.
 *
 * Batch dims follow the stock kernel: they are flattened, and one side may have a single batch
 * (broadcast). A batch of [B, M, K] @ [K, N] with B > 1 becomes one [B*M, K] @ [K, N] GEMM.
 * Other broadcasts, non-float32 inputs and prelu activations fall back to the stock kernels.
 */
import * as tf from "@tensorflow/tfjs";
import type { Blas } from "./blas.ts";
import { allocF32 } from "../pool.ts";
import { type CpuBackend, f32, type FastKernel, type KernelArgs, sizeOf } from "../util.ts";

interface Plan {
  batch: number;
  batchA: number;
  batchB: number;
  m: number;
  n: number;
  k: number;
  outShape: number[];
}

function plan(a: tf.TensorInfo, b: tf.TensorInfo, transA: boolean, transB: boolean): Plan | null {
  const ra = a.shape.length, rb = b.shape.length;
  if (ra < 2 || rb < 2) return null;
  const k = transA ? a.shape[ra - 2] : a.shape[ra - 1];
  const kb = transB ? b.shape[rb - 1] : b.shape[rb - 2];
  if (k !== kb) return null; // the stock kernel reports the error
  const m = transA ? a.shape[ra - 1] : a.shape[ra - 2];
  const n = transB ? b.shape[rb - 2] : b.shape[rb - 1];
  const outerA = a.shape.slice(0, -2), outerB = b.shape.slice(0, -2);
  const batchA = sizeOf(outerA), batchB = sizeOf(outerB);
  if (batchA !== batchB && batchA !== 1 && batchB !== 1) return null;
  let outer: number[];
  try {
    outer = tf.broadcast_util.assertAndGetBroadcastShape(outerA, outerB);
  } catch {
    return null;
  }
  const batch = Math.max(batchA, batchB);
  if (sizeOf(outer) !== batch) return null;
  return { batch, batchA, batchB, m, n, k, outShape: [...outer, m, n] };
}

/** C[batch,m,n] (+)= op(A) @ op(B); `beta` 1 keeps what C holds (a bias). */
function gemm(
  blas: Blas,
  p: Plan,
  av: Float32Array,
  bv: Float32Array,
  transA: boolean,
  transB: boolean,
  out: Float32Array,
  beta: number,
): void {
  const { batch, batchA, batchB, m, n, k } = p;
  if (k === 0) {
    if (beta === 0) out.fill(0);
    return;
  }
  if (batchB === 1 && !transA) {
    // Row-major A batches stack into one tall matrix.
    blas.sgemm(false, transB, batch * m, n, k, 1, av, bv, beta, out);
    return;
  }
  const sa = m * k, sb = k * n, sc = m * n;
  for (let i = 0; i < batch; i++) {
    const ai = batchA === 1 ? 0 : i * sa, bi = batchB === 1 ? 0 : i * sb;
    blas.sgemm(
      transA,
      transB,
      m,
      n,
      k,
      1,
      av.subarray(ai, ai + sa),
      bv.subarray(bi, bi + sb),
      beta,
      out.subarray(i * sc, (i + 1) * sc),
    );
  }
}

/** BatchMatMul via sgemm. */
export function makeBatchMatMul(blas: Blas): FastKernel {
  return ({ inputs, attrs, backend }: KernelArgs) => {
    const be = backend as CpuBackend;
    const { a, b } = inputs;
    const av = f32(be, a), bv = f32(be, b);
    if (av == null || bv == null) return null;
    const transA = !!attrs?.transposeA, transB = !!attrs?.transposeB;
    const p = plan(a, b, transA, transB);
    if (p == null) return null;
    const out = allocF32(be, p.batch * p.m * p.n, false); // beta 0 overwrites it
    gemm(blas, p, av, bv, transA, transB, out, 0);
    return be.makeTensorInfo(p.outShape, "float32", out);
  };
}

/** _FusedMatMul (matmul + bias + activation) via sgemm; the bias seeds C. */
export function makeFusedMatMul(blas: Blas): FastKernel {
  return ({ inputs, attrs, backend }: KernelArgs) => {
    const be = backend as CpuBackend;
    const { a, b, bias } = inputs;
    const av = f32(be, a), bv = f32(be, b);
    if (av == null || bv == null) return null;
    const transA = !!attrs?.transposeA, transB = !!attrs?.transposeB;
    const activation: string = attrs?.activation ?? "linear";
    if (!["linear", "relu", "relu6", "leakyrelu", "sigmoid", "elu"].includes(activation)) {
      return null;
    }
    const p = plan(a, b, transA, transB);
    if (p == null) return null;
    const size = p.batch * p.m * p.n;
    const out = allocF32(be, size, false);
    let beta = 0;
    if (bias != null) {
      const biasV = f32(be, bias);
      // Only a bias over the last dim ([n], [1,n], [1,1,n]) or a scalar is fused.
      if (biasV == null) return null;
      const bs = sizeOf(bias.shape);
      if (bs === 1) out.fill(biasV[0]);
      else if (bs === p.n && bias.shape[bias.shape.length - 1] === p.n) {
        for (let r = 0; r < size; r += p.n) out.set(biasV, r);
      } else return null;
      beta = 1;
    }
    gemm(blas, p, av, bv, transA, transB, out, beta);
    applyActivation(out, activation, attrs?.leakyreluAlpha ?? 0.2);
    return be.makeTensorInfo(p.outShape, "float32", out);
  };
}

function applyActivation(x: Float32Array, activation: string, alpha: number): void {
  const n = x.length;
  switch (activation) {
    case "relu":
      for (let i = 0; i < n; i++) if (x[i] < 0) x[i] = 0;
      break;
    case "relu6":
      for (let i = 0; i < n; i++) x[i] = x[i] < 0 ? 0 : x[i] > 6 ? 6 : x[i];
      break;
    case "leakyrelu":
      for (let i = 0; i < n; i++) if (x[i] < 0) x[i] *= alpha;
      break;
    case "sigmoid":
      for (let i = 0; i < n; i++) x[i] = 1 / (1 + Math.exp(-x[i]));
      break;
    case "elu":
      for (let i = 0; i < n; i++) if (x[i] < 0) x[i] = Math.exp(x[i]) - 1;
      break;
  }
}
