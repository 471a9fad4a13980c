/**
 * Elementwise float32 kernels without the stock kernels' per-element index arithmetic.
 *
 * Binary ops (Add, Sub, Multiply, RealDiv, Maximum, Minimum, SquaredDifference) take a fast path
 * when one input has the output's layout and the other is the same shape, a scalar, or equals the
 * output on one contiguous run of dims and is 1 elsewhere: `[..., N]` with `[N]` (bias, scale),
 * `[B, T, E]` with `[T, E]` (positions), `[B, T, E]` with `[B, T, 1]` (LayerNorm statistics).
 * Unary ops: Exp, Tanh, Sqrt, Rsqrt, Square, Neg, Log, Reciprocal, Floor, Step, Pow (scalar).
 */
import * as tf from "@tensorflow/tfjs";
import { fastExp, fastTanh } from "../fastmath.ts";
import { allocF32 } from "../pool.ts";
import {
  type CpuBackend,
  f32,
  type FastKernel,
  type KernelArgs,
  sameShape,
  sizeOf,
} from "../util.ts";

/** out[o+j] = x[xo+j] OP y[yo+j], out[o+j] = x[xo+j] OP s, out[o+j] = s OP y[yo+j]. */
interface BinaryLoops {
  vv(
    out: Float32Array,
    o: number,
    x: Float32Array,
    xo: number,
    y: Float32Array,
    yo: number,
    n: number,
  ): void;
  vs(out: Float32Array, o: number, x: Float32Array, xo: number, s: number, n: number): void;
  sv(out: Float32Array, o: number, s: number, y: Float32Array, yo: number, n: number): void;
}

// One explicit loop per op and shape so that V8 compiles each to a tight monomorphic loop.
const ADD: BinaryLoops = {
  vv: (out, o, x, xo, y, yo, n) => {
    for (let j = 0; j < n; j++) out[o + j] = x[xo + j] + y[yo + j];
  },
  vs: (out, o, x, xo, s, n) => {
    for (let j = 0; j < n; j++) out[o + j] = x[xo + j] + s;
  },
  sv: (out, o, s, y, yo, n) => {
    for (let j = 0; j < n; j++) out[o + j] = s + y[yo + j];
  },
};
const SUB: BinaryLoops = {
  vv: (out, o, x, xo, y, yo, n) => {
    for (let j = 0; j < n; j++) out[o + j] = x[xo + j] - y[yo + j];
  },
  vs: (out, o, x, xo, s, n) => {
    for (let j = 0; j < n; j++) out[o + j] = x[xo + j] - s;
  },
  sv: (out, o, s, y, yo, n) => {
    for (let j = 0; j < n; j++) out[o + j] = s - y[yo + j];
  },
};
const MUL: BinaryLoops = {
  vv: (out, o, x, xo, y, yo, n) => {
    for (let j = 0; j < n; j++) out[o + j] = x[xo + j] * y[yo + j];
  },
  vs: (out, o, x, xo, s, n) => {
    for (let j = 0; j < n; j++) out[o + j] = x[xo + j] * s;
  },
  sv: (out, o, s, y, yo, n) => {
    for (let j = 0; j < n; j++) out[o + j] = s * y[yo + j];
  },
};
const DIV: BinaryLoops = {
  vv: (out, o, x, xo, y, yo, n) => {
    for (let j = 0; j < n; j++) out[o + j] = x[xo + j] / y[yo + j];
  },
  vs: (out, o, x, xo, s, n) => {
    for (let j = 0; j < n; j++) out[o + j] = x[xo + j] / s;
  },
  sv: (out, o, s, y, yo, n) => {
    for (let j = 0; j < n; j++) out[o + j] = s / y[yo + j];
  },
};
const SQDIFF: BinaryLoops = {
  vv: (out, o, x, xo, y, yo, n) => {
    for (let j = 0; j < n; j++) {
      const d = x[xo + j] - y[yo + j];
      out[o + j] = d * d;
    }
  },
  vs: (out, o, x, xo, s, n) => {
    for (let j = 0; j < n; j++) {
      const d = x[xo + j] - s;
      out[o + j] = d * d;
    }
  },
  sv: (out, o, s, y, yo, n) => {
    for (let j = 0; j < n; j++) {
      const d = s - y[yo + j];
      out[o + j] = d * d;
    }
  },
};
// tfjs' Maximum/Minimum: NaN-propagating like Math.max/Math.min.
const MAX: BinaryLoops = {
  vv: (out, o, x, xo, y, yo, n) => {
    for (let j = 0; j < n; j++) out[o + j] = Math.max(x[xo + j], y[yo + j]);
  },
  vs: (out, o, x, xo, s, n) => {
    for (let j = 0; j < n; j++) out[o + j] = Math.max(x[xo + j], s);
  },
  sv: (out, o, s, y, yo, n) => {
    for (let j = 0; j < n; j++) out[o + j] = Math.max(s, y[yo + j]);
  },
};
const MIN: BinaryLoops = {
  vv: (out, o, x, xo, y, yo, n) => {
    for (let j = 0; j < n; j++) out[o + j] = Math.min(x[xo + j], y[yo + j]);
  },
  vs: (out, o, x, xo, s, n) => {
    for (let j = 0; j < n; j++) out[o + j] = Math.min(x[xo + j], s);
  },
  sv: (out, o, s, y, yo, n) => {
    for (let j = 0; j < n; j++) out[o + j] = Math.min(s, y[yo + j]);
  },
};

/** Fast binary kernels by kernel name. */
export const BINARY_LOOPS: Record<string, BinaryLoops> = {
  [tf.Add]: ADD,
  [tf.Sub]: SUB,
  [tf.Multiply]: MUL,
  [tf.RealDiv]: DIV,
  [tf.SquaredDifference]: SQDIFF,
  [tf.Maximum]: MAX,
  [tf.Minimum]: MIN,
};

/**
 * How `small` (right-aligned) broadcasts into `big`: big = [outer, mid, inner] where small equals
 * big over the `mid` dims and is 1 elsewhere. Null when small is not of that form.
 */
export function broadcastRun(
  big: readonly number[],
  small: readonly number[],
): { outer: number; mid: number; inner: number } | null {
  const off = big.length - small.length;
  if (off < 0) return null;
  let lo = -1, hi = -1;
  for (let d = 0; d < small.length; d++) {
    if (small[d] !== 1) {
      if (lo < 0) lo = d + off;
      hi = d + off + 1;
    }
  }
  if (lo < 0) return { outer: sizeOf(big), mid: 1, inner: 1 };
  for (let d = lo; d < hi; d++) if (small[d - off] !== big[d]) return null;
  return {
    outer: sizeOf(big.slice(0, lo)),
    mid: sizeOf(big.slice(lo, hi)),
    inner: sizeOf(big.slice(hi)),
  };
}

/** out = a OP b for float32 inputs with the layouts described above, or null. */
export function binaryFloat(
  loops: BinaryLoops,
  a: tf.TensorInfo,
  av: Float32Array,
  b: tf.TensorInfo,
  bv: Float32Array,
  alloc: (n: number) => Float32Array = (n) => new Float32Array(n),
): { shape: number[]; values: Float32Array } | null {
  if (sameShape(a.shape, b.shape)) {
    const out = alloc(av.length);
    loops.vv(out, 0, av, 0, bv, 0, av.length);
    return { shape: a.shape.slice(), values: out };
  }
  let shape: number[];
  try {
    shape = tf.broadcast_util.assertAndGetBroadcastShape(a.shape, b.shape);
  } catch {
    return null;
  }
  const size = sizeOf(shape);
  if (av.length !== size && bv.length !== size) return null;
  const out = alloc(size);
  if (av.length === size) {
    if (bv.length === 1) {
      loops.vs(out, 0, av, 0, bv[0], size);
      return { shape, values: out };
    }
    const run = broadcastRun(shape, b.shape);
    if (run == null) return null;
    const { outer, mid, inner } = run;
    if (inner === 1) {
      for (let o = 0; o < outer; o++) loops.vv(out, o * mid, av, o * mid, bv, 0, mid);
    } else {
      for (let o = 0; o < outer; o++) {
        for (let m = 0; m < mid; m++) {
          const base = (o * mid + m) * inner;
          loops.vs(out, base, av, base, bv[m], inner);
        }
      }
    }
    return { shape, values: out };
  }
  if (bv.length === size) {
    if (av.length === 1) {
      loops.sv(out, 0, av[0], bv, 0, size);
      return { shape, values: out };
    }
    const run = broadcastRun(shape, a.shape);
    if (run == null) return null;
    const { outer, mid, inner } = run;
    if (inner === 1) {
      for (let o = 0; o < outer; o++) loops.vv(out, o * mid, av, 0, bv, o * mid, mid);
    } else {
      for (let o = 0; o < outer; o++) {
        for (let m = 0; m < mid; m++) {
          const base = (o * mid + m) * inner;
          loops.sv(out, base, av[m], bv, base, inner);
        }
      }
    }
    return { shape, values: out };
  }
  return null;
}

/** A binary kernel for float32 inputs (others fall back). */
export function makeBinary(loops: BinaryLoops): FastKernel {
  return ({ inputs, backend }: KernelArgs) => {
    const be = backend as CpuBackend;
    const { a, b } = inputs;
    const av = f32(be, a), bv = f32(be, b);
    if (av == null || bv == null) return null;
    const r = binaryFloat(loops, a, av, b, bv, (n) => allocF32(be, n, false));
    return r == null ? null : be.makeTensorInfo(r.shape, "float32", r.values);
  };
}

// ------------------------------------------------------------------------------------ unary

type UnaryLoop = (x: Float32Array, out: Float32Array) => void;

const UNARY_LOOPS: Record<string, UnaryLoop> = {
  [tf.Exp]: (x, out) => {
    for (let i = 0; i < x.length; i++) out[i] = fastExp(x[i]);
  },
  [tf.Tanh]: (x, out) => {
    for (let i = 0; i < x.length; i++) out[i] = fastTanh(x[i]);
  },
  [tf.Sqrt]: (x, out) => {
    for (let i = 0; i < x.length; i++) out[i] = Math.sqrt(x[i]);
  },
  [tf.Rsqrt]: (x, out) => {
    for (let i = 0; i < x.length; i++) out[i] = 1 / Math.sqrt(x[i]);
  },
  [tf.Square]: (x, out) => {
    for (let i = 0; i < x.length; i++) out[i] = x[i] * x[i];
  },
  [tf.Neg]: (x, out) => {
    for (let i = 0; i < x.length; i++) out[i] = -x[i];
  },
  [tf.Log]: (x, out) => {
    for (let i = 0; i < x.length; i++) out[i] = Math.log(x[i]);
  },
  [tf.Reciprocal]: (x, out) => {
    for (let i = 0; i < x.length; i++) out[i] = 1 / x[i];
  },
  [tf.Floor]: (x, out) => {
    for (let i = 0; i < x.length; i++) out[i] = Math.floor(x[i]);
  },
};

/** Fast unary kernel names. */
export const UNARY_NAMES: readonly string[] = Object.keys(UNARY_LOOPS);

/** A unary float32 kernel (other dtypes fall back). */
export function makeUnary(name: string): FastKernel {
  const loop = UNARY_LOOPS[name];
  return ({ inputs, backend }: KernelArgs) => {
    const be = backend as CpuBackend;
    const x = inputs.x;
    const xv = f32(be, x);
    if (xv == null) return null;
    const out = allocF32(be, xv.length, false);
    loop(xv, out);
    return be.makeTensorInfo(x.shape.slice(), "float32", out);
  };
}

/** Step (the relu gradient's helper): x > 0 ? 1 : alpha, NaN stays NaN. */
export const step: FastKernel = ({ inputs, attrs, backend }: KernelArgs) => {
  const be = backend as CpuBackend;
  const xv = f32(be, inputs.x);
  if (xv == null) return null;
  const alpha = attrs?.alpha ?? 0;
  const out = new Float32Array(xv.length);
  for (let i = 0; i < xv.length; i++) {
    const v = xv[i];
    out[i] = v > 0 ? 1 : v !== v ? NaN : alpha;
  }
  return be.makeTensorInfo(inputs.x.shape.slice(), "float32", out);
};

/** Pow with a float32 base and a scalar exponent (x*x*x for GELU's x^3). */
export const pow: FastKernel = ({ inputs, backend }: KernelArgs) => {
  const be = backend as CpuBackend;
  const { a, b } = inputs;
  const av = f32(be, a);
  const bv = be.data.get(b.dataId).values;
  if (av == null || sizeOf(b.shape) !== 1 || b.shape.length > a.shape.length) return null;
  if (!(bv instanceof Float32Array || bv instanceof Int32Array)) return null;
  const e = bv[0];
  const out = allocF32(be, av.length, false);
  const n = av.length;
  if (e === 2) { for (let i = 0; i < n; i++) out[i] = av[i] * av[i]; }
  else if (e === 3) { for (let i = 0; i < n; i++) out[i] = av[i] * av[i] * av[i]; }
  else if (e === 1) out.set(av);
  else if (e === -1) { for (let i = 0; i < n; i++) out[i] = 1 / av[i]; }
  else for (let i = 0; i < n; i++) out[i] = Math.pow(av[i], e);
  return be.makeTensorInfo(a.shape.slice(), "float32", out);
};
