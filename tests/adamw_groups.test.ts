/**
 * AdamW's weight-decay groups (`--no-decay-bias-norm`, nanoGPT's rule) against torch.optim.AdamW
 * with two param groups: rank >= 2 tensors decayed, biases and norm scales not
 * (tests/fixtures/adamw_groups.json).
 */
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { initBackend } from "../lib/backend.ts";
import { AdamW, decayMatricesOnly } from "../lib/train/adamw.ts";
import { assertAllClose, readFixtureJson } from "./fixtures.ts";

await initBackend({ log: false });

type Named = Record<string, number[]>;
const fx = await readFixtureJson<{
  lr: number;
  weight_decay: number;
  shapes: Record<string, number[]>;
  init: Named;
  grads: Named[];
  steps: Named[];
}>("adamw_groups.json");

async function run(useKernel: boolean, decay?: typeof decayMatricesOnly): Promise<Named[]> {
  const params = new Map(
    Object.entries(fx.shapes).map(([k, s]) => [k, tf.variable(tf.tensor(fx.init[k], s))]),
  );
  const opt = new AdamW(params, { lr: fx.lr, weightDecay: fx.weight_decay, useKernel, decay });
  const out: Named[] = [];
  for (const g of fx.grads) {
    const grads = new Map(Object.entries(fx.shapes).map(([k, s]) => [k, tf.tensor(g[k], s)]));
    opt.step(grads);
    tf.dispose([...grads.values()]);
    const row: Named = {};
    for (const [k, p] of params) row[k] = [...(await p.data())];
    out.push(row);
  }
  assert.deepEqual(opt.noDecayNames, decay ? ["b1", "scale"] : []);
  opt.dispose();
  tf.dispose([...params.values()]);
  return out;
}

for (const useKernel of [false, true]) {
  Deno.test(`AdamW with decayMatricesOnly equals torch AdamW with two param groups over 4 steps (useKernel ${useKernel})`, async () => {
    const got = await run(useKernel, decayMatricesOnly);
    for (const [i, step] of fx.steps.entries()) {
      for (const k of Object.keys(fx.shapes)) {
        assertAllClose(got[i][k], step[k], { rtol: 1e-5, atol: 1e-7, label: `step ${i} ${k}` });
      }
    }
  });
}

Deno.test("without decay groups the bias is decayed too, so it ends elsewhere than torch's no-decay group", async () => {
  const all = await run(false);
  const diff = Math.max(...all[3].b1.map((x, j) => Math.abs(x - fx.steps[3].b1[j])));
  assert.ok(diff > 1e-5, `bias differs by only ${diff}`);
  assertAllClose(all[3].w1, fx.steps[3].w1, { rtol: 1e-5, atol: 1e-7, label: "w1" });
});
