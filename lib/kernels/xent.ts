/**
 * Fused sparse softmax cross-entropy: `LlmSparseXent` and its gradient `LlmSparseXentGrad`.
 *
 * The stock route (one-hot targets + softmaxCrossEntropy) builds and differentiates a dense
 * [N, V] one-hot, several [N, V] temporaries and broadcasting Sub/Mul over them; these kernels
 * read the logits once per pass and never materialise a one-hot.
 *
 *   losses = tf.engine().runKernel("LlmSparseXent", {logits, targets}, {ignoreIndex: -100})
 *
 * logits [..., V] float32, targets [...] int32 -> losses [...] float32 (0 where target ===
 * ignoreIndex). The gradient is registered, so tf.grad / variableGrads work through it.
 */
import * as tf from "@tensorflow/tfjs";
import { expShiftScale, rowMax, sumExpShift } from "./fastmath.ts";
import { allocF32, onReuse } from "./pool.ts";
import { simdRows } from "./simd.ts";
import { type CpuBackend, f32, type FastKernel, type KernelArgs } from "./util.ts";

/** Kernel names. */
export const SPARSE_XENT = "LlmSparseXent";
export const SPARSE_XENT_GRAD = "LlmSparseXentGrad";

function targetsOf(be: CpuBackend, t: tf.TensorInfo): Int32Array | Float32Array | null {
  const v = be.data.get(t.dataId).values;
  return v instanceof Int32Array || v instanceof Float32Array ? v : null;
}

function checkShapes(logits: tf.TensorInfo, targets: tf.TensorInfo): number {
  const r = logits.shape.length;
  const ok = r >= 1 && targets.shape.length === r - 1 &&
    targets.shape.every((d, i) => d === logits.shape[i]);
  if (!ok) {
    throw new Error(
      `${SPARSE_XENT}: targets shape [${targets.shape}] must be logits shape [${logits.shape}] ` +
        "without its last dim",
    );
  }
  return logits.shape[r - 1];
}

function checkTarget(t: number, v: number, row: number): void {
  if (!(t >= 0 && t < v) || t !== Math.floor(t)) {
    throw new Error(`${SPARSE_XENT}: target ${t} at row ${row} is outside [0, ${v})`);
  }
}

/**
 * logsumexp of each row from the last forward pass over a logits array, so the gradient needs
 * one pass over the logits instead of three. Keyed by the typed array: gone with it.
 */
const lseCache = new WeakMap<Float32Array, Float64Array>();
onReuse((arr) => lseCache.delete(arr));

/** losses[i] = logsumexp(logits[i]) - logits[i, targets[i]], 0 for ignored rows. */
export const sparseXent: FastKernel = ({ inputs, attrs, backend }: KernelArgs) => {
  const be = backend as CpuBackend;
  const { logits, targets } = inputs;
  const v = checkShapes(logits, targets);
  const xv = f32(be, logits), tv = targetsOf(be, targets);
  if (xv == null || tv == null) {
    throw new Error(`${SPARSE_XENT}: needs float32 logits and int32 targets on the cpu backend`);
  }
  const ignore: number = attrs?.ignoreIndex ?? -100;
  const rows = tv.length;
  const out = new Float32Array(rows);
  const lse = new Float64Array(rows).fill(NaN);
  const simd = simdRows();
  for (let i = 0; i < rows; i++) {
    const t = tv[i];
    if (t === ignore) continue;
    checkTarget(t, v, i);
    const o = i * v;
    if (simd) {
      simd.load(xv, o, v);
      const m = simd.max();
      lse[i] = m + Math.log(simd.sumExp(m));
    } else {
      const m = rowMax(xv, o, v);
      lse[i] = m + Math.log(sumExpShift(xv, o, v, m));
    }
    out[i] = lse[i] - xv[o + t];
  }
  lseCache.set(xv, lse);
  return be.makeTensorInfo(targets.shape.slice(), "float32", out);
};

/** dLogits[i] = (softmax(logits[i]) - onehot(targets[i])) * dy[i]; zero rows where ignored. */
export const sparseXentGrad: FastKernel = ({ inputs, attrs, backend }: KernelArgs) => {
  const be = backend as CpuBackend;
  const { logits, targets, dy } = inputs;
  const v = checkShapes(logits, targets);
  const xv = f32(be, logits), tv = targetsOf(be, targets), dyv = f32(be, dy);
  if (xv == null || tv == null || dyv == null || dyv.length !== tv.length) {
    throw new Error(
      `${SPARSE_XENT_GRAD}: needs float32 logits, int32 targets and float32 dy of targets' shape`,
    );
  }
  const ignore: number = attrs?.ignoreIndex ?? -100;
  const out = allocF32(be, xv.length, false);
  const cached = lseCache.get(xv);
  const simd = simdRows();
  for (let i = 0; i < tv.length; i++) {
    const t = tv[i], g = dyv[i];
    if (t === ignore || g === 0) {
      out.fill(0, i * v, (i + 1) * v);
      continue;
    }
    checkTarget(t, v, i);
    const o = i * v;
    let lse = cached?.[i] ?? NaN;
    if (simd) {
      simd.load(xv, o, v);
      if (lse !== lse) {
        const m = simd.max();
        lse = m + Math.log(simd.sumExp(m));
      }
      simd.expScale(lse, g);
      simd.store(out, o, v);
    } else {
      if (lse !== lse) {
        const m = rowMax(xv, o, v);
        lse = m + Math.log(sumExpShift(xv, o, v, m));
      }
      expShiftScale(xv, o, out, o, v, lse, g);
    }
    out[o + t] -= g;
  }
  return be.makeTensorInfo(logits.shape.slice(), "float32", out);
};

/** The gradient of LlmSparseXent (registered once, for every backend that has the kernel). */
export const sparseXentGradConfig: tf.GradConfig = {
  kernelName: SPARSE_XENT,
  inputsToSave: ["logits", "targets"],
  gradFunc: (dy, saved, attrs) => {
    const [logits, targets] = saved;
    return {
      logits: () =>
        tf.engine().runKernel(
          SPARSE_XENT_GRAD,
          { logits, targets, dy: dy as tf.Tensor },
          attrs,
        ) as tf.Tensor,
      targets: () => tf.zerosLike(targets),
    };
  },
};

/**
 * Per-row sparse cross-entropy with plain tf ops (any backend; what the kernel computes):
 * logsumexp(logits) - logits[target], 0 where target === ignoreIndex. O(N*V) memory for one
 * [N, V] mask, so prefer the kernel on cpu.
 */
export function sparseXentReference(
  logits: tf.Tensor,
  targets: tf.Tensor,
  ignoreIndex = -100,
): tf.Tensor {
  return tf.tidy(() => {
    const v = logits.shape[logits.shape.length - 1];
    const valid = tf.notEqual(targets, ignoreIndex);
    const safe = tf.where(valid, targets, tf.zerosLike(targets));
    const lse = tf.logSumExp(logits, -1);
    const picked = tf.sum(tf.mul(logits, tf.oneHot(safe.toInt(), v)), -1);
    return tf.where(valid, tf.sub(lse, picked), tf.zerosLike(lse));
  });
}
