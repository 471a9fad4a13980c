/**
 * Reductions and softmax over float32 data without the stock kernels' transposes.
 *
 * Sum, Mean, Max, Min: fast when the reduced axes are the innermost ones (row reductions, e.g.
 * LayerNorm statistics) or the outermost ones (column sums, e.g. the gradient of a broadcast bias).
 * Softmax: over the last axis, in one pass per row.
 */
import * as tf from "@tensorflow/tfjs";
import { expShiftSum, rowMax } from "../fastmath.ts";
import { allocF32 } from "../pool.ts";
import { simdRows } from "../simd.ts";
import { type CpuBackend, f32, type FastKernel, type KernelArgs, sizeOf } from "../util.ts";

type ReduceOp = "sum" | "mean" | "max" | "min";

/** rows x n layout for reducing the innermost or outermost axes; null otherwise. */
function layout(
  shape: readonly number[],
  axes: number[],
): { inner: boolean; rows: number; n: number } | null {
  const rank = shape.length;
  const sorted = [...new Set(axes)].sort((a, b) => a - b);
  const k = sorted.length;
  if (k === 0) return null;
  const innermost = sorted.every((a, i) => a === rank - k + i);
  const outermost = sorted.every((a, i) => a === i);
  if (innermost) {
    return {
      inner: true,
      rows: sizeOf(shape.slice(0, rank - k)),
      n: sizeOf(shape.slice(rank - k)),
    };
  }
  if (outermost) {
    return { inner: false, rows: sizeOf(shape.slice(0, k)), n: sizeOf(shape.slice(k)) };
  }
  return null;
}

function reduceRows(op: ReduceOp, x: Float32Array, rows: number, n: number): Float32Array {
  const out = new Float32Array(rows);
  for (let r = 0; r < rows; r++) {
    const o = r * n;
    if (op === "sum" || op === "mean") {
      let s = 0;
      for (let j = 0; j < n; j++) s += x[o + j];
      out[r] = op === "mean" ? s / n : s;
    } else if (op === "max") {
      out[r] = n === 0 ? NaN : rowMax(x, o, n);
    } else {
      let m = Infinity;
      for (let j = 0; j < n; j++) {
        const v = x[o + j];
        if (v < m) m = v;
        else if (v !== v) {
          m = NaN;
          break;
        }
      }
      out[r] = n === 0 ? NaN : m;
    }
  }
  return out;
}

function reduceCols(op: ReduceOp, x: Float32Array, rows: number, n: number): Float32Array {
  const out = new Float32Array(n);
  if (op === "sum" || op === "mean") {
    const acc = new Float64Array(n); // float64 accumulation, as the stock kernel does
    for (let r = 0; r < rows; r++) {
      const o = r * n;
      for (let j = 0; j < n; j++) acc[j] += x[o + j];
    }
    for (let j = 0; j < n; j++) out[j] = op === "mean" ? acc[j] / rows : acc[j];
    return out;
  }
  if (rows === 0) return out.fill(NaN);
  out.set(x.subarray(0, n));
  for (let r = 1; r < rows; r++) {
    const o = r * n;
    if (op === "max") {
      for (let j = 0; j < n; j++) {
        const v = x[o + j];
        if (v > out[j] || v !== v) out[j] = v;
      }
    } else {
      for (let j = 0; j < n; j++) {
        const v = x[o + j];
        if (v < out[j] || v !== v) out[j] = v;
      }
    }
  }
  // A NaN seen earlier can be overwritten by a later number above: redo those columns.
  for (let j = 0; j < n; j++) {
    for (let r = 0; r < rows; r++) {
      const v = x[r * n + j];
      if (v !== v) {
        out[j] = NaN;
        break;
      }
    }
  }
  return out;
}

/** A reduction kernel (Max's axes are attrs.reductionIndices, the others' attrs.axis). */
export function makeReduce(op: ReduceOp): FastKernel {
  return ({ inputs, attrs, backend }: KernelArgs) => {
    const be = backend as CpuBackend;
    const x = inputs.x;
    const xv = f32(be, x);
    if (xv == null) return null;
    const axisAttr = op === "max" ? attrs?.reductionIndices : attrs?.axis;
    let axes: number[];
    try {
      axes = tf.util.parseAxisParam(axisAttr, x.shape);
    } catch {
      return null;
    }
    const rank = x.shape.length;
    const keep = !!attrs?.keepDims;
    let outShape: number[];
    if (keep) outShape = x.shape.map((d, i) => (axes.includes(i) ? 1 : d));
    else outShape = x.shape.filter((_, i) => !axes.includes(i));
    if (axes.length === 0 || rank === 0) return null;
    const l = layout(x.shape, axes);
    if (l == null) return null;
    const out = l.inner ? reduceRows(op, xv, l.rows, l.n) : reduceCols(op, xv, l.rows, l.n);
    return be.makeTensorInfo(outShape, "float32", out);
  };
}

/** Softmax over the last axis: max, exp and sum in one pass per row. */
export const softmax: FastKernel = ({ inputs, attrs, backend }: KernelArgs) => {
  const be = backend as CpuBackend;
  const x = inputs.logits;
  const xv = f32(be, x);
  if (xv == null) return null;
  const rank = x.shape.length;
  const dim = attrs?.dim ?? -1;
  if (rank === 0 || (dim !== -1 && dim !== rank - 1)) return null;
  const n = x.shape[rank - 1];
  const rows = n === 0 ? 0 : xv.length / n;
  const out = allocF32(be, xv.length, false);
  const simd = simdRows();
  for (let r = 0; r < rows; r++) {
    const o = r * n;
    if (simd) {
      simd.load(xv, o, n);
      const m = simd.max();
      simd.expScale(m, 1 / simd.sumExp(m));
      simd.store(out, o, n);
      continue;
    }
    const m = rowMax(xv, o, n);
    const s = expShiftSum(xv, o, out, o, n, m);
    for (let j = 0; j < n; j++) out[o + j] /= s;
  }
  return be.makeTensorInfo(x.shape.slice(), "float32", out);
};
