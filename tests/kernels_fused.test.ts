/** The fused kernels (LlmSparseXent, LlmSparseXentGrad, LlmAdamW) and the output-buffer pool. */
import * as tf from "@tensorflow/tfjs";
import assert from "node:assert/strict";
import {
  ADAMW,
  adamwReference,
  poolStats,
  registerFastKernels,
  SPARSE_XENT,
  SPARSE_XENT_GRAD,
  sparseXentReference,
} from "../lib/kernels/mod.ts";
import { POOL_MIN_ELEMENTS } from "../lib/kernels/pool.ts";
import { setSimdEnabled } from "../lib/kernels/simd.ts";
import { assertClose, assertFastMatchesStock, cpu, rand } from "./kernels_helpers.ts";

await cpu();
assert.ok(registerFastKernels({ force: true }).enabled);

function xent(logits: tf.Tensor, targets: tf.Tensor, ignoreIndex = -100): tf.Tensor {
  return tf.engine().runKernel(SPARSE_XENT, { logits, targets }, { ignoreIndex }) as tf.Tensor;
}

Deno.test("LlmSparseXent gives logsumexp(logits) - logits[target] per row and 0 for ignoreIndex rows", () => {
  tf.tidy(() => {
    const logits = rand([6, 37], 1, -30, 30);
    const targets = tf.tensor([0, 36, -100, 5, 5, -100], [6], "int32");
    const fast = xent(logits, targets).dataSync();
    const ref = sparseXentReference(logits, targets).dataSync();
    assertClose(fast, ref, 1e-5, 1e-5, "losses");
    assert.equal(fast[2], 0);
    assert.equal(fast[5], 0);
    // By hand for row 0.
    const row = Array.from(logits.dataSync().slice(0, 37));
    const m = Math.max(...row);
    const lse = m + Math.log(row.reduce((s, v) => s + Math.exp(v - m), 0));
    assertClose([fast[0]], [lse - row[0]], 1e-6, 1e-6, "row 0");
  });
});

Deno.test("LlmSparseXent works on [B, T, V] logits with [B, T] targets and a custom ignoreIndex", () => {
  tf.tidy(() => {
    const logits = rand([2, 3, 11], 2);
    const targets = tf.tensor([[1, 2, 3], [7, 10, 0]], [2, 3], "int32");
    const fast = xent(logits, targets, 7);
    assert.deepEqual(fast.shape, [2, 3]);
    assertClose(fast.dataSync(), sparseXentReference(logits, targets, 7).dataSync(), 1e-5, 1e-5);
    assert.equal(fast.dataSync()[3], 0);
  });
});

Deno.test("LlmSparseXent rejects a target outside [0, V) that is not ignoreIndex", () => {
  const logits = rand([2, 5], 3), targets = tf.tensor([1, 5], [2], "int32");
  assert.throws(() => xent(logits, targets), /target 5 at row 1 is outside \[0, 5\)/);
  tf.dispose([logits, targets]);
});

Deno.test("the gradient of mean(LlmSparseXent) equals the stock gradient of the one-hot formula", () => {
  const logits = rand([8, 50], 4, -10, 10);
  const targets = tf.tensor([0, 49, -100, 3, 3, 17, -100, 25], [8], "int32");
  const valid = 6;
  const fastGrad = tf.tidy(() =>
    tf.grad((x: tf.Tensor) => xent(x, targets).sum().div(valid))(logits).dataSync()
  );
  const stockGrad = tf.tidy(() =>
    tf.grad((x: tf.Tensor) => sparseXentReference(x, targets).sum().div(valid))(logits).dataSync()
  );
  assertClose(fastGrad, stockGrad, 1e-5, 1e-7, "dlogits");
  // Ignored rows get exactly zero.
  for (const r of [2, 6]) assert.ok(fastGrad.slice(r * 50, r * 50 + 50).every((v) => v === 0));
  tf.dispose([logits, targets]);
});

Deno.test("LlmSparseXentGrad scales each row by its dy and matches (softmax - onehot) * dy", () => {
  tf.tidy(() => {
    const logits = rand([3, 9], 5);
    const targets = tf.tensor([2, 0, 8], [3], "int32");
    const dy = tf.tensor([0.5, -2, 0]);
    const got = (tf.engine().runKernel(SPARSE_XENT_GRAD, { logits, targets, dy }, {
      ignoreIndex: -100,
    }) as tf.Tensor).dataSync();
    const want = tf.softmax(logits).sub(tf.oneHot(targets, 9)).mul(dy.reshape([3, 1])).dataSync();
    assertClose(got, want, 1e-5, 1e-7);
  });
});

Deno.test("LlmSparseXent's forward and backward on a 50,257-wide head match a float64 computation", () => {
  const V = 50257;
  const logits = rand([4, V], 6, -8, 8);
  const targets = tf.tensor([50256, 0, 1234, -100], [4], "int32");
  const x = logits.dataSync(), t = targets.dataSync();
  // float64 reference: loss and dloss/dlogits of mean over the 4 rows (dy = 1/4).
  const lse = [0, 1, 2, 3].map((r) => {
    let m = -Infinity;
    for (let j = 0; j < V; j++) m = Math.max(m, x[r * V + j]);
    let s = 0;
    for (let j = 0; j < V; j++) s += Math.exp(x[r * V + j] - m);
    return m + Math.log(s);
  });
  tf.tidy(() => {
    const losses = xent(logits, targets).dataSync();
    for (let r = 0; r < 3; r++) assertClose([losses[r]], [lse[r] - x[r * V + t[r]]], 1e-6, 1e-6);
    assert.equal(losses[3], 0);
    const g = tf.grad((z: tf.Tensor) => xent(z, targets).mean())(logits).dataSync();
    const want = new Float64Array(4 * V);
    for (let r = 0; r < 3; r++) {
      for (let j = 0; j < V; j++) want[r * V + j] = Math.exp(x[r * V + j] - lse[r]) / 4;
      want[r * V + t[r]] -= 1 / 4;
    }
    assertClose(g, want, 3e-6, 1e-12, "dlogits"); // float32 SIMD exp with a split shift
    // The tf-ops route (logSumExp's composite gradient) is itself only good to ~2e-4 here, with
    // stock and fast kernels alike.
    const r = tf.grad((z: tf.Tensor) => sparseXentReference(z, targets).mean())(logits).dataSync();
    assertClose(r, want, 5e-4, 1e-9, "tf-ops dlogits");
  });
  tf.dispose([logits, targets]);
});

/** torch.optim.AdamW's update in float64 arithmetic, for a plain array. */
function torchAdamW(
  p: number[],
  g: number[],
  m: number[],
  v: number[],
  h: { lr: number; beta1: number; beta2: number; eps: number; weightDecay: number; step: number },
): void {
  for (let i = 0; i < p.length; i++) {
    p[i] *= 1 - h.lr * h.weightDecay;
    m[i] = h.beta1 * m[i] + (1 - h.beta1) * g[i];
    v[i] = h.beta2 * v[i] + (1 - h.beta2) * g[i] * g[i];
    const denom = Math.sqrt(v[i]) / Math.sqrt(1 - h.beta2 ** h.step) + h.eps;
    p[i] -= (h.lr / (1 - h.beta1 ** h.step)) * m[i] / denom;
  }
}

for (const n of [257, 40003]) {
  Deno.test(`LlmAdamW updates ${n} params, m and v in place as torch.optim.AdamW does over 3 steps (${n < 4096 ? "JS" : "SIMD"} path)`, () => {
    const param = tf.tidy(() => tf.variable(rand([n], 10)));
    const m = tf.tidy(() => tf.variable(tf.zeros([n]), false));
    const v = tf.tidy(() => tf.variable(tf.zeros([n]), false));
    const dataIds = [param.dataId, m.dataId, v.dataId];
    const p64 = Array.from(param.dataSync()),
      m64 = new Array(n).fill(0),
      v64 = new Array(n).fill(0);
    const before = tf.memory().numTensors;
    for (let step = 1; step <= 3; step++) {
      const h = { lr: 0.01, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.1, step };
      const grad = rand([n], 100 + step);
      torchAdamW(p64, Array.from(grad.dataSync()), m64, v64, h);
      tf.tidy(() => {
        const out = tf.engine().runKernel(ADAMW, { param, grad, m, v }, {
          ...h,
        }) as tf.Tensor[];
        assert.equal(out.length, 3);
        param.assign(out[0]); // what lib/train/adamw.ts does: a no-op on the same storage
        m.assign(out[1]);
        v.assign(out[2]);
      });
      grad.dispose();
    }
    assert.deepEqual([param.dataId, m.dataId, v.dataId], dataIds, "same storage");
    assert.equal(tf.memory().numTensors, before, "no tensors made or leaked");
    // m and v are stored in float32 between steps (as in torch): agreement to float32 rounding of
    // their terms (|0.1 g| <= 0.2, |0.001 g^2| <= 0.004).
    assertClose(param.dataSync(), p64, 1e-6, 1e-7, "param");
    assertClose(m.dataSync(), m64, 1e-6, 5e-8, "m");
    assertClose(v.dataSync(), v64, 1e-6, 1e-9, "v");
    tf.dispose([param, m, v]);
  });
}

Deno.test("LlmAdamW matches the tf-ops AdamW (adamwReference) on stock kernels", () => {
  const run = (fused: boolean) => {
    const param = tf.tidy(() => tf.variable(rand([5, 7], 20)));
    const m = tf.tidy(() => tf.variable(tf.zeros([5, 7]), false));
    const v = tf.tidy(() => tf.variable(tf.zeros([5, 7]), false));
    for (let step = 1; step <= 4; step++) {
      const h = { lr: 4e-4, beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1, step };
      tf.tidy(() => {
        const grad = rand([5, 7], 30 + step);
        if (fused) tf.engine().runKernel(ADAMW, { param, grad, m, v }, { ...h });
        else adamwReference(param, grad, m, v, h);
      });
    }
    const out = [param, m, v].map((t) => Float32Array.from(t.dataSync()));
    tf.dispose([param, m, v]);
    return out;
  };
  const [fused, ref] = [run(true), run(false)];
  fused.forEach((f, i) => assertClose(f, ref[i], 1e-5, 1e-8, ["param", "m", "v"][i]));
});

Deno.test("LlmAdamW copies on write when another tensor shares the parameter's storage", () => {
  const init = tf.ones([4]);
  const param = tf.variable(init); // shares init's storage while init lives
  const z = () => tf.tidy(() => tf.variable(tf.zeros([4]), false));
  const m = z(), v = z(), grad = tf.ones([4]);
  const h = { lr: 0.1, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0, step: 1 };
  const mId = m.dataId;
  tf.tidy(() => {
    const [p2, m2, v2] = tf.engine().runKernel(ADAMW, { param, grad, m, v }, h) as tf.Tensor[];
    assert.notEqual(p2.dataId, param.dataId, "param: a new tensor");
    assert.equal(m2.dataId, m.dataId, "m: in place");
    param.assign(p2);
    m.assign(m2);
    v.assign(v2);
  });
  assert.deepEqual(
    Array.from(init.dataSync()),
    [1, 1, 1, 1],
    "the sharing tensor keeps its values",
  );
  assertClose(param.dataSync(), [0.9, 0.9, 0.9, 0.9], 1e-6, 1e-7, "param took the step");
  assert.equal(m.dataId, mId);
  tf.dispose([init, param, m, v, grad]);
});

Deno.test("pooled output buffers are reused across steps and never while a dataSync() array is held", () => {
  const n = POOL_MIN_ELEMENTS;
  const a = rand([n], 40), b = rand([n], 41);
  const before = poolStats();
  for (let i = 0; i < 3; i++) tf.tidy(() => a.add(b).mul(b).sum().dataSync());
  assert.ok(poolStats().reused > before.reused, "reused");
  // A result read with dataSync() keeps its array: later kernels must not write into it.
  const c = a.add(b);
  const held = c.dataSync();
  const copy = Float32Array.from(held);
  c.dispose();
  for (let i = 0; i < 3; i++) tf.tidy(() => a.mul(b).sub(a).dataSync()[0]);
  assert.deepEqual(held, copy, "held array unchanged");
  // A slice is a view on its source's array on cpu: the source must not be recycled under it.
  const d = a.mul(2);
  const view = d.slice([0], [10]);
  const want = Float32Array.from(view.dataSync());
  d.dispose();
  for (let i = 0; i < 3; i++) tf.tidy(() => a.sub(b).dataSync()[0]);
  assert.deepEqual(view.dataSync(), want, "slice unchanged");
  tf.dispose([a, b, view]);
});

Deno.test("a GPT-like training step has the same loss and gradients with stock and fast kernels", () => {
  const V = 97, T = 6, E = 8, B = 2;
  const emb = rand([V, E], 50, -0.5, 0.5), w = rand([E, E], 51, -0.5, 0.5);
  const head = rand([E, V], 52, -0.5, 0.5);
  const ids = tf.tensor2d([[1, 5, 9, 96, 0, 3], [4, 4, 4, 2, 1, 0]], [B, T], "int32");
  const targets = tf.tensor1d([5, 9, 96, 0, 3, -100, 4, 4, 2, 1, 0, 7], "int32");
  const loss = (e: tf.Tensor, ww: tf.Tensor, hd: tf.Tensor) => {
    const x = tf.gather(e, ids).reshape([B * T, E]);
    const h = tf.tanh(tf.matMul(x, ww)).add(x);
    const logits = tf.matMul(h, hd);
    return sparseXentReference(logits, targets).sum().div(11);
  };
  assertFastMatchesStock(
    () => {
      const g = tf.grads(loss)([emb, w, head]);
      return [loss(emb, w, head), ...g];
    },
    "step",
    1e-5,
    1e-7,
  );
  tf.dispose([emb, w, head, ids, targets]);
});

Deno.test("without WebAssembly SIMD (the JS loops) softmax, LlmSparseXent, its gradient and LlmAdamW agree with the SIMD path", () => {
  const logits = rand([5, 1003], 60, -9, 9);
  const targets = tf.tensor([3, -100, 1002, 0, 77], [5], "int32");
  const run = () =>
    tf.tidy(() => {
      const param = tf.variable(rand([9000], 61)), m = tf.variable(tf.zeros([9000]));
      const v = tf.variable(tf.zeros([9000]));
      const grad = rand([9000], 62);
      const before = param.dataSync()[0];
      const h = { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.1, step: 1 };
      const [p2, m2, v2] = tf.engine().runKernel(
        ADAMW,
        { param, grad, m, v },
        h,
      ) as tf.Tensor[];
      param.assign(p2);
      m.assign(m2);
      v.assign(v2);
      assert.notEqual(param.dataSync()[0], before, "stepped");
      const out = [
        tf.softmax(logits),
        xent(logits, targets),
        tf.grad((x: tf.Tensor) => xent(x, targets).sum())(logits),
        param.clone(),
        m.clone(),
      ].map((t) => Float32Array.from(t.dataSync()));
      tf.dispose([param, m, v]);
      return out;
    });
  const withSimd = run();
  setSimdEnabled(false);
  try {
    const js = run();
    const names = ["softmax", "losses", "dlogits", "param", "m"];
    js.forEach((a, i) => assertClose(a, withSimd[i], 1e-5, 1e-7, names[i]));
  } finally {
    setSimdEnabled(true);
  }
  tf.dispose([logits, targets]);
});
