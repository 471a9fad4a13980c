import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { UserError } from "../lib/util/errors.ts";
import {
  createDataloaderV1,
  GPTDatasetV1,
  TextDataLoader,
  trainValSplit,
} from "../lib/data/text.ts";
import { encode } from "../lib/data/tokenizer.ts";
import { useStockCpu } from "../lib/backend.ts";

await useStockCpu();

const VERDICT = await Deno.readTextFile(new URL("../data/the-verdict.txt", import.meta.url));

/** Token ids of a batch, as nested arrays; disposes the tensors. */
async function take(
  batch: { inputs: tf.Tensor2D; targets: tf.Tensor2D },
): Promise<{ inputs: number[][]; targets: number[][] }> {
  assert.equal(batch.inputs.dtype, "int32");
  assert.equal(batch.targets.dtype, "int32");
  const out = { inputs: await batch.inputs.array(), targets: await batch.targets.array() };
  tf.dispose([batch.inputs, batch.targets]);
  return out;
}

/** A dataset over the ids 0..n-1, so every window shows its own offsets. */
function counting(n: number, maxLength: number, stride: number): GPTDatasetV1 {
  return new GPTDatasetV1(Array.from({ length: n }, (_, i) => i), { maxLength, stride });
}

Deno.test("The Verdict is 5,145 GPT-2 tokens (20,479 characters)", () => {
  assert.equal(VERDICT.length, 20479);
  assert.equal(encode(VERDICT).length, 5145);
});

Deno.test("The Verdict, context 256, stride 256, batch 2: 9 training batches (4,608 tokens), 1 validation batch (512 tokens)", async () => {
  const { trainText, valText, splitIdx } = trainValSplit(VERDICT, 0.9);
  assert.equal(splitIdx, 18431); // int(0.9 * 20479)
  const train = createDataloaderV1(trainText, {
    batchSize: 2,
    maxLength: 256,
    stride: 256,
    dropLast: true,
    shuffle: true,
  });
  const val = createDataloaderV1(valText, {
    batchSize: 2,
    maxLength: 256,
    stride: 256,
    dropLast: false,
    shuffle: false,
  });
  assert.equal(train.length, 9);
  assert.equal(train.numTokens, 4608);
  assert.equal(val.length, 1);
  assert.equal(val.numTokens, 512);
  assert.equal(train.length * 15, 135); // total_steps of appendix D
  let batches = 0;
  for (const batch of train) {
    assert.deepEqual(batch.inputs.shape, [2, 256]);
    await take(batch);
    batches++;
  }
  assert.equal(batches, 9);
});

Deno.test("GPTDatasetV1 windows are ids[i:i+L] -> ids[i+1:i+L+1] for i in range(0, n - L, stride)", () => {
  const ds = counting(10, 4, 2);
  assert.deepEqual(ds.starts, [0, 2, 4]); // range(0, 6, 2)
  assert.deepEqual([...ds.get(2).input], [4, 5, 6, 7]);
  assert.deepEqual([...ds.get(2).target], [5, 6, 7, 8]);
  assert.equal(counting(10, 4, 1).length, 6); // the last window ends one token before the text does
  assert.equal(counting(5, 4, 4).length, 1); // n = L + 1 is the minimum
  assert.throws(() => ds.get(3), RangeError);
});

Deno.test("createDataloaderV1() has the book's defaults: batch 4, maxLength 256, stride 128, shuffle, dropLast", () => {
  const loader = createDataloaderV1(VERDICT);
  assert.equal(loader.batchSize, 4);
  assert.equal(loader.dataset.maxLength, 256);
  assert.equal(loader.dataset.stride, 128);
  assert.equal(loader.shuffle, true);
  assert.equal(loader.dropLast, true);
  assert.equal(loader.dataset.length, 39); // range(0, 5145 - 256, 128)
  assert.equal(loader.length, 9);
});

Deno.test("batches are int32 [batch, maxLength] with targets = inputs shifted by one token", async () => {
  const loader = new TextDataLoader(counting(20, 4, 4), { batchSize: 2, shuffle: false });
  const batches = await Promise.all([...loader].map(take));
  assert.deepEqual(batches[0].inputs, [[0, 1, 2, 3], [4, 5, 6, 7]]);
  assert.deepEqual(batches[0].targets, [[1, 2, 3, 4], [5, 6, 7, 8]]);
  assert.equal(batches.length, 2); // 4 windows (starts 0,4,8,12), batch 2
});

Deno.test("dropLast false keeps the last, smaller batch; dropLast true drops it", async () => {
  const ds = counting(20, 4, 3); // starts 0,3,6,9,12,15 -> 6 windows
  const keep = new TextDataLoader(ds, { batchSize: 4, shuffle: false, dropLast: false });
  const drop = new TextDataLoader(ds, { batchSize: 4, shuffle: false, dropLast: true });
  assert.deepEqual([keep.length, keep.numTokens], [2, 24]);
  assert.deepEqual([drop.length, drop.numTokens], [1, 16]);
  const last = (await Promise.all([...keep].map(take))).at(-1)!;
  assert.deepEqual(last.inputs, [[12, 13, 14, 15], [15, 16, 17, 18]]);
});

Deno.test("the shuffle is seeded, differs per epoch, and replays from a saved state (also mid-epoch)", async () => {
  const make = (seed: number) => new TextDataLoader(counting(200, 4, 4), { batchSize: 3, seed });
  const a = make(123), b = make(123), c = make(7);
  const epoch1 = a.nextEpochOrder();
  assert.deepEqual(b.nextEpochOrder(), epoch1);
  assert.notDeepEqual(c.nextEpochOrder(), epoch1);
  assert.notDeepEqual(epoch1.flat(), [...Array(epoch1.flat().length).keys()]);
  const saved = a.state;
  const epoch2 = a.nextEpochOrder();
  assert.notDeepEqual(epoch2, epoch1);
  // 49 windows, 16 full batches of 3: each epoch serves 48 distinct windows (drop_last drops one)
  const served = epoch2.flat();
  assert.equal(a.dataset.length, 49);
  assert.deepEqual([served.length, new Set(served).size], [48, 48]);
  assert.ok(served.every((w) => w >= 0 && w < 49));
  // restore and replay the same epoch, the second time from batch 5 on
  a.state = saved;
  assert.deepEqual(a.nextEpochOrder(), epoch2);
  a.state = saved;
  const resumed = await Promise.all([...a.epoch(5)].map(take));
  assert.equal(resumed.length, epoch2.length - 5);
  assert.deepEqual(resumed[0].inputs.map((row) => row[0] / 4), epoch2[5]);
});

Deno.test("epoch() draws its order when called, so state read after it belongs to the next epoch", async () => {
  const loader = new TextDataLoader(counting(40, 4, 4), { batchSize: 2 });
  const before = loader.state.rngState;
  const batches = loader.epoch();
  assert.notEqual(loader.state.rngState, before);
  for (const batch of batches) await take(batch);
});

Deno.test("shuffle false keeps the windows in text order on every epoch", () => {
  const loader = new TextDataLoader(counting(30, 4, 4), {
    batchSize: 2,
    shuffle: false,
    dropLast: false,
  });
  const order = loader.nextEpochOrder();
  assert.deepEqual(order, [[0, 1], [2, 3], [4, 5], [6]]);
  assert.deepEqual(loader.nextEpochOrder(), order);
});

Deno.test("a text too short for one window is a UserError saying how many tokens are needed and found", () => {
  assert.throws(
    () => createDataloaderV1("Every effort moves you", { maxLength: 256 }),
    (e: Error) => e instanceof UserError && /needs at least 257 tokens, found 4/.test(e.message),
  );
  assert.throws(
    () => new TextDataLoader(counting(10, 4, 2), { batchSize: 4, dropLast: true }),
    (e: Error) => e instanceof UserError && /needs 11 tokens, found 10/.test(e.message),
  );
  assert.throws(
    () => createDataloaderV1(VERDICT, { stride: 0 }),
    /stride must be a positive integer/,
  );
});

Deno.test("<|endoftext|> between documents becomes token 50256 in the windows", () => {
  const ds = GPTDatasetV1.fromText("Hello, world<|endoftext|>Hello, world", {
    maxLength: 4,
    stride: 1,
  });
  assert.deepEqual([...ds.tokenIds], [15496, 11, 995, 50256, 15496, 11, 995]);
});

Deno.test("trainValSplit() splits by characters at int(ratio * len), counting code points like Python", () => {
  assert.deepEqual(trainValSplit("abcdefghij", 0.9), {
    trainText: "abcdefghi",
    valText: "j",
    splitIdx: 9,
  });
  const emoji = "😀😀😀😀😀😀😀😀😀😀"; // 10 code points, 20 UTF-16 units
  const s = trainValSplit(emoji, 0.5);
  assert.equal(s.splitIdx, 5);
  assert.equal(s.trainText, "😀😀😀😀😀");
  assert.throws(() => trainValSplit("abc", 1), UserError);
});

Deno.test("iterating a loader and disposing each batch leaves no tensors behind", () => {
  const loader = createDataloaderV1(VERDICT, { batchSize: 2, maxLength: 64, stride: 64 });
  const before = tf.memory().numTensors;
  for (const { inputs, targets } of loader) tf.dispose([inputs, targets]);
  assert.equal(tf.memory().numTensors, before);
});
