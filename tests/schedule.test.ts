import assert from "node:assert/strict";
import { UserError } from "../lib/util/errors.ts";
import {
  lrAt,
  lrSchedule,
  warmupOnlyLr,
  warmupOnlySchedule,
  warmupSteps,
} from "../lib/train/schedule.ts";
import { assertAllClose, readFixtureJson } from "./fixtures.ts";

interface Sched {
  initial_lr: number;
  peak_lr: number;
  min_lr?: number;
  lrs: number[];
}
interface ScheduleFixture {
  total_steps: number;
  warmup_steps: number;
  d1_warmup: Sched;
  d2_cosine: Sched;
  d4_train_model: Sched;
}
const fx = await readFixtureJson<ScheduleFixture>("schedule.json");
// Same formulas in the same operation order as the Python loops: equal up to libm's cos().
const EXACT = { rtol: 1e-14, atol: 0 };

Deno.test("warmupSteps(135) is 27: 20% of 9 batches x 15 epochs, as int(0.2 * total_steps)", () => {
  assert.equal(fx.total_steps, 135);
  assert.equal(warmupSteps(135), 27);
  assert.equal(warmupSteps(135), fx.warmup_steps);
  assert.equal(warmupSteps(10, 0.25), 2); // int(2.5)
  assert.equal(warmupSteps(0), 0);
});

Deno.test("warmupOnlyLr() matches the book's D.1 loop: 0.0001 rising by 0.000367 per step to 0.01 at step 27, then flat", () => {
  const o = { initialLr: 1e-4, peakLr: 0.01, warmupSteps: 27 };
  const lrs = warmupOnlySchedule({ ...o, totalSteps: 135 });
  assertAllClose(lrs, fx.d1_warmup.lrs, EXACT);
  assert.equal(lrs[0], 1e-4);
  assertAllClose([lrs[1] - lrs[0]], [(0.01 - 1e-4) / 27], { rtol: 1e-9 });
  assert.ok(lrs[26] < 0.01);
  assert.ok(lrs.slice(27).every((lr) => lr === 0.01));
  assert.equal(warmupOnlyLr(500, o), 0.01);
});

Deno.test("lrAt() matches the book's D.2 cosine loop (initial 1e-4, peak 0.01, min 1e-5) at all 135 steps", () => {
  const o = { initialLr: 1e-4, peakLr: 0.01, minLr: 1e-5, warmupSteps: 27, totalSteps: 135 };
  assert.equal(fx.d2_cosine.min_lr, 0.1 * 1e-4);
  const lrs = lrSchedule(o);
  assert.equal(lrs.length, 135);
  assertAllClose(lrs, fx.d2_cosine.lrs, EXACT);
  assert.equal(lrs[27], 0.01); // peak first reached right after warmup (progress 0)
  assert.ok(Math.max(...lrs) === 0.01);
  // the last step (progress 107/108) stays above min_lr, as in the book: 1.2113e-5
  assert.equal(lrs[134].toExponential(4), "1.2113e-5");
});

Deno.test("lrAt() matches the book's D.4 train_model (optimizer lr 0.001, initial_lr = min_lr = 1e-5)", () => {
  const o = { initialLr: 1e-5, peakLr: 0.001, minLr: 1e-5, warmupSteps: 27, totalSteps: 135 };
  assertAllClose(lrSchedule(o), fx.d4_train_model.lrs, EXACT);
});

Deno.test("lrAt() holds minLr past totalSteps and starts at the peak when there is no warmup", () => {
  const o = { initialLr: 1e-5, peakLr: 1e-3, minLr: 1e-5, warmupSteps: 27, totalSteps: 135 };
  assert.equal(lrAt(135, o), 1e-5);
  assert.equal(lrAt(10_000, o), 1e-5);
  assert.equal(lrAt(0, { ...o, warmupSteps: 0 }), 1e-3);
  assert.equal(lrAt(5, { ...o, warmupSteps: 135 }), 1e-5 + 5 * ((1e-3 - 1e-5) / 135));
  assert.equal(lrAt(135, { ...o, warmupSteps: 135 }), 1e-5); // no decay phase at all
});

Deno.test("lrAt() rejects negative or fractional steps with a UserError", () => {
  const o = { initialLr: 1e-5, peakLr: 1e-3, minLr: 1e-5, warmupSteps: 2, totalSteps: 10 };
  assert.throws(() => lrAt(-1, o), UserError);
  assert.throws(() => lrAt(1.5, o), /step must be a non-negative integer/);
  assert.throws(() => lrAt(1, { ...o, totalSteps: -3 }), UserError);
  assert.throws(() => warmupSteps(100, 2), /warmup fraction/);
});
