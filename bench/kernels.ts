/**
 * Benchmark of the fast cpu kernels (lib/kernels/) on a GPT-like training step built from plain
 * tf ops: token + position embedding (gather), pre-LayerNorm transformer blocks with causal
 * multi-head attention and a tanh-GELU MLP, dropout, a vocabulary-wide output head, sparse
 * cross-entropy and AdamW.
 *
 *   deno run -A bench/kernels.ts [--mode both|fast|stock] [--steps 5] [--profile]
 *        [--vocab 50257] [--ctx 128] [--emb 128] [--layers 2] [--heads 4] [--batch 4]
 *        [--drop 0.1] [--model] [--skip-plain]
 *
 * `stock` is what a plain port does: tfjs' own cpu kernels, one-hot softmax cross-entropy and an
 * AdamW written with tf ops. `fast` registers lib/kernels and uses LlmSparseXent + LlmAdamW.
 * `--model` also times lib/train's trainStep on lib/model/gpt.ts's GPTModel (its own loss and AdamW,
 * which use the fused kernels when registered); `--skip-plain` skips the plain-ops model (whose
 * stock run takes minutes: tfjs' UnsortedSegmentSum loops over all 50,257 rows). Each mode runs
 * in its own process.
 * Not a test: prints ms/step and, with --profile, the ten kernels that took the most time.
 */
import * as tf from "@tensorflow/tfjs";
import { defineFlags, flagHelp, parseArgv } from "../lib/cli/args.ts";
import {
  ADAMW,
  fastKernelStats,
  poolStats,
  registerFastKernels,
  SPARSE_XENT,
} from "../lib/kernels/mod.ts";

const FLAGS = defineFlags({
  mode: { type: "string", choices: ["both", "fast", "stock"], default: "both", help: "kernels" },
  steps: { type: "int", positive: true, default: 5, help: "timed steps" },
  profile: { type: "boolean", help: "print the ten slowest kernels" },
  vocab: { type: "int", positive: true, default: 50257, help: "vocabulary size" },
  ctx: { type: "int", positive: true, default: 128, help: "context length" },
  emb: { type: "int", positive: true, default: 128, help: "embedding width" },
  layers: { type: "int", positive: true, default: 2, help: "transformer blocks" },
  heads: { type: "int", positive: true, default: 4, help: "attention heads" },
  batch: { type: "int", positive: true, default: 4, help: "sequences per batch" },
  drop: { type: "number", min: 0, max: 1, default: 0.1, help: "dropout rate" },
  model: { type: "boolean", help: "also time trainStep(GPTModel)" },
  "skip-plain": { type: "boolean", help: "skip the plain-ops step" },
});
const parsed = parseArgv(FLAGS, Deno.args);
if (parsed.help) {
  console.log(["usage: deno run -A bench/kernels.ts [flags]", ...flagHelp(FLAGS)].join("\n"));
  Deno.exit(0);
}
const args = parsed.flags;
const cfg = {
  vocab: args.vocab,
  ctx: args.ctx,
  emb: args.emb,
  layers: args.layers,
  heads: args.heads,
  batch: args.batch,
  drop: args.drop,
};
const steps = args.steps;

if (args.mode === "both") {
  // One child process per mode: kernel registration is process-global.
  for (const mode of ["stock", "fast"]) {
    const child = new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", new URL(import.meta.url).pathname, ...withMode(mode)],
      stdout: "inherit",
      stderr: "inherit",
    });
    const { code } = await child.output();
    if (code !== 0) Deno.exit(code);
  }
  Deno.exit(0);
}

function withMode(mode: string): string[] {
  const out: string[] = ["--mode", mode];
  for (const [k, v] of Object.entries(args)) {
    if (k === "mode") continue;
    if (typeof v === "boolean") {
      if (v) out.push(`--${k}`);
    } else out.push(`--${k}`, String(v));
  }
  return out;
}

const fast = args.mode === "fast";
await tf.setBackend("cpu");
await tf.ready();
if (fast) {
  const status = registerFastKernels();
  console.log(`fast kernels: ${status.enabled ? "on" : "off"} (${status.reason})`);
  if (!status.enabled) Deno.exit(1);
}

// ---------------------------------------------------------------- a GPT built from plain ops
const { vocab: V, ctx: C, emb: E, layers: L, heads: H, batch: B, drop } = cfg;
const T = C;
const D = E / H;
let seed = 1;
// Inside tidy, so the initial tensor is freed and the variable owns its storage (LlmAdamW
// updates in place and refuses shared storage).
function init(shape: number[], std = 0.02): tf.Variable {
  return tf.tidy(() => tf.variable(tf.randomNormal(shape, 0, std, "float32", seed++)));
}
function constant(shape: number[], value: number): tf.Variable {
  return tf.tidy(() => tf.variable(tf.fill(shape, value)));
}
const params: tf.Variable[] = [];
function p(v: tf.Variable): tf.Variable {
  params.push(v);
  return v;
}
const tokEmb = p(init([V, E]));
const posEmb = p(init([C, E]));
const blocks = Array.from({ length: L }, () => ({
  n1s: p(constant([E], 1)),
  n1b: p(constant([E], 0)),
  wq: p(init([E, E])),
  wk: p(init([E, E])),
  wv: p(init([E, E])),
  wo: p(init([E, E])),
  bo: p(constant([E], 0)),
  n2s: p(constant([E], 1)),
  n2b: p(constant([E], 0)),
  w1: p(init([E, 4 * E])),
  b1: p(constant([4 * E], 0)),
  w2: p(init([4 * E, E])),
  b2: p(constant([E], 0)),
}));
const fns = p(constant([E], 1));
const fnb = p(constant([E], 0));
const head = p(init([E, V]));
const mask = tf.keep(tf.linalg.bandPart(tf.ones([T, T]), -1, 0).equal(0)); // true above diagonal
const negInf = tf.keep(tf.fill([B, H, T, T], -Infinity));
const maskB = tf.keep(tf.broadcastTo(mask.reshape([1, 1, T, T]), [B, H, T, T]));

function layerNorm(x: tf.Tensor, scale: tf.Tensor, shift: tf.Tensor): tf.Tensor {
  const mean = x.mean(-1, true);
  const variance = x.sub(mean).square().mean(-1, true);
  return x.sub(mean).div(variance.add(1e-5).sqrt()).mul(scale).add(shift);
}
function gelu(x: tf.Tensor): tf.Tensor {
  const inner = x.add(tf.pow(x, 3).mul(0.044715)).mul(Math.sqrt(2 / Math.PI));
  return x.mul(0.5).mul(inner.tanh().add(1));
}
/** x [..., in] @ w [in, out]; 2-D because tfjs' BatchMatMul gradient does not reduce broadcast batch dims. */
function linear(x: tf.Tensor, w: tf.Tensor, bias?: tf.Tensor): tf.Tensor {
  const [inDim, outDim] = w.shape;
  let y = tf.matMul(x.reshape([-1, inDim]), w);
  if (bias) y = y.add(bias);
  return y.reshape([...x.shape.slice(0, -1), outDim]);
}
function dropout(x: tf.Tensor): tf.Tensor {
  return drop > 0 ? tf.dropout(x, drop) : x;
}
function forward(ids: tf.Tensor2D): tf.Tensor {
  let x = tf.gather(tokEmb, ids).add(posEmb.slice([0, 0], [T, E]));
  x = dropout(x);
  for (const b of blocks) {
    const h = layerNorm(x, b.n1s, b.n1b);
    const split = (w: tf.Tensor) => linear(h, w).reshape([B, T, H, D]).transpose([0, 2, 1, 3]);
    const q = split(b.wq), k = split(b.wk), v = split(b.wv);
    let s = tf.matMul(q, k, false, true);
    s = tf.where(maskB, negInf, s);
    let a = tf.softmax(s.div(Math.sqrt(D)));
    a = dropout(a);
    const ctx = tf.matMul(a, v).transpose([0, 2, 1, 3]).reshape([B, T, E]);
    x = x.add(dropout(linear(ctx, b.wo, b.bo)));
    const h2 = layerNorm(x, b.n2s, b.n2b);
    const f = linear(gelu(linear(h2, b.w1, b.b1)), b.w2, b.b2);
    x = x.add(dropout(f));
  }
  x = layerNorm(x, fns, fnb);
  return linear(x, head); // [B,T,V]
}
function loss(logits: tf.Tensor, targets: tf.Tensor2D): tf.Scalar {
  const flat = logits.reshape([B * T, V]);
  const tgt = targets.reshape([B * T]);
  if (fast) {
    const losses = tf.engine().runKernel(SPARSE_XENT, { logits: flat, targets: tgt }, {
      ignoreIndex: -100,
    }) as tf.Tensor;
    return losses.mean();
  }
  return tf.losses.softmaxCrossEntropy(tf.oneHot(tgt, V), flat) as tf.Scalar;
}

// AdamW state and update (torch.optim.AdamW defaults, lr 4e-4, wd 0.1).
const hp = { lr: 4e-4, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.1 };
const ms = params.map((v) => tf.tidy(() => tf.variable(tf.zerosLike(v), false)));
const vs = params.map((v) => tf.tidy(() => tf.variable(tf.zerosLike(v), false)));
let t = 0;
function adamw(grads: tf.Tensor[]): void {
  t++;
  for (let i = 0; i < params.length; i++) {
    if (fast) {
      tf.tidy(() => {
        const [p2, m2, v2] = tf.engine().runKernel(
          ADAMW,
          { param: params[i], grad: grads[i], m: ms[i], v: vs[i] },
          { ...hp, step: t },
        ) as tf.Tensor[];
        // No-ops when updated in place (the variables own their storage here).
        params[i].assign(p2);
        ms[i].assign(m2);
        vs[i].assign(v2);
      });
      continue;
    }
    tf.tidy(() => {
      const g = grads[i];
      const pw = params[i].mul(1 - hp.lr * hp.weightDecay);
      const m = ms[i].mul(hp.beta1).add(g.mul(1 - hp.beta1));
      const v = vs[i].mul(hp.beta2).add(g.square().mul(1 - hp.beta2));
      const denom = v.sqrt().div(Math.sqrt(1 - hp.beta2 ** t)).add(hp.eps);
      params[i].assign(pw.sub(m.div(denom).mul(hp.lr / (1 - hp.beta1 ** t))));
      ms[i].assign(m);
      vs[i].assign(v);
    });
  }
}

const ids = tf.keep(tf.randomUniformInt([B, T], 0, V, 7) as tf.Tensor2D);
const targets = tf.keep(tf.randomUniformInt([B, T], 0, V, 8) as tf.Tensor2D);

async function step(): Promise<number> {
  const value = tf.tidy(() => {
    const { value, grads } = tf.variableGrads(() => loss(forward(ids), targets), params);
    adamw(params.map((v) => grads[v.name]));
    return value;
  });
  const loss0 = (await value.data())[0];
  value.dispose();
  return loss0;
}

async function timeSteps(label: string, run: () => number | Promise<number>): Promise<void> {
  await run(); // warm-up (JIT, BLAS threads, first allocations)
  const times: number[] = [];
  let last = 0;
  for (let i = 0; i < steps; i++) {
    const t0 = performance.now();
    last = await run();
    times.push(performance.now() - t0);
  }
  times.sort((a, b) => a - b);
  if (fast) {
    const fallbacks = Object.entries(fastKernelStats()).filter(([, c]) => c.stock > 0)
      .map(([k, c]) => `${k} ${c.stock}/${c.stock + c.fast}`);
    const pool = poolStats();
    console.log(
      `  stock fallbacks: ${fallbacks.join(", ") || "none"}; pool: ${pool.reused} reused, ` +
        `${pool.allocated} allocated, ${(pool.freeBytes / 2 ** 20).toFixed(0)} MiB held`,
    );
  }
  const median = times[Math.floor(times.length / 2)];
  console.log(
    `${label} [${args.mode}] V=${V} C=${C} E=${E} L=${L} H=${H} B=${B} drop=${drop}: ` +
      `${median.toFixed(0)} ms/step (median of ${steps}, min ${times[0].toFixed(0)}), ` +
      `loss ${last.toFixed(4)}, tensors ${tf.memory().numTensors}`,
  );
}

async function profileTop(label: string, run: () => number | Promise<number>): Promise<void> {
  const prof = await tf.profile(async () => {
    await run();
  });
  const agg = new Map<string, { ms: number; n: number }>();
  for (const k of prof.kernels) {
    const a = agg.get(k.name) ?? { ms: 0, n: 0 };
    a.ms += k.kernelTimeMs as number;
    a.n++;
    agg.set(k.name, a);
  }
  const total = prof.kernels.reduce((s, k) => s + (k.kernelTimeMs as number), 0);
  console.log(`  ${label} profile (kernel time; custom-grad scopes include their kernels):`);
  const top = [...agg.entries()].sort((a, b) => b[1].ms - a[1].ms).slice(0, 10);
  for (const [name, a] of top) {
    console.log(
      `    ${name.padEnd(22)} ${a.ms.toFixed(1).padStart(9)} ms ${String(a.n).padStart(5)} calls ${
        (100 * a.ms / total).toFixed(1).padStart(5)
      }%`,
    );
  }
  console.log(`  slowest single calls:`);
  const calls = [...prof.kernels].sort((a, b) =>
    (b.kernelTimeMs as number) - (a.kernelTimeMs as number)
  );
  for (const k of calls.slice(0, 10)) {
    const shapes = k.inputShapes.map((s) => `[${s}]`).join(" ");
    console.log(
      `    ${k.name.padEnd(22)} ${(k.kernelTimeMs as number).toFixed(1).padStart(9)} ms  ${shapes}`,
    );
  }
}

if (!args["skip-plain"]) {
  await timeSteps("plain-ops GPT step", step);
  if (args.profile) await profileTop("plain-ops GPT step", step);
}

// ---------------------------------------------------------------- the real model, when present
if (args.model) await benchModel();

async function benchModel(): Promise<void> {
  const url = (p: string) => new URL(p, import.meta.url);
  try {
    await Deno.stat(url("../lib/model/gpt.ts"));
    await Deno.stat(url("../lib/train/train.ts"));
  } catch {
    console.log("lib/model/gpt.ts or lib/train/train.ts not found: skipping --model");
    return;
  }
  // Dynamic imports: the bench runs (without --model) before the model exists.
  // deno-lint-ignore no-explicit-any
  const { GPTModel }: any = await import(url("../lib/model/gpt.ts").href);
  // deno-lint-ignore no-explicit-any
  const { AdamW }: any = await import(url("../lib/train/adamw.ts").href);
  // deno-lint-ignore no-explicit-any
  const { trainStep }: any = await import(url("../lib/train/train.ts").href);
  const config = {
    vocabSize: V,
    contextLength: C,
    embDim: E,
    nHeads: H,
    nLayers: L,
    dropRate: drop,
    qkvBias: false,
  };
  const model = new GPTModel(config, { seed: 123 });
  model.train();
  const optimizer = new AdamW(model.namedParameters(), { lr: 4e-4, weightDecay: 0.1 });
  // The lead's trainStep: its loss and AdamW use LlmSparseXent/LlmAdamW when registered, and
  // their own tf-ops routes otherwise (already without one-hot), so `stock` here is not naive.
  const run = async () =>
    (await trainStep(model, optimizer, { inputs: ids, targets }, { lr: 4e-4 })).loss as number;
  await timeSteps("lib/train trainStep(GPTModel)", run);
  if (args.profile) await profileTop("trainStep(GPTModel)", run);
}
