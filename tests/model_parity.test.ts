/**
 * GPTModel against the PyTorch reference (tests/fixtures/make_fixtures.py, the book's chapter 4
 * model in torch 1.13): logits, loss, every parameter's gradient and greedy generation, for tiny
 * configs with and without qkv bias, loaded through our Hugging Face checkpoint reader.
 * Runs on whatever backend initBackend picks (LLM_BACKEND / LLM_FAST_KERNELS select others).
 */
import * as tf from "@tensorflow/tfjs";
import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { initBackend } from "../lib/backend.ts";
import { GPTModel } from "../lib/model/gpt.ts";
import { generate } from "../lib/model/generate.ts";
import { crossEntropy } from "../lib/train/loss.ts";
import { loadCheckpoint, loadWeightsInto } from "../lib/io/weights.ts";
import { assertAllClose, FIXTURES_DIR, loadModelExpected, type TinyModelName } from "./fixtures.ts";

await initBackend({ log: false });

async function loadTiny(dir: string): Promise<GPTModel> {
  const { config, tensors } = await loadCheckpoint(new URL(dir, FIXTURES_DIR).pathname);
  const model = new GPTModel(config, { seed: 1 });
  loadWeightsInto(model, tensors);
  return model.eval();
}

for (const name of ["gpt-tiny-noqkv", "gpt-tiny-qkv"] as TinyModelName[]) {
  const expected = await loadModelExpected(name);
  const inputs = () =>
    tf.tensor2d(expected.inputIds.data, expected.inputIds.shape as [number, number], "int32");
  const targets = () =>
    tf.tensor2d(expected.targets.data, expected.targets.shape as [number, number], "int32");

  Deno.test(`${name}: logits and loss match PyTorch (atol 1e-5)`, async () => {
    const model = await loadTiny(name);
    const [logits, loss] = tf.tidy(() => {
      const l = model.forward(inputs());
      return [l, crossEntropy(l, targets())];
    });
    assertEquals(logits.shape, expected.logits.shape);
    assertAllClose(await logits.data(), expected.logits.data, {
      atol: 1e-5,
      rtol: 1e-5,
      label: "logits",
    });
    assertAllClose(await loss.data(), [expected.loss], { atol: 1e-6, rtol: 1e-6, label: "loss" });
    tf.dispose([logits, loss]);
    model.dispose();
  });

  Deno.test(`${name}: the gradient of every parameter matches PyTorch (rtol 1e-4, atol 1e-6)`, async () => {
    const model = await loadTiny(name);
    const params = model.namedParameters();
    assertEquals([...params.keys()].sort(), [...expected.grads.keys()].sort());
    const { value, grads } = tf.variableGrads(
      () => crossEntropy(model.forward(inputs()), targets()),
      [...params.values()],
    );
    for (const [pname, v] of params) {
      const e = expected.grads.get(pname)!;
      assertEquals(grads[v.name].shape, e.shape, pname);
      assertAllClose(await grads[v.name].data(), e.data, {
        atol: 1e-6,
        rtol: 1e-4,
        label: `grad ${pname}`,
      });
    }
    tf.dispose([value, grads]);
    model.dispose();
  });

  Deno.test(`${name}: greedy generation equals PyTorch's, with and without the KV cache`, async () => {
    const model = await loadTiny(name);
    const p = expected.promptIds;
    for (const useCache of [true, false]) {
      const ids = await generate(model, p, { maxNewTokens: 10, temperature: 0, useCache });
      assertEquals([...p, ...ids], expected.generatedIds, `useCache ${useCache}`);
      // 21 tokens > context 16: the window slides (the book crops to the last 16).
      const long = await generate(model, p, { maxNewTokens: 16, temperature: 0, useCache });
      assertEquals([...p, ...long], expected.generatedLongIds, `long, useCache ${useCache}`);
    }
    model.dispose();
  });
}

Deno.test("the transformers key layout (transformer. prefix, lm_head, attn.bias buffers) gives the same logits", async () => {
  const plain = await loadTiny("gpt-tiny-qkv");
  const hf = await loadTiny("gpt-tiny-qkv-hf");
  const ids = tf.tensor2d([[1, 2, 3, 4, 5]], [1, 5], "int32");
  const [a, b] = [plain.forward(ids), hf.forward(ids)];
  assertAllClose(await a.data(), await b.data(), { atol: 0, rtol: 0, label: "logits" });
  tf.dispose([a, b, ids]);
  plain.dispose();
  hf.dispose();
});

Deno.test("a training step keeps the tensor count flat", () => {
  const model = new GPTModel({
    vocabSize: 50,
    contextLength: 8,
    embDim: 16,
    nHeads: 2,
    nLayers: 1,
    dropRate: 0.1,
    qkvBias: false,
  });
  model.train();
  const ids = tf.tensor2d([[1, 2, 3, 4]], [1, 4], "int32");
  const step = () => {
    const { value, grads } = tf.variableGrads(() => crossEntropy(model.forward(ids), ids));
    tf.dispose([value, grads]);
  };
  step();
  const before = tf.memory().numTensors;
  for (let i = 0; i < 3; i++) step();
  assertEquals(tf.memory().numTensors, before);
  assert(before > 0);
  ids.dispose();
  model.dispose();
});
