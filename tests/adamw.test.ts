import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { AdamW, ADAMW_KERNEL, type AdamWOptions } from "../lib/train/adamw.ts";
import { clipGradNorm } from "../lib/train/clip.ts";
import { lrAt } from "../lib/train/schedule.ts";
import { assertAllClose, readFixtureJson } from "./fixtures.ts";
import { initBackend } from "../lib/backend.ts";
import { hasKernels } from "../lib/kernels/util.ts";

// The suite's backend: the cpu with its fast kernels, or WebGPU (CI: lavapipe) with the fused
// WGSL ones; LLM_FAST_KERNELS=0 leaves the composite step.
const backend = await initBackend({ log: false });

type Named = Record<string, number[]>;
interface Run {
  weight_decay: number;
  clip_max_norm: number | null;
  steps: { lr: number; total_norm?: number; clipped_grads?: Named; params: Named }[];
  final_state: Record<string, { step: number; exp_avg: number[]; exp_avg_sq: number[] }>;
  schedule?: {
    initial_lr: number;
    peak_lr: number;
    min_lr: number;
    warmup_steps: number;
    total_steps: number;
  };
}
interface AdamWFixture {
  shapes: Record<string, number[]>;
  init: Named;
  grads: Named[];
  constant_lr: Run;
  scheduled_lr: Run;
  torch_defaults: Run;
}

const fx = await readFixtureJson<AdamWFixture>("adamw.json");
const TOL = { rtol: 1e-5, atol: 1e-7 };

function makeParams(values: Named = fx.init): Map<string, tf.Variable> {
  return new Map(
    Object.entries(fx.shapes).map(([k, shape]) => [k, tf.variable(tf.tensor(values[k], shape))]),
  );
}

function makeGrads(step: number): Map<string, tf.Tensor> {
  return new Map(
    Object.entries(fx.shapes).map(([k, shape]) => [k, tf.tensor(fx.grads[step][k], shape)]),
  );
}

async function assertParams(
  params: Map<string, tf.Variable>,
  expected: Named,
  label: string,
): Promise<void> {
  for (const [k, v] of params) {
    assertAllClose(await v.data(), expected[k], { ...TOL, label: `${label} ${k}` });
  }
}

/** Replays one fixture run (clip when the run clipped, LR per step as recorded). */
async function replay(
  run: Run,
  opts: AdamWOptions | undefined,
  from = 0,
  to = run.steps.length,
  opt?: AdamW,
) {
  const params = makeParams(from === 0 ? fx.init : run.steps[from - 1].params);
  opt ??= new AdamW(params, opts);
  for (let i = from; i < to; i++) {
    const s = run.steps[i];
    const grads = makeGrads(i);
    if (run.clip_max_norm !== null) {
      const { grads: clipped, totalNorm } = await clipGradNorm(grads, run.clip_max_norm);
      assertAllClose([totalNorm], [s.total_norm!], { ...TOL, label: `step ${i} norm` });
      opt.step(clipped, s.lr);
      tf.dispose([...clipped.values()]);
    } else {
      opt.step(grads, s.lr);
    }
    tf.dispose([...grads.values()]);
    await assertParams(params, s.params, `step ${i}`);
  }
  return { params, opt };
}

function disposeAll(params: Map<string, tf.Variable>, opt: AdamW): void {
  opt.dispose();
  tf.dispose([...params.values()]);
}

Deno.test("AdamW + clipGradNorm match torch.optim.AdamW(lr 0.005, weight_decay 0.1) + clip_grad_norm_(1.0) over 5 steps", async () => {
  const run = fx.constant_lr;
  assert.deepEqual(run.steps.map((s) => s.total_norm! > 1), [true, false, true, false, true]);
  const { params, opt } = await replay(run, { lr: 0.005, weightDecay: run.weight_decay });
  disposeAll(params, opt);
});

Deno.test("AdamW matches torch with the LR of every step set from the warmup + cosine schedule", async () => {
  const run = fx.scheduled_lr, s = run.schedule!;
  const opts = {
    initialLr: s.initial_lr,
    peakLr: s.peak_lr,
    minLr: s.min_lr,
    warmupSteps: s.warmup_steps,
    totalSteps: s.total_steps,
  };
  run.steps.forEach((step, i) => assert.equal(lrAt(i, opts), step.lr));
  const { params, opt } = await replay(run, { weightDecay: run.weight_decay });
  assert.equal(opt.lr, run.steps.at(-1)!.lr);
  disposeAll(params, opt);
});

Deno.test("new AdamW(params) has torch's defaults (lr 1e-3, betas 0.9/0.999, eps 1e-8, weight decay 0.01)", async () => {
  const params = makeParams();
  const opt = new AdamW(params);
  assert.deepEqual([opt.lr, opt.betas, opt.eps, opt.weightDecay], [1e-3, [0.9, 0.999], 1e-8, 0.01]);
  disposeAll(params, opt);
  const r = await replay(fx.torch_defaults, undefined);
  disposeAll(r.params, r.opt);
});

Deno.test("stateDict() holds torch's step, exp_avg and exp_avg_sq per parameter name", async () => {
  const run = fx.constant_lr;
  const { params, opt } = await replay(run, { lr: 0.005, weightDecay: 0.1 });
  const sd = await opt.stateDict();
  assert.equal(sd.step, 5);
  assert.deepEqual(Object.keys(sd.state).sort(), Object.keys(fx.shapes).sort());
  for (const [k, st] of Object.entries(run.final_state)) {
    assert.equal(sd.state[k].step, st.step);
    assert.deepEqual(sd.state[k].shape, fx.shapes[k]);
    assert.ok(sd.state[k].m instanceof Float32Array);
    assertAllClose(sd.state[k].m, st.exp_avg, { ...TOL, label: `${k} m` });
    assertAllClose(sd.state[k].v, st.exp_avg_sq, { ...TOL, label: `${k} v` });
  }
  disposeAll(params, opt);
});

Deno.test("loadStateDict() resumes: 3 steps, save, new optimizer, 2 more steps equal 5 uninterrupted steps", async () => {
  const run = fx.constant_lr;
  const first = await replay(run, { lr: 0.005, weightDecay: 0.1 }, 0, 3);
  const saved = await first.opt.stateDict();
  const resumedParams = makeParams(
    Object.fromEntries(
      await Promise.all([...first.params].map(async ([k, v]) => [k, [...await v.data()]])),
    ),
  );
  disposeAll(first.params, first.opt);
  const opt = new AdamW(resumedParams, { lr: 0.005, weightDecay: 0.1 });
  opt.loadStateDict(saved);
  assert.equal(opt.stepCount, 3);
  for (let i = 3; i < 5; i++) {
    const grads = makeGrads(i);
    const { grads: clipped } = await clipGradNorm(grads, 1.0);
    opt.step(clipped);
    tf.dispose([...grads.values(), ...clipped.values()]);
  }
  await assertParams(resumedParams, run.steps[4].params, "resumed step 4");
  disposeAll(resumedParams, opt);
});

Deno.test("loadStateDict() rejects a checkpoint with a missing or differently shaped parameter", async () => {
  const params = makeParams();
  const opt = new AdamW(params);
  const sd = await opt.stateDict();
  const { w1: _w1, ...missing } = sd.state;
  assert.throws(() => opt.loadStateDict({ ...sd, state: missing }), /no state for parameter "w1"/);
  assert.throws(
    () =>
      opt.loadStateDict({ ...sd, state: { ...sd.state, w1: { ...sd.state.w1, shape: [4, 3] } } }),
    /shape \[4,3\]/,
  );
  disposeAll(params, opt);
});

Deno.test("AdamW.step() keeps the tensor count flat across steps and frees its moments on dispose()", () => {
  const params = makeParams();
  const before = tf.memory().numTensors;
  const opt = new AdamW(params, { weightDecay: 0.1 });
  const withState = tf.memory().numTensors;
  assert.equal(withState - before, 2 * params.size); // m and v per parameter
  for (let i = 0; i < 5; i++) {
    const grads = makeGrads(i);
    opt.step(grads, 0.001 * (i + 1));
    tf.dispose([...grads.values()]);
    assert.equal(tf.memory().numTensors, withState, `tensor count after step ${i}`);
  }
  opt.dispose();
  assert.equal(tf.memory().numTensors, before);
  tf.dispose([...params.values()]);
});

Deno.test({
  name:
    `AdamW.step() with the fused kernel on ${backend.name} rewrites parameters and moments in place: no new storage, the same dataIds, bytes and tensor count flat over 5 steps`,
  ignore: !hasKernels(ADAMW_KERNEL),
  fn: async () => {
    let params = new Map<string, tf.Variable>();
    tf.tidy(() => void (params = makeParams())); // variables that own their storage
    const opt = new AdamW(params); // torch's defaults, as the fixture's unclipped run
    const ids = [...params.values()].map((p) => p.dataId);
    const be = tf.backend() as unknown as { write: (...args: unknown[]) => unknown };
    const write = be.write;
    let writes = 0;
    be.write = (...args) => (writes++, write.apply(be, args));
    const memory: [number, number][] = [];
    try {
      for (let i = 0; i < 5; i++) {
        const grads = makeGrads(i);
        writes = 0;
        opt.step(grads);
        assert.equal(writes, 0, `step ${i} made ${writes} new tensor storages`);
        tf.dispose([...grads.values()]);
        memory.push([tf.memory().numTensors, tf.memory().numBytes]);
      }
    } finally {
      be.write = write;
    }
    assert.deepEqual([...params.values()].map((p) => p.dataId), ids);
    assert.equal(new Set(memory.map((m) => m.join())).size, 1, `memory flat: ${memory}`);
    await assertParams(params, fx.torch_defaults.steps[4].params, "torch's step 5");
    disposeAll(params, opt);
  },
});

Deno.test("AdamW gives state only to trainable variables and refuses gradients for others", async () => {
  const params = makeParams();
  params.get("b1")!.trainable = false;
  const opt = new AdamW(params);
  assert.deepEqual(opt.paramNames.sort(), ["w1", "w2"]);
  assert.deepEqual(Object.keys((await opt.stateDict()).state).sort(), ["w1", "w2"]);
  const grads = makeGrads(0);
  const b1Before = [...await params.get("b1")!.data()];
  assert.throws(() => opt.step(grads), /no trainable parameter named "b1"/);
  grads.get("b1")!.dispose();
  grads.delete("b1");
  opt.step(grads); // a missing gradient means "skip", like torch's p.grad is None
  assert.deepEqual([...await params.get("b1")!.data()], b1Before);
  assert.equal((await opt.stateDict()).state.w1.step, 1);
  tf.dispose([...grads.values()]);
  disposeAll(params, opt);
});

Deno.test("AdamW.step() accepts a plain object of gradients (what tf.variableGrads returns)", async () => {
  const run = fx.torch_defaults;
  const params = makeParams();
  const opt = new AdamW(params);
  const grads = Object.fromEntries(makeGrads(0));
  opt.step(grads);
  await assertParams(params, run.steps[0].params, "record step 0");
  tf.dispose(Object.values(grads));
  disposeAll(params, opt);
});

Deno.test({
  name: `AdamW uses a registered "${ADAMW_KERNEL}" kernel with the documented contract`,
  ignore: backend.name !== "cpu",
  fn: contractTest,
});

async function contractTest() {
  let calls = 0;
  // A reference kernel in plain JS (float64 math) standing in for lib/kernels' fused one; a real
  // one registered already is put back afterwards.
  const existing = tf.getKernel(ADAMW_KERNEL, "cpu");
  if (existing) tf.unregisterKernel(ADAMW_KERNEL, "cpu");
  tf.registerKernel({
    kernelName: ADAMW_KERNEL,
    backendName: "cpu",
    kernelFunc: ({ inputs, attrs, backend }) => {
      calls++;
      // deno-lint-ignore no-explicit-any
      const b = backend as any, a = attrs as Record<string, number>;
      const get = (t: tf.TensorInfo) => b.data.get(t.dataId).values as Float32Array;
      const { param, grad, m, v } = inputs as Record<string, tf.TensorInfo>;
      const [p0, g0, m0, v0] = [get(param), get(grad), get(m), get(v)];
      const n = p0.length,
        p1 = new Float32Array(n),
        m1 = new Float32Array(n),
        v1 = new Float32Array(n);
      const bc1 = 1 - a.beta1 ** a.step, bc2 = 1 - a.beta2 ** a.step;
      for (let i = 0; i < n; i++) {
        m1[i] = a.beta1 * m0[i] + (1 - a.beta1) * g0[i];
        v1[i] = a.beta2 * v0[i] + (1 - a.beta2) * g0[i] * g0[i];
        const denom = Math.sqrt(v1[i]) / Math.sqrt(bc2) + a.eps;
        p1[i] = p0[i] * (1 - a.lr * a.weightDecay) - (a.lr / bc1) * (m1[i] / denom);
      }
      return [p1, m1, v1].map((x) => b.makeTensorInfo(param.shape, "float32", x));
    },
  });
  try {
    const run = fx.constant_lr;
    const { params, opt } = await replay(run, { lr: 0.005, weightDecay: 0.1 });
    assert.equal(calls, 5 * params.size);
    disposeAll(params, opt);
    const off = await replay(run, { lr: 0.005, weightDecay: 0.1, useKernel: false });
    assert.equal(calls, 5 * params.size);
    disposeAll(off.params, off.opt);
  } finally {
    tf.unregisterKernel(ADAMW_KERNEL, "cpu");
    if (existing) tf.registerKernel(existing);
  }
}
