import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { timeMatmul, timeMatmulOnBackends } from "../lib/appendix_a/timing.ts";
import { useStockCpu } from "../lib/backend.ts";

await useStockCpu();

Deno.test("timeMatmul() returns a positive time per product and frees its tensors", async () => {
  const before = tf.memory().numTensors;
  const us = await timeMatmul({ m: 8, k: 8, n: 8, minLoopMs: 1, loops: 3 });
  assert.ok(us > 0 && Number.isFinite(us));
  assert.equal(tf.memory().numTensors, before);
});

Deno.test("timeMatmulOnBackends() times each backend and restores the one in use", async () => {
  const results = await timeMatmulOnBackends({ m: 8, k: 8, n: 8, minLoopMs: 1, loops: 1 });
  assert.ok(results.some((r) => r.backend === "cpu" && (r.microseconds ?? 0) > 0));
  assert.equal(tf.getBackend(), "cpu");
});
