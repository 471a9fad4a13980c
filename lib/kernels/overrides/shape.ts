/**
 * Data-movement kernels: Transpose (rank <= 4, e.g. [B,T,H,D] <-> [B,H,T,D]), Tile (what
 * broadcastTo runs), PadV2 (the gradient of slice), Cast, Select (tf.where), GatherV2 (the
 * embedding lookup), UnsortedSegmentSum (its gradient: the stock kernel loops over all 50,257
 * segments) and ScatterNd (the scatter-add some embedding gradients use instead).
 */
import * as tf from "@tensorflow/tfjs";
import { allocF32 } from "../pool.ts";
import { type CpuBackend, f32, type FastKernel, type KernelArgs, sizeOf, typed } from "../util.ts";

type Numeric = Float32Array | Int32Array | Uint8Array;

/** An output array of v's type; float32 ones may come from the pool (contents undefined). */
function like(v: Numeric, size: number, backend?: unknown): Numeric {
  if (v instanceof Float32Array) return allocF32(backend, size, false);
  if (v instanceof Int32Array) return new Int32Array(size);
  return new Uint8Array(size);
}

/** Transpose of any numeric tensor of rank <= 4 (padded to 4-D, strided reads). */
export const transpose: FastKernel = ({ inputs, attrs, backend }: KernelArgs) => {
  const be = backend as CpuBackend;
  const x = inputs.x;
  const xv = typed(be, x);
  const perm: number[] = attrs?.perm;
  const rank = x.shape.length;
  if (xv == null || perm == null || rank > 4 || perm.length !== rank) return null;
  const outShape = perm.map((p) => x.shape[p]);
  if (perm.every((p, i) => p === i)) {
    // Same data: share it, as tfjs' Identity and Reshape do (the gather gradient does this).
    be.incRef(x.dataId);
    return { dataId: x.dataId, shape: outShape, dtype: x.dtype };
  }
  const inStrides = new Array<number>(rank);
  for (let i = rank - 1, s = 1; i >= 0; i--) {
    inStrides[i] = s;
    s *= x.shape[i];
  }
  // Output dims, padded in front with size-1 dims; each reads the input with this stride.
  const pad = 4 - rank;
  const d = [1, 1, 1, 1], st = [0, 0, 0, 0];
  for (let i = 0; i < rank; i++) {
    d[pad + i] = outShape[i];
    st[pad + i] = inStrides[perm[i]];
  }
  const out = like(xv, xv.length, be);
  const [d0, d1, d2, d3] = d, [s0, s1, s2, s3] = st;
  let o = 0;
  for (let i0 = 0; i0 < d0; i0++) {
    for (let i1 = 0; i1 < d1; i1++) {
      for (let i2 = 0; i2 < d2; i2++) {
        const base = i0 * s0 + i1 * s1 + i2 * s2;
        if (s3 === 1) {
          out.set(xv.subarray(base, base + d3), o);
          o += d3;
        } else {
          for (let i3 = 0; i3 < d3; i3++) out[o++] = xv[base + i3 * s3];
        }
      }
    }
  }
  return be.makeTensorInfo(outShape, x.dtype, out);
};

/** Tile: copies blocks, innermost dim first. */
export const tile: FastKernel = ({ inputs, attrs, backend }: KernelArgs) => {
  const be = backend as CpuBackend;
  const x = inputs.x;
  const xv = typed(be, x);
  const reps: number[] = attrs?.reps;
  const rank = x.shape.length;
  if (xv == null || reps == null || reps.length !== rank || rank === 0) return null;
  const outShape = x.shape.map((s, i) => s * reps[i]);
  const out = like(xv, sizeOf(outShape), be);
  if (out.length === 0) return be.makeTensorInfo(outShape, x.dtype, out);
  // fill(dim, src, dst): writes the tile of x[...dim:] at dst, returns its size.
  const fill = (dim: number, src: number, dst: number): number => {
    const s = x.shape[dim];
    let block: number;
    if (dim === rank - 1) {
      out.set(xv.subarray(src, src + s), dst);
      block = s;
    } else {
      const inner = sizeOf(x.shape.slice(dim + 1));
      block = 0;
      for (let i = 0; i < s; i++) block += fill(dim + 1, src + i * inner, dst + block);
    }
    for (let r = 1; r < reps[dim]; r++) out.copyWithin(dst + r * block, dst, dst + block);
    return block * reps[dim];
  };
  fill(0, 0, 0);
  return be.makeTensorInfo(outShape, x.dtype, out);
};

/** Cast between float32, int32 and bool; int32/bool -> float32 gets real float32 storage. */
export const cast: FastKernel = ({ inputs, attrs, backend }: KernelArgs) => {
  const be = backend as CpuBackend;
  const x = inputs.x;
  const xv = typed(be, x);
  const dtype: tf.DataType = attrs?.dtype;
  if (xv == null) return null;
  const shape = x.shape.slice();
  if (dtype === x.dtype) {
    be.incRef(x.dataId); // same data, as the stock kernel's identity
    return { dataId: x.dataId, shape, dtype };
  }
  if (dtype === "float32" && x.dtype !== "float32") {
    return be.makeTensorInfo(shape, "float32", new Float32Array(xv));
  }
  if (dtype === "int32" && x.dtype === "float32") {
    return be.makeTensorInfo(shape, "int32", new Int32Array(xv));
  }
  if (dtype === "bool" && (x.dtype === "float32" || x.dtype === "int32")) {
    const out = new Uint8Array(xv.length);
    for (let i = 0; i < xv.length; i++) out[i] = xv[i] !== 0 ? 1 : 0;
    return be.makeTensorInfo(shape, "bool", out);
  }
  return null;
};

/** Select (tf.where) with a condition of the same shape as both branches. */
export const select: FastKernel = ({ inputs, backend }: KernelArgs) => {
  const be = backend as CpuBackend;
  const { condition, t, e } = inputs;
  const cv = typed(be, condition), tv = typed(be, t), ev = typed(be, e);
  if (cv == null || tv == null || ev == null || t.dtype !== e.dtype) return null;
  if (cv.length !== tv.length || tv.length !== ev.length) return null;
  if (condition.shape.length !== t.shape.length) return null;
  const out = like(tv, tv.length);
  for (let i = 0; i < cv.length; i++) out[i] = cv[i] === 1 ? tv[i] : ev[i];
  return be.makeTensorInfo(t.shape.slice(), t.dtype, out);
};

/** GatherV2 with batchDims 0 along any axis: copies rows. */
export const gatherV2: FastKernel = ({ inputs, attrs, backend }: KernelArgs) => {
  const be = backend as CpuBackend;
  const { x, indices } = inputs;
  const xv = typed(be, x);
  const iv = be.data.get(indices.dataId).values;
  if (xv == null || !(iv instanceof Int32Array) || (attrs?.batchDims ?? 0) !== 0) return null;
  let axis: number;
  try {
    axis = tf.util.parseAxisParam(attrs?.axis ?? 0, x.shape)[0];
  } catch {
    return null;
  }
  const dim = x.shape[axis];
  for (let i = 0; i < iv.length; i++) if (!(iv[i] >= 0 && iv[i] < dim)) return null; // stock throws
  const outer = sizeOf(x.shape.slice(0, axis)), inner = sizeOf(x.shape.slice(axis + 1));
  const outShape = [...x.shape.slice(0, axis), ...indices.shape, ...x.shape.slice(axis + 1)];
  const n = iv.length;
  const out = like(xv, outer * n * inner, be);
  for (let o = 0; o < outer; o++) {
    for (let i = 0; i < n; i++) {
      const src = (o * dim + iv[i]) * inner;
      const dst = (o * n + i) * inner;
      if (inner === 1) out[dst] = xv[src];
      else out.set(xv.subarray(src, src + inner), dst);
    }
  }
  return be.makeTensorInfo(outShape, x.dtype, out);
};

/** UnsortedSegmentSum of float32 rows; ids outside [0, numSegments) are dropped (as stock). */
export const unsortedSegmentSum: FastKernel = ({ inputs, attrs, backend }: KernelArgs) => {
  const be = backend as CpuBackend;
  const { x, segmentIds } = inputs;
  const xv = f32(be, x);
  const ids = be.data.get(segmentIds.dataId).values;
  const numSegments: number = attrs?.numSegments;
  if (xv == null || !(ids instanceof Int32Array) || !(numSegments >= 0)) return null;
  const k = segmentIds.shape.length;
  if (k > x.shape.length) return null;
  for (let i = 0; i < k; i++) if (segmentIds.shape[i] !== x.shape[i]) return null;
  const innerShape = x.shape.slice(k);
  const inner = sizeOf(innerShape);
  // Rows grouped by segment and summed in float64 (like the stock kernel), one segment at a time.
  const order = Array.from({ length: ids.length }, (_, i) => i).sort((a, b) => ids[a] - ids[b]);
  const out = allocF32(be, numSegments * inner, true);
  const acc = new Float64Array(inner);
  for (let g = 0; g < order.length;) {
    const s = ids[order[g]];
    let end = g;
    while (end < order.length && ids[order[end]] === s) end++;
    if (s >= 0 && s < numSegments) {
      acc.fill(0);
      for (let r = g; r < end; r++) {
        const src = order[r] * inner;
        for (let j = 0; j < inner; j++) acc[j] += xv[src + j];
      }
      const dst = s * inner;
      for (let j = 0; j < inner; j++) out[dst + j] = acc[j];
    }
    g = end;
  }
  return be.makeTensorInfo([numSegments, ...innerShape], "float32", out);
};

/** PadV2 of a numeric tensor: fill with the constant, then copy the input's innermost rows. */
export const padV2: FastKernel = ({ inputs, attrs, backend }: KernelArgs) => {
  const be = backend as CpuBackend;
  const x = inputs.x;
  const xv = typed(be, x);
  const paddings: [number, number][] = attrs?.paddings;
  const rank = x.shape.length;
  if (xv == null || paddings == null || paddings.length !== rank || rank === 0) return null;
  const outShape = x.shape.map((s, i) => paddings[i][0] + s + paddings[i][1]);
  const out = like(xv, sizeOf(outShape), be);
  out.fill(attrs?.constantValue ?? 0);
  if (xv.length === 0) return be.makeTensorInfo(outShape, x.dtype, out);
  const outStrides = new Array<number>(rank);
  for (let i = rank - 1, s = 1; i >= 0; i--) {
    outStrides[i] = s;
    s *= outShape[i];
  }
  const last = x.shape[rank - 1];
  const rows = xv.length / last;
  const idx = new Array<number>(rank - 1).fill(0);
  for (let r = 0; r < rows; r++) {
    let dst = paddings[rank - 1][0];
    for (let d = 0; d < rank - 1; d++) dst += (idx[d] + paddings[d][0]) * outStrides[d];
    out.set(xv.subarray(r * last, (r + 1) * last), dst);
    for (let d = rank - 2; d >= 0; d--) { // odometer over the outer dims
      if (++idx[d] < x.shape[d]) break;
      idx[d] = 0;
    }
  }
  return be.makeTensorInfo(outShape, x.dtype, out);
};

/** ScatterNd of float32 updates with duplicate indices summed (in order, in float32 like stock). */
export const scatterNd: FastKernel = ({ inputs, attrs, backend }: KernelArgs) => {
  const be = backend as CpuBackend;
  const { indices, updates } = inputs;
  const uv = f32(be, updates);
  const iv = be.data.get(indices.dataId).values;
  const shape: number[] = attrs?.shape;
  if (uv == null || !(iv instanceof Int32Array) || shape == null) return null;
  let info;
  try {
    info = tf.backend_util.calculateShapes(updates as tf.Tensor, indices as tf.Tensor, shape);
  } catch {
    return null;
  }
  const { sliceRank, numUpdates, sliceSize, strides, outputSize } = info;
  const out = allocF32(be, outputSize, true);
  const slices = outputSize / sliceSize;
  for (let i = 0; i < numUpdates; i++) {
    let flat = 0;
    for (let j = 0; j < sliceRank; j++) flat += iv[i * sliceRank + j] * strides[j];
    if (!(flat >= 0 && flat < slices)) return null; // the stock kernel throws its error
    const dst = flat * sliceSize, src = i * sliceSize;
    for (let k = 0; k < sliceSize; k++) out[dst + k] += uv[src + k];
  }
  return be.makeTensorInfo(shape.slice(), "float32", out);
};
