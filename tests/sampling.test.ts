/**
 * Generation options beyond the book (lib/model/sampling.ts): top-p, the repetition penalty and
 * stop strings, against a PyTorch rewrite of Hugging Face's warpers (tests/fixtures/warpers.json).
 */
import * as tf from "@tensorflow/tfjs";
import { deepStrictEqual as assertEquals, ok as assert, rejects, throws } from "node:assert/strict";
import { initBackend } from "../lib/backend.ts";
import { checkSampling, cutAtStop, pickToken, warpLogits } from "../lib/model/sampling.ts";
import { generate } from "../lib/model/generate.ts";
import { GPTModel } from "../lib/model/gpt.ts";
import { UserError } from "../lib/util/errors.ts";
import { assertAllClose, readFixtureJson } from "./fixtures.ts";

await initBackend({ log: false });

interface WarperCase {
  temperature: number;
  top_k?: number;
  top_p?: number;
  repetition_penalty?: number;
  logits: number[];
  context: number[];
  expected: (number | null)[];
  kept: number;
}
const { cases } = await readFixtureJson<{ cases: WarperCase[] }>("warpers.json");

Deno.test("warpLogits() matches HF's repetition penalty, top-k, temperature and top-p on 7 cases", () => {
  assertEquals(cases.length, 7);
  for (const [i, c] of cases.entries()) {
    const row = warpLogits(Float32Array.from(c.logits), c.context, {
      temperature: c.temperature,
      topK: c.top_k,
      topP: c.top_p,
      repetitionPenalty: c.repetition_penalty,
    });
    const label = `case ${i} ${JSON.stringify({ ...c, logits: 0, context: 0, expected: 0 })}`;
    // The same tokens removed ...
    assertEquals([...row].map((x) => Number.isFinite(x)), c.expected.map((x) => x !== null), label);
    assertEquals([...row].filter(Number.isFinite).length, c.kept, label);
    // ... and the kept logits, divided by the temperature as HF's warper does, equal.
    const kept = c.expected.flatMap((x, j) => (x === null ? [] : [[row[j] / c.temperature, x]]));
    assertAllClose(kept.map((p) => p[0]), kept.map((p) => p[1]), { atol: 1e-5, rtol: 1e-6, label });
  }
  // The cases exercise real filtering: top-p 0.05 keeps very few tokens, top-p 1 keeps all.
  assert(cases.some((c) => c.top_p === 0.05 && c.kept < 5));
  assert(cases.some((c) => c.top_p === 1 && c.kept === 64));
});

Deno.test("pickToken() never samples a token that top-p removed", () => {
  const c = cases.find((x) => x.top_p === 0.05)!;
  const allowed = new Set(c.expected.flatMap((x, j) => (x === null ? [] : [j])));
  let seed = 1;
  const random = () => ((seed = (seed * 16807) % 2147483647) / 2147483647);
  for (let i = 0; i < 200; i++) {
    const id = pickToken(Float32Array.from(c.logits), c.temperature, undefined, random, {
      topP: c.top_p,
    });
    assert(allowed.has(id), `sampled ${id}`);
  }
});

Deno.test("the repetition penalty divides positive and multiplies negative logits of seen ids, once each", () => {
  const row = warpLogits(Float32Array.from([2, -2, 1, 4]), [0, 1, 0, 0], {
    repetitionPenalty: 2,
  });
  assertEquals([...row], [1, -4, 1, 4]);
  // Greedy search applies it too (HF: a logits processor, not a warper).
  assertEquals(
    pickToken(Float32Array.from([5, 4.9]), 0, undefined, Math.random, {
      repetitionPenalty: 1.5,
      context: [0],
    }),
    1,
  );
});

Deno.test("checkSampling() refuses top-p outside (0, 1] and a repetition penalty <= 0", () => {
  for (const o of [{ topP: 0 }, { topP: 1.5 }, { topP: -0.1 }, { repetitionPenalty: 0 }]) {
    throws(() => checkSampling(o), UserError, JSON.stringify(o));
  }
  checkSampling({ topP: 1, repetitionPenalty: 0.5 });
});

Deno.test("cutAtStop() cuts before the earliest stop string", () => {
  assertEquals(cutAtStop("a###b\n\nc", ["\n\n", "###"]), { text: "a", hit: true });
  assertEquals(cutAtStop("abc", ["x"]), { text: "abc", hit: false });
});

Deno.test("generate() stops once the decoded text contains a stop string, keeping that token", async () => {
  const model = new GPTModel({
    vocabSize: 20,
    contextLength: 16,
    embDim: 8,
    nHeads: 2,
    nLayers: 1,
    dropRate: 0,
    qkvBias: false,
  }, { seed: 3 });
  const decode = (ids: number[]) => ids.map((i) => String.fromCharCode(97 + i)).join("");
  const free = await generate(model, [1, 2], { maxNewTokens: 8 });
  assertEquals(free.length, 8);
  const stop = decode([free[2]]);
  const first = free.findIndex((id) => decode([id]) === stop);
  const stopped = await generate(model, [1, 2], { maxNewTokens: 8, stop: [stop], decode });
  assertEquals(stopped, free.slice(0, first + 1));
  await rejects(() => generate(model, [1], { maxNewTokens: 1, topP: 2 }), UserError);
  const before = tf.memory().numTensors;
  await generate(model, [1, 2], {
    maxNewTokens: 4,
    temperature: 1,
    topP: 0.9,
    repetitionPenalty: 1.2,
  });
  assertEquals(tf.memory().numTensors, before);
  model.dispose();
});
