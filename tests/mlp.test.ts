import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import {
  computeAccuracy,
  countParams,
  DataLoader,
  logisticRegressionGrads,
  NeuralNetwork,
  predict,
  TOY_TEST,
  TOY_TRAIN,
  trainModel,
} from "../lib/appendix_a/mlp.ts";
import { useStockCpu } from "../lib/backend.ts";

await useStockCpu();

Deno.test("NeuralNetwork(2, 2) has 752 trainable parameters (exercise A.1/A.3)", () => {
  const model = new NeuralNetwork(2, 2);
  assert.equal(countParams(model), 2 * 30 + 30 + 30 * 20 + 20 + 20 * 2 + 2);
  assert.equal(countParams(model), 752);
  model.dispose();
});

Deno.test("NeuralNetwork(50, 3) has 2,213 trainable parameters", () => {
  const model = new NeuralNetwork(50, 3);
  assert.equal(countParams(model), 2213);
  model.dispose();
});

Deno.test("NeuralNetwork names its parameters like torch's Sequential and stores weights [in, out]", () => {
  const model = new NeuralNetwork(50, 3);
  const shapes = [...model.namedParameters()].map(([name, v]) => [name, v.shape]);
  assert.deepEqual(shapes, [
    ["layers.0.weight", [50, 30]],
    ["layers.0.bias", [30]],
    ["layers.2.weight", [30, 20]],
    ["layers.2.bias", [20]],
    ["layers.4.weight", [20, 3]],
    ["layers.4.bias", [3]],
  ]);
  model.dispose();
});

Deno.test("NeuralNetwork init is PyTorch's U(-1/sqrt(fanIn), 1/sqrt(fanIn)) and repeats per seed", async () => {
  const a = new NeuralNetwork(50, 3, { seed: 7 });
  const b = new NeuralNetwork(50, 3, { seed: 7 });
  const w = await a.namedParameters().get("layers.0.weight")!.data();
  const bound = 1 / Math.sqrt(50);
  assert.ok(w.every((x) => Math.abs(x) <= bound));
  assert.ok(Math.max(...w) > 0.9 * bound, "fills the range");
  assert.deepEqual(w, await b.namedParameters().get("layers.0.weight")!.data());
  a.dispose();
  b.dispose();
});

Deno.test("NeuralNetwork.forward maps [batch, inputs] to logits [batch, outputs]", () => {
  const model = new NeuralNetwork(50, 3);
  const out = tf.tidy(() => model.forward(tf.randomUniform([4, 50], 0, 1, "float32", 1)));
  assert.deepEqual(out.shape, [4, 3]);
  out.dispose();
  model.dispose();
});

Deno.test("DataLoader with batch 2 and dropLast gives 2 batches of the 5 toy examples", () => {
  const loader = new DataLoader(TOY_TRAIN, { batchSize: 2, shuffle: true, dropLast: true });
  assert.equal(loader.length, 2);
  const batches = [...loader];
  assert.equal(batches.length, 2);
  assert.ok(batches.every((b) => b.features.length === 2 && b.labels.length === 2));
  assert.equal(new DataLoader(TOY_TRAIN, { batchSize: 2 }).length, 3, "keeps the short last batch");
});

Deno.test("DataLoader shuffles reproducibly per seed and differently per epoch", () => {
  const order = (l: DataLoader) => [...l].flatMap((b) => b.features.map((f) => f[0]));
  const a = new DataLoader(TOY_TRAIN, { batchSize: 5, shuffle: true, seed: 1 });
  const b = new DataLoader(TOY_TRAIN, { batchSize: 5, shuffle: true, seed: 1 });
  const epochs = [order(a), order(a), order(a)];
  assert.deepEqual(epochs, [order(b), order(b), order(b)]);
  assert.ok(epochs.some((e) => e.join() !== epochs[0].join()), "a new permutation each epoch");
  assert.deepEqual([...epochs[0]].sort(), [...TOY_TRAIN.features.map((f) => f[0])].sort());
  const plain = new DataLoader(TOY_TEST, { batchSize: 2 });
  assert.deepEqual(order(plain), [-0.8, 2.6], "no shuffle keeps the order");
});

Deno.test("trainModel() prints the book's log lines and reaches accuracy 1.0 on train and test", async () => {
  const model = new NeuralNetwork(2, 2);
  const lines: string[] = [];
  const trainLoader = new DataLoader(TOY_TRAIN, { batchSize: 2, shuffle: true, dropLast: true });
  const before = tf.memory().numTensors;
  const { batchLosses } = await trainModel(model, trainLoader, { log: (l) => lines.push(l) });
  assert.equal(tf.memory().numTensors, before, "no tensors leak");
  assert.equal(lines.length, 6);
  assert.match(lines[0], /^Epoch: 001\/003 \| Batch 000\/002 \| Train Loss: \d\.\d\d$/);
  assert.match(lines[5], /^Epoch: 003\/003 \| Batch 001\/002 \| Train Loss: \d\.\d\d$/);
  assert.equal(batchLosses.length, 6);
  assert.ok(batchLosses[5] < 0.1 && batchLosses[0] > batchLosses[5], `losses ${batchLosses}`);
  assert.equal(await computeAccuracy(model, new DataLoader(TOY_TRAIN, { batchSize: 2 })), 1.0);
  assert.equal(await computeAccuracy(model, new DataLoader(TOY_TEST, { batchSize: 2 })), 1.0);
  assert.deepEqual(await predict(model, TOY_TEST.features), [0, 1]);
  model.dispose();
});

Deno.test("logisticRegressionGrads() gives the book's loss 0.0852 and gradients -0.0898, -0.0817", async () => {
  const { loss, gradW1, gradB } = await logisticRegressionGrads();
  assert.equal(loss.toFixed(4), "0.0852");
  assert.equal(gradW1.toFixed(4), "-0.0898");
  assert.equal(gradB.toFixed(4), "-0.0817");
});
