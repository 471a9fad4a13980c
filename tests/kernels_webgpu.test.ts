/**
 * The fused WGSL kernels (lib/kernels/fused/*.ts) against the composite tf ops they replace, on
 * the WebGPU backend, forward and backward. Runs where initBackend picks WebGPU (CI: LLM_BACKEND=
 * webgpu on Mesa's lavapipe); elsewhere the tests are reported as ignored.
 */
import * as tf from "@tensorflow/tfjs";
import assert from "node:assert/strict";
import { initBackend } from "../lib/backend.ts";
import {
  ADAMW,
  CAUSAL_SOFTMAX,
  DROPOUT_MASK,
  GELU,
  LAYER_NORM,
  registerWebGpuKernels,
  SPARSE_XENT,
  unregisterWebGpuKernels,
} from "../lib/kernels/mod.ts";
import {
  adamwComposite,
  adamwUpdate,
  stepUniforms,
  stockPasses,
} from "../lib/kernels/fused/adamw.ts";
import { causalSoftmax } from "../lib/kernels/fused/causal_softmax.ts";
import { chunkElements } from "../lib/kernels/webgpu_inplace.ts";
import { sparseCrossEntropy } from "../lib/kernels/fused/cross_entropy.ts";
import { dropoutMask } from "../lib/kernels/fused/dropout.ts";
import { gelu } from "../lib/kernels/fused/gelu.ts";
import { layerNorm } from "../lib/kernels/fused/layernorm.ts";
import { assertClose } from "./kernels_helpers.ts";

const onGpu = (await initBackend({ log: false })).name === "webgpu";
const fusedOn = onGpu && registerWebGpuKernels().enabled;

/** Runs `f` with the fused kernels, then with the composites; both results as arrays. */
async function fusedAndComposite(f: () => tf.Tensor[]): Promise<[Float32Array[], Float32Array[]]> {
  const run = async () => {
    const outs = tf.tidy(f);
    const values = await Promise.all(outs.map(async (t) => Float32Array.from(await t.data())));
    tf.dispose(outs);
    return values;
  };
  registerWebGpuKernels();
  const fused = await run();
  unregisterWebGpuKernels();
  try {
    return [fused, await run()];
  } finally {
    registerWebGpuKernels();
  }
}

async function assertFusedMatches(f: () => tf.Tensor[], names: string[], tol = 1e-5) {
  const [fused, composite] = await fusedAndComposite(f);
  fused.forEach((a, i) => assertClose(a, composite[i], tol, tol, names[i]));
}

const test = (name: string, kernel: string, fn: () => Promise<void>) =>
  Deno.test({
    name,
    ignore: !fusedOn,
    fn: async () => {
      assert.ok(tf.getKernel(kernel, "webgpu"), `${kernel} is registered on webgpu`);
      await fn();
    },
  });

test(
  "WebGPU LlmSparseXent and its gradient match the composite, with ignore_index rows 0",
  SPARSE_XENT,
  async () => {
    const logits = () => tf.randomNormal([37, 3001], 0, 4, "float32", 1) as tf.Tensor2D;
    const targets = () =>
      tf.tensor1d(
        Array.from({ length: 37 }, (_, i) => i % 5 === 0 ? -100 : (i * 811) % 3001),
        "int32",
      );
    const lossAndGrad = () => {
      const t = targets();
      const f = (x: tf.Tensor) =>
        sparseCrossEntropy(x as tf.Tensor2D, t).mul(tf.range(1, 38)).sum();
      const { value, grad } = tf.valueAndGrad(f)(logits());
      return [sparseCrossEntropy(logits(), t), value, grad];
    };
    await assertFusedMatches(lossAndGrad, ["losses", "weighted sum", "dlogits"]);
    const [[losses, , grad]] = await fusedAndComposite(lossAndGrad);
    for (let i = 0; i < 37; i += 5) {
      assert.equal(losses[i], 0, `ignored row ${i} has loss 0`);
      assert.ok(grad.subarray(i * 3001, (i + 1) * 3001).every((g) => g === 0), `row ${i} grad 0`);
    }
  },
);

test(
  "WebGPU LlmSparseXent gives NaN for a target outside [0, V) (no throw on the GPU)",
  SPARSE_XENT,
  async () => {
    const out = tf.tidy(() =>
      sparseCrossEntropy(tf.zeros([2, 10]) as tf.Tensor2D, tf.tensor1d([3, 10], "int32"))
    );
    const v = await out.data();
    out.dispose();
    assert.ok(Math.abs(v[0] - Math.log(10)) < 1e-6 && Number.isNaN(v[1]), `got ${v}`);
  },
);

test("WebGPU LlmLayerNorm: y, dx, dscale and dshift match the composite", LAYER_NORM, async () => {
  const x = () => tf.randomNormal([3, 50, 200], 0.5, 2, "float32", 2);
  const scale = () => tf.randomNormal([200], 1, 0.3, "float32", 3);
  const shift = () => tf.randomNormal([200], 0, 0.3, "float32", 4);
  await assertFusedMatches(
    () => {
      const w = tf.randomNormal([3, 50, 200], 0, 1, "float32", 5);
      const f = (a: tf.Tensor, b: tf.Tensor, c: tf.Tensor) => layerNorm(a, b, c, 1e-5).mul(w).sum();
      return [layerNorm(x(), scale(), shift(), 1e-5), ...tf.grads(f)([x(), scale(), shift()])];
    },
    ["y", "dx", "dscale", "dshift"],
    2e-5,
  );
});

test("WebGPU LlmGelu: y and dx match the composite tanh approximation", GELU, async () => {
  const x = () => tf.randomNormal([4, 1000], 0, 4, "float32", 6);
  await assertFusedMatches(() => {
    const w = tf.randomNormal([4, 1000], 0, 1, "float32", 7);
    return [gelu(x()), tf.grad((a: tf.Tensor) => gelu(a).mul(w).sum())(x())];
  }, ["y", "dx"]);
});

test(
  "WebGPU LlmCausalSoftmax: weights (with a KV-cache offset) and dscores match the composite",
  CAUSAL_SOFTMAX,
  async () => {
    for (const [q, k] of [[9, 9], [3, 11], [1, 300]]) {
      const s = () => tf.randomNormal([2, 3, q, k], 0, 3, "float32", 8);
      await assertFusedMatches(() => {
        const w = tf.randomNormal([2, 3, q, k], 0, 1, "float32", 9);
        return [
          causalSoftmax(s(), 0.3),
          tf.grad((a: tf.Tensor) => causalSoftmax(a, 0.3).mul(w).sum())(s()),
        ];
      }, [`weights ${q}x${k}`, `dscores ${q}x${k}`]);
    }
  },
);

test("WebGPU LlmDropoutMask makes the cpu's seeded mask bit for bit", DROPOUT_MASK, async () => {
  for (const [rate, seed] of [[0.1, 12345], [0.5, 7], [0.0, 3]]) {
    const [[gpu], [cpu]] = await fusedAndComposite(() => [dropoutMask([300, 77], rate, seed)]);
    assert.deepEqual(gpu, cpu, `rate ${rate} seed ${seed}`);
  }
});

const ADAMW_H = { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.1, step: 3 };

/** Parameter, gradient and moments of `n` elements (seeded), made fresh by each call. */
const adamwInputs = (n: number) =>
  [
    tf.randomNormal([n], 0, 1, "float32", 10),
    tf.randomNormal([n], 0, 1, "float32", 11),
    tf.randomNormal([n], 0, 0.1, "float32", 12),
    tf.randomUniform([n], 0, 0.1, "float32", 13),
  ] as const;

/** The GPU buffer behind a tensor on tfjs' webgpu backend. */
const gpuBuffer = (t: tf.Tensor) =>
  (tf.backend() as unknown as { tensorMap: { get(id: unknown): { resource: unknown } } })
    .tensorMap.get(t.dataId).resource;

test(
  "WebGPU LlmAdamW rewrites the parameter's and moments' own buffers with the composite step's values (70,000 and 4.2M elements, past one dispatch)",
  ADAMW,
  async () => {
    for (const n of [70_000, 4_200_000]) {
      const vars = tf.tidy(() => adamwInputs(n).map((t) => tf.variable(t, false)));
      const [p, g, m, v] = vars;
      const expected = tf.tidy(() => adamwComposite(p, g, m, v, ADAMW_H));
      const ids = [p, m, v].map((t) => t.dataId), buffers = [p, m, v].map(gpuBuffer);
      tf.tidy(() => {
        const out = adamwUpdate(p, g, m, v, ADAMW_H);
        out.forEach((o, i) => assert.equal(o.dataId, ids[i], `output ${i} aliases its input`));
        [p, m, v].forEach((x, i) => x.assign(out[i]));
      });
      [p, m, v].forEach((x, i) => {
        assert.equal(x.dataId, ids[i], `variable ${i} keeps its storage`);
        assert.equal(gpuBuffer(x), buffers[i], `variable ${i} keeps its GPU buffer`);
      });
      for (const [i, x] of [p, m, v].entries()) {
        assertClose(await x.data(), await expected[i].data(), 1e-6, 1e-6, `n ${n} [p, m, v][${i}]`);
      }
      tf.dispose([...vars, ...expected]);
    }
  },
);

test(
  "WebGPU LlmAdamW leaves a parameter whose storage is shared alone and returns an updated copy",
  ADAMW,
  async () => {
    const [p0, g, m, v] = adamwInputs(1000);
    const p = tf.variable(p0, false); // shares p0's buffer while p0 lives (refCount 2)
    const before = Float32Array.from(await p0.data());
    const expected = tf.tidy(() => adamwComposite(p0, g, m, v, ADAMW_H)[0]);
    tf.tidy(() => {
      const [p1] = adamwUpdate(p, g, m, v, ADAMW_H);
      assert.notEqual(p1.dataId, p0.dataId, "the shared buffer is copied");
      p.assign(p1);
    });
    assert.deepEqual(await p0.data(), before, "the other tensor is unchanged");
    assertClose(await p.data(), await expected.data(), 1e-6, 1e-6, "updated copy");
    tf.dispose([p0, g, m, v, p, expected]);
  },
);

test(
  "WebGPU LlmAdamW's stock fallback (three tfjs programs with new outputs) matches the composite step",
  ADAMW,
  async () => {
    const inputs = adamwInputs(70_000);
    const be = tf.backend();
    const [param, grad, m, v] = inputs.map((t) => ({
      dataId: t.dataId,
      shape: t.shape,
      dtype: t.dtype,
    }));
    const infos = stockPasses(be, param, grad, m, v, stepUniforms(ADAMW_H));
    const got = infos.map((i) => tf.engine().makeTensorFromTensorInfo(i));
    const expected = tf.tidy(() => adamwComposite(...inputs, ADAMW_H));
    for (const [i, t] of got.entries()) {
      assertClose(await t.data(), await expected[i].data(), 1e-6, 1e-6, `[p, m, v][${i}]`);
    }
    tf.dispose([...inputs, ...got, ...expected]);
  },
);

test(
  "WebGPU fused kernels stay right past 65,535 workgroups (a dispatch folded into 2-D)",
  GELU,
  async () => {
    // 4.2M elements: 65,625 workgroups of 64; 66,000 rows: one workgroup each.
    const x = () => tf.randomNormal([4_200_000], 0, 3, "float32", 14);
    await assertFusedMatches(() => [gelu(x())], ["gelu of 4.2M"]);
    const s = () => tf.randomNormal([66_000, 1, 5], 0, 3, "float32", 15);
    await assertFusedMatches(() => [causalSoftmax(s(), 0.5)], ["softmax of 66,000 rows"]);
  },
);

Deno.test("an in-place WebGPU pass is cut into chunks that fit one binding and 65,535 workgroups, at aligned offsets", () => {
  const limits = (binding: number) =>
    ({
      maxStorageBufferBindingSize: binding,
      maxComputeWorkgroupsPerDimension: 65_535,
      minStorageBufferOffsetAlignment: 256,
    }) as GPUSupportedLimits;
  // lavapipe binds 128 MiB: the workgroup limit decides (65,535 x 64 threads).
  assert.equal(chunkElements(limits(128 * 2 ** 20)), 65_535 * 64);
  // A 1,000,000-byte binding: 250,000 floats, rounded down to 64 (256 bytes) for the offsets.
  assert.equal(chunkElements(limits(1_000_000)), 249_984);
  // GPT-2 medium's 50,257 x 1,024 embedding (206 MB) on lavapipe: 13 chunks.
  assert.equal(Math.ceil(50_257 * 1_024 / chunkElements(limits(128 * 2 ** 20))), 13);
});
