/**
 * Overrides of stock tfjs cpu kernels: matrix products through a system BLAS (matmul.ts,
 * blas.ts), elementwise and broadcast ops (elementwise.ts), reductions and softmax (reduce.ts),
 * transposes, casts, gathers and scatters (shape.ts). Each handles the common cases and returns
 * null for the rest, which then run on the stock kernel of the same name.
 */
import * as tf from "@tensorflow/tfjs";
import type { Blas } from "./blas.ts";
import { makeBatchMatMul, makeFusedMatMul } from "./matmul.ts";
import { BINARY_LOOPS, makeBinary, makeUnary, pow, step, UNARY_NAMES } from "./elementwise.ts";
import { makeReduce, softmax } from "./reduce.ts";
import {
  cast,
  gatherV2,
  padV2,
  scatterNd,
  select,
  tile,
  transpose,
  unsortedSegmentSum,
} from "./shape.ts";
import type { FastKernel } from "../util.ts";

/** The overrides as [stock kernel name, fast kernel]; matrix products only with a BLAS. */
export function cpuOverrides(blas: Blas | null): [string, FastKernel][] {
  const out: [string, FastKernel][] = [];
  if (blas != null) {
    out.push([tf.BatchMatMul, makeBatchMatMul(blas)], [tf._FusedMatMul, makeFusedMatMul(blas)]);
  }
  for (const [name, loops] of Object.entries(BINARY_LOOPS)) out.push([name, makeBinary(loops)]);
  for (const name of UNARY_NAMES) out.push([name, makeUnary(name)]);
  out.push(
    [tf.Step, step],
    [tf.Pow, pow],
    [tf.Sum, makeReduce("sum")],
    [tf.Mean, makeReduce("mean")],
    [tf.Max, makeReduce("max")],
    [tf.Min, makeReduce("min")],
    [tf.Softmax, softmax],
    [tf.Transpose, transpose],
    [tf.Tile, tile],
    [tf.Cast, cast],
    [tf.Select, select],
    [tf.GatherV2, gatherV2],
    [tf.UnsortedSegmentSum, unsortedSegmentSum],
    [tf.ScatterNd, scatterNd],
    [tf.PadV2, padV2],
  );
  return out;
}
