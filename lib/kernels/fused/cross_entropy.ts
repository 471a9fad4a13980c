/**
 * Sparse softmax cross-entropy from logits and integer targets, with ignore_index: the op the
 * loss calls (`sparseCrossEntropy`), its composite fallback, and the fused kernels
 * `LlmSparseXent` / `LlmSparseXentGrad` with their registration.
 *
 * The stock route (one-hot targets + softmaxCrossEntropy) builds and differentiates a dense
 * [N, V] one-hot, several [N, V] temporaries and broadcasting Sub/Mul over them; the kernels read
 * the logits once per pass and never materialise a one-hot.
 *
 *   forward:  loss[i] = logsumexp(logits[i]) - logits[i, t[i]]      (0 where t[i] === ignoreIndex)
 *   backward: dlogits[i] = (softmax(logits[i]) - onehot(t[i])) * dy[i]   (0 rows where ignored)
 *
 * logits [..., V] float32, targets [...] int32 -> losses [...] float32. The backward is the
 * gradient registered for LlmSparseXent, so tf.grad / variableGrads work through the kernel.
 */
import * as tf from "@tensorflow/tfjs";
import { expShiftScale, rowMax, sumExpShift } from "../fastmath.ts";
import { SPARSE_XENT, SPARSE_XENT_GRAD } from "../names.ts";
import { allocF32, onReuse } from "../pool.ts";
import { simdRows } from "../simd.ts";
import { ROW_THREADS, rowwise, type Uniform } from "../webgpu.ts";
import type { CpuBackend, FastKernel, FusedOp, KernelArgs } from "../util.ts";
import { f32, hasKernels } from "../util.ts";

/** PyTorch's default ignore_index: targets equal to it do not count. */
export const IGNORE_INDEX = -100;

/**
 * Per-row losses of logits [N, V] against int32 targets [N]: the fused kernels where the active
 * backend has them, else the composite below. Rows whose target is `ignoreIndex` give 0 and get
 * no gradient.
 */
export function sparseCrossEntropy(
  logits: tf.Tensor2D,
  targets: tf.Tensor1D,
  ignoreIndex = IGNORE_INDEX,
): tf.Tensor1D {
  if (hasKernels(SPARSE_XENT, SPARSE_XENT_GRAD)) {
    return tf.engine().runKernel(SPARSE_XENT, { logits, targets }, { ignoreIndex }) as tf.Tensor1D;
  }
  return tf.tidy(() => {
    const keep = tf.notEqual(targets, ignoreIndex);
    const safe = tf.where(keep, targets, tf.zerosLike(targets)) as tf.Tensor1D;
    const losses = compositeLosses(logits, safe);
    return tf.where(keep, losses, tf.zerosLike(losses)) as tf.Tensor1D;
  });
}

/**
 * The composite fallback with plain tf ops: logsumexp(row) - row[target], with the gradient
 * (softmax - onehot) * dy written out (tfjs' own gradient of gather loops over every vocabulary
 * entry on the cpu backend). The "- onehot" part is a scatter of N values, not an [N, V] one-hot.
 */
function compositeLosses(logits: tf.Tensor2D, targets: tf.Tensor1D): tf.Tensor1D {
  const f = tf.customGrad(
    ((x: tf.Tensor2D, tgt: tf.Tensor1D, save: tf.GradSaveFunc) => {
      const n = x.shape[0];
      const index = tf.stack([tf.range(0, n, 1, "int32"), tgt], 1);
      save([x, index]);
      const value = tf.sub(tf.logSumExp(x, 1), tf.gatherND(x, index));
      const gradFunc = (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const [logits, idx] = saved;
        const minusOne = tf.scatterND(idx, tf.fill([n], -1), logits.shape);
        const grad = tf.mul(tf.add(tf.softmax(logits), minusOne), dy.reshape([n, 1]));
        return [grad, tf.zerosLike(tgt)];
      };
      return { value, gradFunc };
    }) as unknown as Parameters<typeof tf.customGrad>[0],
  );
  return f(logits, targets) as tf.Tensor1D;
}

// ------------------------------------------------------------------------------- cpu kernels

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

/** Forward on cpu: losses[i] = logsumexp(logits[i]) - logits[i, targets[i]], 0 for ignored rows. */
const forwardCpu: FastKernel = ({ inputs, attrs, backend }: KernelArgs) => {
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

/** Backward on cpu: dLogits[i] = (softmax(logits[i]) - onehot(targets[i])) * dy[i]; 0 rows where ignored. */
const backwardCpu: FastKernel = ({ inputs, attrs, backend }: KernelArgs) => {
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

// ---------------------------------------------------------------------------- webgpu kernels

/** Row statistics in WGSL: `lse` = logsumexp of row `r` of `logits` (every invocation calls it). */
const LSE_WGSL = `
fn rowLse(tid : i32, base : i32, v : i32) -> f32 {
  var m = -3.402823e+38;
  for (var c = tid; c < v; c = c + ${ROW_THREADS}) { m = max(m, logits[base + c]); }
  m = rowMax(tid, m);
  var s = 0.0;
  for (var c = tid; c < v; c = c + ${ROW_THREADS}) { s = s + exp(logits[base + c] - m); }
  return m + log(rowSum(tid, s));
}`;

/**
 * Runs a row program over the logits: every row's `r`, `v`, `lse` and target `t` are set before
 * `body` runs (`row` may pass the last row when the dispatch is folded: `r` is clamped).
 */
function xentRows(
  backend: unknown,
  key: string,
  inputs: [string, tf.TensorInfo][],
  outShape: number[],
  attrs: KernelArgs["attrs"],
  body: string,
): tf.TensorInfo {
  const [[, logits], [, targets]] = inputs;
  const v = checkShapes(logits, targets), rows = targets.shape.reduce((a, b) => a * b, 1);
  const uniforms: Uniform[] = [
    { name: "vocab", type: "i32", value: v },
    { name: "rows", type: "i32", value: rows },
    { name: "ignore", type: "i32", value: attrs?.ignoreIndex ?? IGNORE_INDEX },
  ];
  return rowwise(backend, rows, {
    key,
    inputs,
    outShape,
    uniforms,
    prelude: LSE_WGSL,
    code: `
  let r = min(row, uniforms.rows - 1);
  let v = uniforms.vocab;
  let lse = rowLse(tid, r * v, v);
  let t = targets[r];
  ${body}`,
  });
}

/** Forward on WebGPU: one workgroup per row; a target outside [0, V) gives NaN (no throw on GPU). */
const forwardWebGpu: FastKernel = ({ inputs, attrs, backend }: KernelArgs) => {
  const { logits, targets } = inputs;
  const io: [string, tf.TensorInfo][] = [["logits", logits], ["targets", targets]];
  return xentRows(
    backend,
    "xent_fwd",
    io,
    targets.shape.slice(),
    attrs,
    `
  if (tid == 0 && row < uniforms.rows) {
    if (t == uniforms.ignore) {
      result[r] = 0.0;
    } else if (t < 0 || t >= v) {
      result[r] = uniforms.NAN;
    } else {
      result[r] = lse - logits[r * v + t];
    }
  }`,
  );
};

/** Backward on WebGPU: one workgroup per row writes (softmax - onehot) * dy, 0 where ignored. */
const backwardWebGpu: FastKernel = ({ inputs, attrs, backend }: KernelArgs) => {
  const { logits, targets, dy } = inputs;
  const io: [string, tf.TensorInfo][] = [["logits", logits], ["targets", targets], ["dy", dy]];
  return xentRows(
    backend,
    "xent_bwd",
    io,
    logits.shape.slice(),
    attrs,
    `
  let g = select(dy[r], 0.0, t == uniforms.ignore);
  if (row < uniforms.rows) {
    for (var c = tid; c < v; c = c + ${ROW_THREADS}) {
      let p = exp(logits[r * v + c] - lse) * g;
      result[r * v + c] = select(p, p - g, c == t);
    }
  }`,
  );
};

// ------------------------------------------------------------------------------ registration

/** The tape gradient of LlmSparseXent: the backward kernel (every backend that has both). */
const gradient: tf.GradConfig = {
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

/** What lib/kernels/mod.ts registers for this op. */
export const crossEntropyOp: FusedOp = {
  kernels: {
    cpu: { [SPARSE_XENT]: forwardCpu, [SPARSE_XENT_GRAD]: backwardCpu },
    webgpu: { [SPARSE_XENT]: forwardWebGpu, [SPARSE_XENT_GRAD]: backwardWebGpu },
  },
  gradients: [gradient],
};

/**
 * Per-row sparse cross-entropy with plain tf ops (any backend; what the kernel computes):
 * logsumexp(logits) - logits[target], 0 where target === ignoreIndex. The one-hot formula, as
 * a test oracle: O(N*V) memory.
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
