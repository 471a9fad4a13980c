/** Fast cpu kernels (lib/kernels) give the stock kernels' results, case by case. */
import * as tf from "@tensorflow/tfjs";
import assert from "node:assert/strict";
import { loadBlas } from "../lib/kernels/overrides/blas.ts";
import { fastKernelNames, registerFastKernels, restoreStockKernels } from "../lib/kernels/mod.ts";
import { expShiftScale, fastExp, rowMax, sumExpShift } from "../lib/kernels/fastmath.ts";
import { simdRows } from "../lib/kernels/simd.ts";
import { assertClose, assertFastMatchesStock, cpu, rand } from "./kernels_helpers.ts";

await cpu();
const blas = loadBlas();
const noBlas = blas == null;

Deno.test(
  "loadBlas() opens a BLAS here and cblas_sgemm computes all four transpose cases on subarrays",
  {
    ignore: noBlas,
  },
  () => {
    const m = 3, n = 4, k = 5;
    const a = Float32Array.from({ length: 2 + m * k }, (_, i) => Math.sin(i));
    const b = Float32Array.from({ length: 1 + k * n }, (_, i) => Math.cos(i));
    for (const ta of [false, true]) {
      for (const tb of [false, true]) {
        const av = a.subarray(2), bv = b.subarray(1);
        const c = new Float32Array(1 + m * n).fill(7);
        blas!.sgemm(ta, tb, m, n, k, 1, av, bv, 0, c.subarray(1));
        assert.equal(c[0], 7, "writes only inside the subarray");
        for (let i = 0; i < m; i++) {
          for (let j = 0; j < n; j++) {
            let s = 0;
            for (let p = 0; p < k; p++) {
              s += (ta ? av[p * m + i] : av[i * k + p]) * (tb ? bv[j * k + p] : bv[p * n + j]);
            }
            assertClose([c[1 + i * n + j]], [s], 1e-5, 1e-5, `ta=${ta} tb=${tb}`);
          }
        }
      }
    }
  },
);

Deno.test("registerFastKernels() replaces the GPT step's kernels and adds LlmSparseXent, LlmSparseXentGrad, LlmAdamW", () => {
  const status = registerFastKernels({ force: true });
  assert.ok(status.enabled, status.reason);
  const names = fastKernelNames();
  for (
    const k of ["Add", "Sub", "Multiply", "RealDiv", "Softmax", "Sum", "Mean", "Max", "Transpose"]
  ) {
    assert.ok(names.includes(k), k);
  }
  for (
    const k of ["GatherV2", "UnsortedSegmentSum", "LlmSparseXent", "LlmSparseXentGrad", "LlmAdamW"]
  ) {
    assert.ok(names.includes(k), k);
    assert.ok(tf.getKernel(k, "cpu") != null, k);
  }
  if (!noBlas) assert.ok(names.includes("BatchMatMul") && names.includes("_FusedMatMul"));
});

Deno.test("LLM_FAST_KERNELS=0 leaves the stock kernels in place", () => {
  Deno.env.set("LLM_FAST_KERNELS", "0");
  try {
    const status = registerFastKernels({ force: true });
    assert.equal(status.enabled, false);
    assert.match(status.reason, /LLM_FAST_KERNELS=0/);
    assert.equal(tf.getKernel("LlmSparseXent", "cpu"), undefined);
  } finally {
    Deno.env.delete("LLM_FAST_KERNELS");
    restoreStockKernels();
  }
  assert.ok(registerFastKernels({ force: true }).enabled);
});

Deno.test("BatchMatMul matches stock for 2-D..4-D, single rows, all transposes and broadcast batches", () => {
  const cases: [number[], number[]][] = [
    [[5, 7], [7, 3]],
    [[2, 5, 7], [2, 7, 3]],
    [[2, 5, 7], [1, 7, 3]],
    [[1, 5, 7], [2, 7, 3]],
    [[2, 3, 5, 7], [2, 3, 7, 4]],
    [[2, 3, 5, 7], [7, 4]],
    [[6, 7], [2, 3, 7, 4]],
    [[0, 7], [7, 3]],
    [[4, 0], [0, 3]],
    // Single rows (generation with a KV cache) take the sgemv path.
    [[1, 7], [7, 3]],
    [[3, 1, 7], [3, 7, 5]],
    [[2, 1, 7], [7, 5]],
  ];
  let seed = 1;
  for (const [sa, sb] of cases) {
    for (const ta of [false, true]) {
      for (const tb of [false, true]) {
        const ash = sa.slice(), bsh = sb.slice();
        if (ta) {
          [ash[ash.length - 2], ash[ash.length - 1]] = [ash[ash.length - 1], ash[ash.length - 2]];
        }
        if (tb) {
          [bsh[bsh.length - 2], bsh[bsh.length - 1]] = [bsh[bsh.length - 1], bsh[bsh.length - 2]];
        }
        const s = seed++;
        assertFastMatchesStock(
          () => tf.matMul(rand(ash, s), rand(bsh, s + 100), ta, tb),
          `matMul ${ash} x ${bsh} ta=${ta} tb=${tb}`,
          1e-5,
          1e-5,
        );
      }
    }
  }
});

Deno.test("_FusedMatMul matches stock with bias and relu/elu/leakyrelu/sigmoid/relu6/linear", () => {
  for (const activation of ["linear", "relu", "elu", "leakyrelu", "sigmoid", "relu6"] as const) {
    for (const bias of [[3], [], [5, 3]]) {
      assertFastMatchesStock(
        () =>
          tf.fused.matMul({
            a: rand([2, 5, 7], 3).mul(2),
            b: rand([7, 3], 4),
            bias: rand(bias, 5),
            activation,
          }),
        `fused ${activation} bias [${bias}]`,
        1e-5,
        1e-5,
      );
    }
  }
  assertFastMatchesStock(
    () => tf.fused.matMul({ a: rand([4, 6], 6), b: rand([5, 6], 7), transposeB: true }),
    "fused no bias, transposeB",
  );
});

Deno.test("gradients of fused matMul with bias and relu match stock", () => {
  const a = rand([4, 6], 8), b = rand([6, 5], 9), bias = rand([5], 10);
  assertFastMatchesStock(() => {
    const g = tf.grads((x: tf.Tensor, w: tf.Tensor, c: tf.Tensor) =>
      tf.fused.matMul({ a: x, b: w, bias: c, activation: "relu" }).square().sum()
    );
    return g([a, b, bias]);
  }, "fused grads");
});

const binaryOps: [string, (a: tf.Tensor, b: tf.Tensor) => tf.Tensor][] = [
  ["add", tf.add],
  ["sub", tf.sub],
  ["mul", tf.mul],
  ["div", tf.div],
  ["maximum", tf.maximum],
  ["minimum", tf.minimum],
  ["squaredDifference", tf.squaredDifference],
];

Deno.test("Add/Sub/Multiply/RealDiv/Maximum/Minimum/SquaredDifference match stock for every broadcast layout", () => {
  const layouts: [number[], number[]][] = [
    [[2, 3, 4], [2, 3, 4]], // same shape
    [[2, 3, 4], []], // scalar right
    [[], [2, 3, 4]], // scalar left
    [[2, 3, 4], [4]], // bias
    [[4], [2, 3, 4]],
    [[2, 3, 4], [3, 4]], // positions
    [[2, 3, 4], [2, 3, 1]], // LayerNorm statistics
    [[2, 3, 1], [2, 3, 4]],
    [[2, 3, 4], [1, 3, 1]], // middle run
    [[2, 3, 4], [1, 1, 1]],
    [[2, 1, 4], [1, 3, 1]], // both broadcast: stock fallback
    [[3, 1], [1, 4]],
  ];
  let seed = 20;
  for (const [name, op] of binaryOps) {
    for (const [sa, sb] of layouts) {
      const s = seed++;
      assertFastMatchesStock(
        () => op(rand(sa, s), rand(sb, s + 50, 0.5, 2)),
        `${name} [${sa}] [${sb}]`,
      );
    }
  }
  assertFastMatchesStock(
    () => tf.add(tf.tensor([1, 2, 3], [3], "int32"), tf.scalar(4, "int32")),
    "int32 add",
  );
  const special = tf.tensor([NaN, Infinity, -Infinity, 0, -0, 1]);
  for (const [name, op] of binaryOps) {
    assertFastMatchesStock(
      () => op(special, tf.tensor([1, 0, NaN, 0, 2, -Infinity])),
      `${name} special`,
    );
  }
});

Deno.test("unary kernels (exp, tanh, sqrt, rsqrt, square, neg, log, reciprocal, floor, step/relu grad) match stock", () => {
  const x = tf.concat([
    rand([200], 31, -100, 100),
    rand([200], 32, -3, 3),
    tf.tensor([NaN, Infinity, -Infinity, 0, -0, 88.7, 89, -87, -104, -200]),
  ]);
  const pos = x.abs();
  const ops: [string, () => tf.Tensor][] = [
    ["exp", () => tf.exp(x)],
    ["tanh", () => tf.tanh(x)],
    ["sqrt", () => tf.sqrt(pos)],
    ["sqrt negative", () => tf.sqrt(x)],
    ["rsqrt", () => tf.rsqrt(pos)],
    ["square", () => tf.square(x)],
    ["neg", () => tf.neg(x)],
    ["log", () => tf.log(pos)],
    ["reciprocal", () => tf.reciprocal(x)],
    ["floor", () => tf.floor(x)],
    ["relu grad (Step)", () => tf.grad((t: tf.Tensor) => tf.relu(t).sum())(x)],
  ];
  for (const [name, f] of ops) assertFastMatchesStock(f, name, 3e-7, 0);
});

Deno.test("fastExp is within 2e-7 relative of Math.exp and gives 0, Infinity, NaN at the edges in float32", () => {
  // Relative error in float32's normal range, at most one step of 2^-149 below it.
  for (let x = -103; x < 88.7; x += 0.0137) {
    const e = Math.fround(Math.exp(x));
    assert.ok(Math.abs(Math.fround(fastExp(x)) - e) <= 2e-7 * e + 1.5e-45, `x=${x}`);
  }
  // Results are meant to be stored as float32: out of range they round to 0 / Infinity there.
  assert.equal(Math.fround(fastExp(-Infinity)), 0);
  assert.equal(Math.fround(fastExp(Infinity)), Infinity);
  assert.equal(Math.fround(fastExp(89)), Infinity);
  assert.ok(Number.isNaN(fastExp(NaN)));
  assert.equal(fastExp(0), 1);
});

Deno.test("the WebAssembly SIMD row kernels (max, sum of exp, exp-scale) agree with the JS ones", {
  ignore: simdRows() == null,
}, () => {
  const s = simdRows()!;
  for (const n of [1, 3, 4, 7, 8, 9, 17, 1000, 50257]) {
    const x = Float32Array.from({ length: n + 3 }, (_, i) => 12 * Math.sin(i * 1.7 + n));
    s.load(x, 3, n);
    const m = s.max();
    assert.equal(m, rowMax(x, 3, n), `max n=${n}`);
    assertClose([s.sumExp(m)], [sumExpShift(x, 3, n, m)], 2e-6, 0, `sumExp n=${n}`);
    const lse = m + Math.log(sumExpShift(x, 3, n, m)) + 1e-3;
    s.expScale(lse, -0.75);
    const got = new Float32Array(n + 2).fill(5);
    s.store(got, 1, n);
    const want = new Float32Array(n);
    expShiftScale(x, 3, want, 0, n, lse, -0.75);
    assertClose(got.subarray(1, n + 1), want, 3e-6, 1e-30, `expScale n=${n}`);
    assert.equal(got[0], 5);
    assert.equal(got[n + 1], 5, "writes n elements only");
  }
  const edge = new Float32Array([NaN, -Infinity, Infinity, 0, -87, -100, 88, 89, 1]);
  s.load(edge, 0, edge.length);
  s.expScale(0, 1);
  const out = new Float32Array(edge.length);
  s.store(out, 0, edge.length);
  assert.ok(Number.isNaN(out[0]), "NaN");
  assert.deepEqual([out[1], out[2], out[3]], [0, Infinity, 1], "-Infinity, Infinity, 0");
  assert.deepEqual([out[4], out[5]], [0, 0], "below e^-86.5 (float32 near-subnormal) flushes to 0");
  assertClose([out[6], out[7], out[8]], [Math.exp(88), Infinity, Math.E], 1e-6, 0, "e^88, e^89, e");
});

Deno.test("Pow with a scalar exponent (GELU's x^3) matches stock", () => {
  const x = tf.concat([rand([100], 40, -3, 3), tf.tensor([0, -0, NaN, Infinity, -Infinity])]);
  for (const e of [2, 3, 0.5, -1, 2.5, 1, 0]) {
    assertFastMatchesStock(() => tf.pow(x, tf.scalar(e)), `pow ${e}`, 3e-7, 0);
  }
  assertFastMatchesStock(() => tf.pow(x, rand([105], 41)), "pow tensor exponent (stock)", 3e-7, 0);
});

Deno.test("Sum/Mean/Max/Min match stock over inner axes, outer axes, keepDims and other axes", () => {
  const x = rand([3, 4, 5], 50);
  const axesCases: (number | number[] | undefined)[] = [
    -1,
    2,
    [1, 2],
    0,
    [0, 1],
    1,
    [0, 2],
    undefined,
  ];
  for (const axis of axesCases) {
    for (const keep of [false, true]) {
      assertFastMatchesStock(() => tf.sum(x, axis, keep), `sum ${axis} ${keep}`);
      assertFastMatchesStock(() => tf.mean(x, axis, keep), `mean ${axis} ${keep}`);
      assertFastMatchesStock(() => tf.max(x, axis, keep), `max ${axis} ${keep}`);
      assertFastMatchesStock(() => tf.min(x, axis, keep), `min ${axis} ${keep}`);
    }
  }
  const withNaN = tf.tensor([[1, NaN, 3], [4, 5, 6], [NaN, 0, -1]]);
  for (const axis of [0, 1]) {
    assertFastMatchesStock(() => tf.max(withNaN, axis), `max NaN ${axis}`);
    assertFastMatchesStock(() => tf.min(withNaN, axis), `min NaN ${axis}`);
    assertFastMatchesStock(() => tf.sum(withNaN, axis), `sum NaN ${axis}`);
  }
  assertFastMatchesStock(
    () => tf.sum(tf.tensor([[1, 2], [3, 4]], [2, 2], "int32"), 1),
    "int32 sum",
  );
});

Deno.test("Softmax over the last axis matches stock, with -Infinity masks and 4-D scores", () => {
  assertFastMatchesStock(() => tf.softmax(rand([3, 7], 60, -20, 20)), "softmax 2-D", 1e-6, 1e-7);
  const mask = tf.linalg.bandPart(tf.ones([5, 5]), -1, 0).equal(0);
  const scores = rand([2, 3, 5, 5], 61, -5, 5);
  assertFastMatchesStock(
    () =>
      tf.softmax(
        tf.where(tf.broadcastTo(mask, [2, 3, 5, 5]), tf.fill([2, 3, 5, 5], -Infinity), scores),
      ),
    "masked softmax 4-D",
    1e-6,
    1e-7,
  );
  assertFastMatchesStock(() => tf.softmax(tf.fill([2, 3], -Infinity)), "all -Infinity row");
});

Deno.test("Transpose, Tile (broadcastTo), Cast and Select (where) match stock", () => {
  const x4 = rand([2, 3, 4, 5], 70);
  for (const perm of [[0, 2, 1, 3], [0, 1, 3, 2], [3, 2, 1, 0], [0, 1, 2, 3], [1, 0, 2, 3]]) {
    assertFastMatchesStock(() => tf.transpose(x4, perm), `transpose ${perm}`, 0, 0);
  }
  assertFastMatchesStock(() => tf.transpose(rand([3, 4], 71)), "transpose 2-D", 0, 0);
  assertFastMatchesStock(
    () => tf.transpose(tf.range(0, 24, 1, "int32").reshape([2, 3, 4]), [2, 0, 1]),
    "int32",
    0,
    0,
  );
  assertFastMatchesStock(() => tf.tile(rand([2, 3], 72), [3, 2]), "tile", 0, 0);
  assertFastMatchesStock(
    () => tf.broadcastTo(rand([1, 1, 3, 3], 73), [2, 4, 3, 3]),
    "broadcastTo",
    0,
    0,
  );
  assertFastMatchesStock(
    () => tf.tile(tf.tensor([true, false], [2], "bool"), [3]).cast("float32"),
    "tile bool",
    0,
    0,
  );
  const f = tf.tensor([-2.7, -0.5, 0, 0.5, 2.7, NaN, 3e9]);
  assertFastMatchesStock(() => f.cast("int32"), "cast float->int", 0, 0);
  assertFastMatchesStock(() => f.cast("bool").cast("float32"), "cast float->bool", 0, 0);
  assertFastMatchesStock(
    () => tf.tensor([1, 0, 7], [3], "int32").cast("float32").add(0.5),
    "int->float",
    0,
    0,
  );
  const cond = tf.tensor([[true, false], [false, true]]);
  assertFastMatchesStock(() => tf.where(cond, rand([2, 2], 74), rand([2, 2], 75)), "where", 0, 0);
});

Deno.test("PadV2 (slice gradient), ScatterNd (scatter-add with duplicates) and same-dtype Cast match stock", () => {
  assertFastMatchesStock(
    () => tf.pad(rand([2, 3, 4], 85), [[1, 0], [0, 2], [3, 1]]),
    "pad 3-D",
    0,
    0,
  );
  assertFastMatchesStock(() => tf.pad(rand([5], 86), [[2, 3]], 1.5), "pad 1-D constant", 0, 0);
  assertFastMatchesStock(
    () => tf.grad((t: tf.Tensor) => t.slice([1, 0], [3, 4]).square().sum())(rand([6, 4], 87)),
    "slice gradient",
    0,
    0,
  );
  const idx = tf.tensor2d([[3], [0], [3], [9]], [4, 1], "int32");
  assertFastMatchesStock(
    () => tf.scatterND(idx, rand([4, 5], 88), [10, 5]),
    "scatterND rows",
    0,
    0,
  );
  const idx2 = tf.tensor2d([[1, 2], [0, 0], [1, 2]], [3, 2], "int32");
  assertFastMatchesStock(
    () => tf.scatterND(idx2, rand([3], 89), [2, 3]),
    "scatterND elements",
    0,
    0,
  );
  assert.throws(() =>
    tf.scatterND(tf.tensor2d([[10]], [1, 1], "int32"), rand([1, 5], 90), [10, 5])
  );
  assertFastMatchesStock(() => rand([3], 91).cast("float32"), "cast float32 -> float32", 0, 0);
});

Deno.test("GatherV2 (embedding lookup) and UnsortedSegmentSum (its gradient) match stock", () => {
  const table = rand([11, 4], 80);
  const ids = tf.tensor([[3, 0, 3], [10, 7, 3]], [2, 3], "int32");
  assertFastMatchesStock(() => tf.gather(table, ids), "gather axis 0", 0, 0);
  assertFastMatchesStock(
    () => tf.gather(table, tf.tensor([1, 3], [2], "int32"), 1),
    "gather axis 1",
    0,
    0,
  );
  assertFastMatchesStock(
    () => tf.grad((t: tf.Tensor) => tf.gather(t, ids).mul(rand([2, 3, 4], 81)).sum())(table),
    "embedding gradient",
  );
  assertFastMatchesStock(
    () => tf.unsortedSegmentSum(rand([6, 3], 82), tf.tensor([2, 0, 2, -1, 9, 1], [6], "int32"), 4),
    "segment sum with out-of-range ids",
  );
  assert.throws(() => tf.gather(table, tf.tensor([11], [1], "int32")).dataSync(), /index value 11/);
});

Deno.test("gradients of a pre-LayerNorm attention block through tf.grad match stock", () => {
  const B = 2, T = 5, E = 8, H = 2, D = E / H;
  const x = rand([B, T, E], 90);
  const w = rand([E, 3 * E], 91, -0.5, 0.5);
  const scale = rand([E], 92, 0.5, 1.5), shift = rand([E], 93);
  const pos = rand([T, E], 94);
  const mask = tf.linalg.bandPart(tf.ones([T, T]), -1, 0).equal(0);
  const f = (xx: tf.Tensor, ww: tf.Tensor, sc: tf.Tensor, sh: tf.Tensor, p: tf.Tensor) => {
    const h0 = xx.add(p);
    const mean = h0.mean(-1, true);
    const variance = h0.sub(mean).square().mean(-1, true);
    const h = h0.sub(mean).div(variance.add(1e-5).sqrt()).mul(sc).add(sh);
    const qkv = tf.matMul(h.reshape([B * T, E]), ww).reshape([B, T, 3, H, D]);
    const [q, k, v] = tf.split(qkv, 3, 2).map((t) =>
      t.reshape([B, T, H, D]).transpose([0, 2, 1, 3])
    );
    const s = tf.matMul(q, k, false, true).div(Math.sqrt(D));
    const a = tf.softmax(
      tf.where(tf.broadcastTo(mask, [B, H, T, T]), tf.fill([B, H, T, T], -Infinity), s),
    );
    const ctx = tf.matMul(a, v).transpose([0, 2, 1, 3]).reshape([B, T, E]);
    const g = ctx.mul(0.5).mul(ctx.add(tf.pow(ctx, 3).mul(0.044715)).mul(0.79788456).tanh().add(1));
    return g.add(h0).square().mean();
  };
  assertFastMatchesStock(() => tf.grads(f)([x, w, scale, shift, pos]), "block grads", 1e-4, 1e-6);
});
