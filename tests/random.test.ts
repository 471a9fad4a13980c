import assert from "node:assert/strict";
import { makeRng, shuffleInPlace } from "../lib/util/random.ts";

Deno.test("makeRng() gives the same numbers in [0, 1) for the same seed", () => {
  const a = makeRng(123);
  const b = makeRng(123);
  const xs = Array.from({ length: 1000 }, () => a.next());
  assert.deepEqual(xs, Array.from({ length: 1000 }, () => b.next()));
  assert.ok(xs.every((x) => x >= 0 && x < 1));
  assert.notDeepEqual(xs.slice(0, 10), Array.from({ length: 10 }, makeRng(124).next));
  const mean = xs.reduce((s, x) => s + x, 0) / xs.length;
  assert.ok(Math.abs(mean - 0.5) < 0.05, `mean ${mean}`);
});

Deno.test("an Rng's state can be saved and set back to replay its numbers", () => {
  const rng = makeRng(7);
  rng.next();
  const saved = rng.state;
  const first = [rng.next(), rng.next(), rng.nextInt(10)];
  rng.state = saved;
  assert.deepEqual([rng.next(), rng.next(), rng.nextInt(10)], first);
});

Deno.test("shuffleInPlace() returns a permutation that depends on the seed", () => {
  const base = Array.from({ length: 50 }, (_, i) => i);
  const a = shuffleInPlace([...base], makeRng(1));
  assert.deepEqual([...a].sort((x, y) => x - y), base);
  assert.notDeepEqual(a, base);
  assert.deepEqual(shuffleInPlace([...base], makeRng(1)), a);
  assert.notDeepEqual(shuffleInPlace([...base], makeRng(2)), a);
});
