import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { customCollate, customCollateArrays, InstructionLoader } from "../lib/data/collate.ts";
import { loadInstructionFile, splitData } from "../lib/data/instruction.ts";
import { InstructionDataset } from "../lib/data/instruction_dataset.ts";
import { initBackend } from "../lib/backend.ts";

await initBackend({ log: false });

const P = 50256; // padding / end-of-text
const X = -100; // ignore index

Deno.test("customCollate() reproduces the book's batch of [0..4], [5, 6], [7, 8, 9]", async () => {
  const batch = customCollate([[0, 1, 2, 3, 4], [5, 6], [7, 8, 9]]);
  assert.equal(batch.inputs.dtype, "int32");
  assert.equal(batch.targets.dtype, "int32");
  assert.deepEqual(batch.inputs.shape, [3, 5]);
  assert.deepEqual(await batch.inputs.array(), [[0, 1, 2, 3, 4], [5, 6, P, P, P], [7, 8, 9, P, P]]);
  assert.deepEqual(await batch.targets.array(), [[1, 2, 3, 4, P], [6, P, X, X, X], [
    8,
    9,
    P,
    X,
    X,
  ]]);
  assert.deepEqual(batch.targetRows, await batch.targets.array());
  assert.equal(batch.targetTokens, 5 + 2 + 3);
  batch.inputs.dispose();
  batch.targets.dispose();
});

Deno.test("customCollate() with equal lengths pads nothing but the one end-of-text token", () => {
  const { inputs, targets, targetTokens } = customCollateArrays([[1, 2, 3], [4, 5, 6]]);
  assert.deepEqual(inputs, [[1, 2, 3], [4, 5, 6]]);
  assert.deepEqual(targets, [[2, 3, P], [5, 6, P]]);
  assert.equal(targetTokens, 6);
});

Deno.test("customCollate() with maskInstruction ignores targets[:instructionLength-1]", () => {
  const { inputs, targets } = customCollateArrays(
    [{ ids: [10, 11, 12, 13, 14], instructionLength: 3 }, {
      ids: [20, 21, 22],
      instructionLength: 2,
    }],
    { maskInstruction: true },
  );
  assert.deepEqual(inputs, [[10, 11, 12, 13, 14], [20, 21, 22, P, P]]);
  // Target t predicts token t+1: the first response token (13, at index 3) is the first kept.
  assert.deepEqual(targets, [[X, X, 13, 14, P], [X, 22, P, X, X]]);
  // Without the flag, instructionLength is carried but unused.
  assert.deepEqual(
    customCollateArrays([{ ids: [10, 11, 12], instructionLength: 3 }]).targets,
    [[11, 12, P]],
  );
  assert.throws(() => customCollateArrays([[1, 2]], { maskInstruction: true }), TypeError);
});

Deno.test("customCollate() can mask every target of an item (prompt only, no response)", () => {
  const { targets, targetTokens } = customCollateArrays(
    [{ ids: [1, 2, 3], instructionLength: 4 }, { ids: [4, 5, 6, 7, 8], instructionLength: 2 }],
    { maskInstruction: true },
  );
  assert.deepEqual(targets, [[X, X, X, X, X], [X, 6, 7, 8, P]]);
  assert.equal(targetTokens, 4);
});

Deno.test("customCollate() truncates to allowedMaxLength and counts the items it cut", () => {
  const { inputs, targets, truncated } = customCollateArrays(
    [[1, 2, 3, 4, 5, 6], [7, 8, 9, 10], [11, 12]],
    { allowedMaxLength: 4 },
  );
  assert.deepEqual(inputs, [[1, 2, 3, 4], [7, 8, 9, 10], [11, 12, P, P]]);
  assert.deepEqual(targets, [[2, 3, 4, 5], [8, 9, 10, P], [12, P, X, X]]);
  // Only the 6-token item lost tokens; the 4-token one still ends with its end-of-text target.
  assert.equal(truncated, 1);
  assert.equal(customCollateArrays([[1, 2]], { allowedMaxLength: 8 }).inputs[0].length, 2);
});

Deno.test("customCollate() keeps only the first pad-id target, even one inside the text (as the book)", () => {
  const { targets } = customCollateArrays([[1, P, 2], [3]]);
  assert.deepEqual(targets, [[P, 2, X], [P, X, X]]);
  const custom = customCollateArrays([[1], [2, 3, 4]], { padTokenId: 0, ignoreIndex: -1 });
  assert.deepEqual(custom.inputs, [[1, 0, 0], [2, 3, 4]]);
  assert.deepEqual(custom.targets, [[0, -1, -1], [3, 4, 0]]);
});

Deno.test("customCollate() rejects an empty batch and a bad allowedMaxLength", () => {
  assert.throws(() => customCollateArrays([]), RangeError);
  assert.throws(() => customCollateArrays([[1]], { allowedMaxLength: 0 }), RangeError);
});

Deno.test("InstructionLoader gives 116 batches of 8 for the 935 training entries (drop_last)", async () => {
  const data = await loadInstructionFile(
    new URL("../data/instruction-data.json", import.meta.url).pathname,
  );
  const { train, val } = splitData(data);
  const trainLoader = new InstructionLoader(new InstructionDataset(train), {
    batchSize: 8,
    shuffle: true,
    dropLast: true,
  });
  assert.equal(trainLoader.numBatches, 116);
  const valLoader = new InstructionLoader(new InstructionDataset(val), { batchSize: 8 });
  assert.equal(valLoader.numBatches, 7); // 55 entries: 6 full batches and one of 7
  const before = tf.memory().numTensors;
  let count = 0;
  let lastRows = 0;
  for (const batch of valLoader) {
    count++;
    lastRows = batch.inputs.shape[0];
    batch.inputs.dispose();
    batch.targets.dispose();
  }
  assert.deepEqual([count, lastRows], [7, 7]);
  assert.equal(tf.memory().numTensors, before);
});

Deno.test("InstructionLoader shuffles reproducibly, anew each epoch, and can replay an epoch", () => {
  const items = Array.from({ length: 20 }, (_, i) => [i]);
  const loader = new InstructionLoader(items, { batchSize: 3, shuffle: true, dropLast: true });
  const firstOf = (
    epoch: Generator<{ inputRows: number[][]; inputs: tf.Tensor; targets: tf.Tensor }>,
  ) =>
    [...epoch].map((b) => {
      tf.dispose([b.inputs, b.targets]);
      return b.inputRows.map((row) => row[0]);
    });
  const saved = loader.rngState;
  const epoch1 = firstOf(loader.epoch());
  const epoch2 = firstOf(loader.epoch());
  assert.equal(epoch1.length, 6);
  assert.notDeepEqual(epoch1, epoch2);
  assert.equal(new Set(epoch1.flat()).size, 18); // dropLast: 2 of 20 left out
  // Same seed, same order; a restored state replays the epoch, also from a later batch.
  const other = new InstructionLoader(items, { batchSize: 3, shuffle: true, dropLast: true });
  assert.deepEqual(firstOf(other.epoch()), epoch1);
  loader.rngState = saved;
  assert.deepEqual(firstOf(loader.epoch(4)), epoch1.slice(4));
  // No shuffle: file order.
  const plain = new InstructionLoader(items, { batchSize: 8 });
  assert.deepEqual(firstOf(plain.epoch()), [items.slice(0, 8).flat(), items.slice(8, 16).flat(), [
    16,
    17,
    18,
    19,
  ]]);
});

Deno.test("InstructionLoader counts the entries that allowedMaxLength truncates", () => {
  const items = [[1, 2, 3], [1, 2, 3, 4, 5], [1], [1, 2, 3, 4, 5, 6]];
  assert.equal(new InstructionLoader(items, { allowedMaxLength: 4 }).truncatedEntries, 2);
  assert.equal(new InstructionLoader(items).truncatedEntries, 0);
  const batch = new InstructionLoader(items, { batchSize: 4, allowedMaxLength: 4 }).epoch().next()
    .value!;
  assert.equal(batch.truncated, 2);
  assert.deepEqual(batch.inputs.shape, [4, 4]);
  tf.dispose([batch.inputs, batch.targets]);
});
