/** lib/model/nn.ts pieces: fused GELU against its composite form, and the seeded dropout mask. */
import * as tf from "@tensorflow/tfjs";
import assert from "node:assert/strict";
import { initBackend } from "../lib/backend.ts";
import { dropout, dropoutMask, gelu, SeedStream } from "../lib/model/nn.ts";

await initBackend({ log: false });

function compositeGelu(x: tf.Tensor): tf.Tensor {
  const inner = tf.mul(Math.sqrt(2 / Math.PI), tf.add(x, tf.mul(0.044715, tf.pow(x, 3))));
  return tf.mul(tf.mul(0.5, x), tf.add(1, tf.tanh(inner)));
}

Deno.test("gelu() (fused kernels when registered) matches 0.5x(1+tanh(...)) and its gradient within 1e-6", async () => {
  const x = tf.randomNormal([4, 37], 0, 3, "float32", 5);
  const dy = tf.randomNormal([4, 37], 0, 1, "float32", 6);
  const [a, b] = [gelu(x), compositeGelu(x)];
  const ga = tf.grad((t: tf.Tensor) => tf.sum(tf.mul(gelu(t), dy)))(x);
  const gb = tf.grad((t: tf.Tensor) => tf.sum(tf.mul(compositeGelu(t), dy)))(x);
  const close = async (p: tf.Tensor, q: tf.Tensor) =>
    (await tf.max(tf.abs(tf.sub(p, q))).data())[0];
  const [dv, dg] = [await close(a, b), await close(ga, gb)];
  assert.ok(dv < 1e-6, `values differ by ${dv}`);
  assert.ok(dg < 1e-5, `gradients differ by ${dg}`);
  tf.dispose([x, dy, a, b, ga, gb]);
});

Deno.test("dropoutMask() zeroes about `rate` of the entries, scales the rest by 1/(1-rate), and repeats per seed", async () => {
  const m = await dropoutMask([100, 1000], 0.1, 42).data();
  const zeros = m.filter((v) => v === 0).length / m.length;
  assert.ok(Math.abs(zeros - 0.1) < 0.005, `zero fraction ${zeros}`);
  assert.ok(m.every((v) => v === 0 || Math.abs(v - 1 / 0.9) < 1e-7));
  assert.deepEqual(
    await dropoutMask([10, 10], 0.5, 7).data(),
    await dropoutMask([10, 10], 0.5, 7).data(),
  );
  assert.notDeepEqual(
    await dropoutMask([10, 10], 0.5, 7).data(),
    await dropoutMask([10, 10], 0.5, 8).data(),
  );
});

Deno.test("dropout() is the identity in eval mode and at rate 0", () => {
  const x = tf.ones([3, 3]);
  assert.equal(dropout(x, 0.5, false, new SeedStream(1)), x);
  assert.equal(dropout(x, 0, true, new SeedStream(1)), x);
  x.dispose();
});

Deno.test("assertFitsDevice() names a tensor larger than the device's binding limit (GPT-2's head on lavapipe)", async () => {
  const { assertFitsDevice } = await import("../lib/backend.ts");
  const { parameterShapes, PRESETS } = await import("../lib/model/config.ts");
  const lavapipe = {
    name: "webgpu" as const,
    detail: "llvmpipe",
    skipped: [],
    maxTensorBytes: 128 * 2 ** 20,
  };
  assert.throws(
    () => assertFitsDevice(parameterShapes(PRESETS["gpt2-small"]), lavapipe),
    /tok_emb.weight \[50257,768\] needs 147 MiB but this webgpu device binds at most 128 MiB per tensor \(2 tensor\(s\) too large\)/,
  );
  assertFitsDevice(parameterShapes(PRESETS["gpt-tiny"]), lavapipe); // 128 x 50,257 fits
  assertFitsDevice(parameterShapes(PRESETS["gpt2-small"]), {
    ...lavapipe,
    maxTensorBytes: undefined,
  });
});

Deno.test("typed children: block.norm1 is trf_blocks.0.norm1, and setChild moves model.out_head with it", async () => {
  const { GPTModel } = await import("../lib/model/gpt.ts");
  const { PRESETS, parameterShapes } = await import("../lib/model/config.ts");
  const { Linear } = await import("../lib/model/nn.ts");
  const cfg = { ...PRESETS["gpt-tiny"], vocabSize: 64, contextLength: 8, nLayers: 1 };
  const model = new GPTModel(cfg);
  const params = model.namedParameters();
  assert.equal(params.get("trf_blocks.0.norm1.scale"), model.trf_blocks.items[0].norm1.scale);
  assert.deepEqual(
    [...params].map(([n, v]) => [n, v.shape]),
    [...parameterShapes(cfg)],
  );
  const head = new Linear(cfg.embDim, 2);
  const old = model.out_head;
  model.setChild("out_head", head);
  assert.equal(model.out_head, head);
  assert.equal(model.namedParameters().get("out_head.bias"), head.bias);
  assert.throws(() => model.trf_blocks.setChild("0", head), /cannot be replaced/);
  assert.throws(() => model.setChild("no_such_child", head), /no child "no_such_child"/);
  old.dispose();
  model.dispose();
});
