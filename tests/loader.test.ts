import assert from "node:assert/strict";
import { DataLoader } from "../lib/data/loader.ts";
import { UserError } from "../lib/util/errors.ts";

const items = Array.from({ length: 10 }, (_, i) => i);
const loader = (o: { shuffle?: boolean; dropLast?: boolean } = {}) =>
  new DataLoader(items, { batchSize: 3, seed: 123, collate: (xs) => xs, ...o });

Deno.test("DataLoader has len(loader) batches: ceil(10 / 3) = 4, or 3 with dropLast", () => {
  assert.equal(loader().length, 4);
  assert.equal(loader({ dropLast: true }).length, 3);
  assert.deepEqual([...loader()], [[0, 1, 2], [3, 4, 5], [6, 7, 8], [9]]);
});

Deno.test("DataLoader.peek(n) shows the next epoch's first n batches and leaves the state", () => {
  const l = loader({ shuffle: true });
  const before = l.state.rngState;
  const peeked = [...l.peek(2)];
  assert.equal(l.state.rngState, before);
  assert.equal(peeked.length, 2);
  const epoch = [...l.epoch()];
  assert.deepEqual(epoch.slice(0, 2), peeked);
  assert.notEqual(l.state.rngState, before);
  assert.deepEqual(epoch.flat().sort((a, b) => a - b), items);
});

Deno.test("DataLoader.epoch(skip) after restoring state resumes the same epoch at batch skip", () => {
  const l = loader({ shuffle: true });
  const saved = l.state;
  const whole = [...l.epoch()];
  l.state = saved;
  assert.deepEqual([...l.epoch(2)], whole.slice(2));
  assert.notDeepEqual([...l.epoch()], whole); // the next epoch has a new order
});

Deno.test("DataLoader: a non-positive or fractional batchSize is a UserError", () => {
  for (const batchSize of [0, -1, 2.5]) {
    assert.throws(() => new DataLoader(items, { batchSize, collate: (xs) => xs }), UserError);
  }
});
