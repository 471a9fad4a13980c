import assert from "node:assert/strict";
import { join } from "node:path";
import * as tf from "@tensorflow/tfjs";
import { initBackend } from "../lib/backend.ts";
import { type GPTConfig, PRESETS } from "../lib/model/config.ts";
import { UserError } from "../lib/util/errors.ts";
import {
  ADAPTER_CONFIG_FILE,
  ADAPTER_WEIGHTS_FILE,
  type AdapterConfig,
  loadAdapter,
  saveAdapter,
} from "../lib/io/adapter.ts";
import { countLoraParams } from "../lib/model/lora_counts.ts";
import {
  countTrainable,
  freezeAll,
  kaimingUniformBound,
  linearLayers,
  LinearWithLoRA,
  LoRALayer,
  loraLayers,
  replaceLinearWithLora,
} from "../lib/model/lora.ts";
import { mergeLora } from "../lib/model/lora_merge.ts";
import { replaceHeadWithClassifier } from "../lib/model/classifier.ts";
import { GPTModel } from "../lib/model/gpt.ts";
import { Linear } from "../lib/model/nn.ts";
import { readSafetensors, writeSafetensors } from "../lib/io/safetensors.ts";
import { AdamW } from "../lib/train/adamw.ts";
import { trainStep } from "../lib/train/train.ts";
import {
  loadCheckpoint,
  loadWeightsInto,
  paramsToTensors,
  saveCheckpoint,
} from "../lib/io/weights.ts";

const backend = await initBackend({ log: false });
/** GPT-2 124M needs its [50257, 768] embedding bound whole (Mesa's lavapipe binds 128 MiB). */
const holdsGpt2 = (backend.maxTensorBytes ?? Infinity) >= 50257 * 768 * 4;

const GPT2_SMALL_QKV: GPTConfig = { ...PRESETS["gpt2-small"], qkvBias: true };
const GPT2_MEDIUM_QKV: GPTConfig = { ...PRESETS["gpt2-medium"], qkvBias: true };
// Small enough for two shared cores: vocab 97, context 16, emb 32, 4 heads, 2 layers.
const TINY: GPTConfig = {
  vocabSize: 97,
  contextLength: 16,
  embDim: 32,
  nHeads: 4,
  nLayers: 2,
  dropRate: 0,
  qkvBias: true,
};

function ids(seed: number, b = 2, t = 12, vocab = TINY.vocabSize): tf.Tensor2D {
  return tf.randomUniform([b, t], 0, vocab, "int32", seed) as tf.Tensor2D;
}

async function logitsOf(model: GPTModel, input: tf.Tensor2D): Promise<Float32Array> {
  const out = model.forward(input);
  const data = await out.data() as Float32Array;
  out.dispose();
  return Float32Array.from(data);
}

function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  assert.equal(a.length, b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

async function snapshot(model: GPTModel): Promise<Map<string, Float32Array>> {
  const out = new Map<string, Float32Array>();
  for (const [n, v] of model.namedParameters()) {
    out.set(n, Float32Array.from(await v.data() as Float32Array));
  }
  return out;
}

/** A tiny LoRA model trained for a few steps, so that B != 0. */
async function trainedLoraModel(
  opts: { rank?: number; alpha?: number; scaling?: "alpha" | "alpha/rank" } = {},
): Promise<GPTModel> {
  const model = new GPTModel(TINY, { seed: 7 });
  freezeAll(model);
  replaceLinearWithLora(model, { rank: opts.rank ?? 4, alpha: opts.alpha ?? 8, ...opts });
  const opt = new AdamW(model.namedParameters(), { lr: 0.02, weightDecay: 0.1 });
  model.train();
  for (let s = 0; s < 3; s++) {
    const inputs = ids(100 + s), targets = ids(200 + s);
    await trainStep(model, opt, { inputs, targets }, { lr: 0.02 });
    tf.dispose([inputs, targets]);
  }
  model.eval();
  opt.dispose();
  return model;
}

async function withTempDir<T>(f: (dir: string) => Promise<T>): Promise<T> {
  const dir = await Deno.makeTempDir({ prefix: "lora-test-" });
  try {
    return await f(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

// ---------------------------------------------------------------------------------------------
// The book's parameter counts

Deno.test({
  name:
    "GPT-2 124M with a 2-class head: 124,441,346 trainable, 0 after freezing, 2,666,528 after LoRA rank 16 (appendix E)",
  ignore: !holdsGpt2,
}, () => {
  const model = new GPTModel(GPT2_SMALL_QKV);
  try {
    replaceHeadWithClassifier(model, 2);
    assert.equal(countTrainable(model), 124_441_346);
    freezeAll(model);
    assert.equal(countTrainable(model), 0);
    const wrapped = replaceLinearWithLora(model, { rank: 16, alpha: 16 });
    assert.equal(countTrainable(model), 2_666_528);
    // 12 blocks x 6 linears + the head.
    assert.equal(wrapped.length, 73);
    // The shape-only count agrees with the real model.
    assert.deepEqual(countLoraParams(GPT2_SMALL_QKV, { rank: 16, numClasses: 2 }), {
      baseParams: 124_441_346,
      loraParams: 2_666_528,
      layers: 73,
    });
  } finally {
    model.dispose();
  }
});

Deno.test("gpt2-medium with qkv bias: 406,286,336 parameters and 7,898,384 LoRA parameters at rank 16 (exercise 7.4), counted from shapes", () => {
  const c = countLoraParams(GPT2_MEDIUM_QKV, { rank: 16 });
  assert.equal(c.baseParams, 406_286_336);
  assert.equal(c.loraParams, 7_898_384);
  assert.equal(c.layers, 24 * 6 + 1);
});

Deno.test("countLoraParams() matches a real small model for every kind of targets", () => {
  const cases = [
    { targets: "all" as const },
    { targets: "all-but-head" as const },
    { targets: ["W_query", "W_value"] },
    { targets: (n: string) => n.startsWith("trf_blocks.1.") },
    { targets: ["out_head"], numClasses: 3 },
  ];
  for (const { targets, numClasses } of cases as { targets: never; numClasses?: number }[]) {
    const model = new GPTModel(TINY);
    if (numClasses) replaceHeadWithClassifier(model, numClasses);
    const before = countTrainable(model);
    freezeAll(model);
    const wrapped = replaceLinearWithLora(model, { rank: 3, alpha: 3, targets });
    const c = countLoraParams(TINY, { rank: 3, targets, numClasses });
    assert.equal(c.baseParams, before);
    assert.equal(c.loraParams, countTrainable(model));
    assert.equal(c.layers, wrapped.length);
    model.dispose();
  }
});

// ---------------------------------------------------------------------------------------------
// Layers

Deno.test("LoRALayer: A is kaiming_uniform_(a=sqrt(5)) with torch's fan_in = rank (bound 1/sqrt(rank) = 0.25 at rank 16), B is zeros", async () => {
  assert.ok(Math.abs(kaimingUniformBound([768, 16], Math.sqrt(5)) - 0.25) < 1e-15);
  const layer = new LoRALayer(768, 10, 16, 16);
  const a = (await layer.A.data()) as Float32Array, b = await layer.B.data();
  const max = a.reduce((m: number, x: number) => Math.max(m, Math.abs(x)), 0);
  assert.ok(max <= 0.25 && max > 0.249, `max |A| = ${max}`);
  assert.deepEqual(layer.A.shape, [768, 16]);
  assert.deepEqual(layer.B.shape, [16, 10]);
  assert.ok(b.every((x) => x === 0));
  layer.dispose();
});

Deno.test("LoRALayer scales x A B by alpha/rank by default and by alpha with the printed book's erratum", async () => {
  const x = tf.randomNormal([3, 5, 6], 0, 1, "float32", 1);
  for (const [scaling, scale] of [["alpha/rank", 8 / 4], ["alpha", 8]] as const) {
    const layer = new LoRALayer(6, 7, 4, 8, { scaling, seed: 3 });
    assert.equal(layer.scale, scale);
    layer.B.assign(tf.randomNormal([4, 7], 0, 1, "float32", 2));
    const got = layer.apply(x);
    assert.deepEqual(got.shape, [3, 5, 7]);
    const want = tf.tidy(() =>
      tf.mul(tf.matMul(x.reshape([15, 6]), tf.matMul(layer.A, layer.B)), scale).reshape([3, 5, 7])
    );
    assert.ok(
      maxAbsDiff((await got.data()) as Float32Array, (await want.data()) as Float32Array) < 1e-4,
    );
    tf.dispose([got, want]);
    layer.dispose();
  }
  x.dispose();
});

Deno.test("LoRA rank <= 0, alpha <= 0, a bad scaling or dropout are UserErrors", () => {
  assert.throws(() => new LoRALayer(4, 4, 0, 1), UserError);
  assert.throws(() => new LoRALayer(4, 4, 2.5, 1), UserError);
  assert.throws(() => new LoRALayer(4, 4, 2, 0), UserError);
  assert.throws(() => new LoRALayer(4, 4, 2, -1), UserError);
  assert.throws(() => new LoRALayer(4, 4, 2, 1, { dropout: 1 }), UserError);
  const model = new GPTModel(TINY);
  assert.throws(() => replaceLinearWithLora(model, { rank: -1, alpha: 16 }), /rank/);
  assert.throws(() => replaceLinearWithLora(model, { rank: 16, alpha: 0 }), /alpha/);
  assert.throws(
    () => replaceLinearWithLora(model, { rank: 2, alpha: 2, scaling: "rank" as never }),
    /scaling/,
  );
  assert.equal(loraLayers(model).size, 0);
  model.dispose();
});

Deno.test("LinearWithLoRA names its children like the book: W_query.linear.weight, W_query.lora.A", () => {
  const model = new GPTModel(TINY);
  replaceLinearWithLora(model, { rank: 2, alpha: 2, targets: ["W_query"] });
  const names = [...model.namedParameters().keys()];
  for (
    const n of [
      "trf_blocks.0.att.W_query.linear.weight",
      "trf_blocks.0.att.W_query.linear.bias",
      "trf_blocks.0.att.W_query.lora.A",
      "trf_blocks.0.att.W_query.lora.B",
      "trf_blocks.1.att.W_key.weight",
      "out_head.weight",
    ]
  ) assert.ok(names.includes(n), n);
  const layer = model.namedModules().get("trf_blocks.1.att.W_query");
  assert.ok(layer instanceof LinearWithLoRA);
  assert.equal(layer.inDim, 32);
  assert.equal(layer.outDim, 32);
  model.dispose();
});

Deno.test("replaceLinearWithLora() wraps every Linear (out_head included) by default; targets narrow it", () => {
  const count = (targets?: Parameters<typeof replaceLinearWithLora>[1]["targets"]) => {
    const model = new GPTModel(TINY);
    const names = replaceLinearWithLora(model, { rank: 2, alpha: 2, targets });
    assert.equal(linearLayers(model).size + names.length, 2 * 6 + 1);
    model.dispose();
    return names;
  };
  assert.equal(count().length, 13);
  assert.ok(count().includes("out_head"));
  assert.ok(!count("all-but-head").includes("out_head"));
  assert.equal(count("all-but-head").length, 12);
  assert.deepEqual(count(["W_query", "W_value"]), [
    "trf_blocks.0.att.W_query",
    "trf_blocks.0.att.W_value",
    "trf_blocks.1.att.W_query",
    "trf_blocks.1.att.W_value",
  ]);
  assert.deepEqual(count(["ff.layers.2", "out_head"]), [
    "trf_blocks.0.ff.layers.2",
    "trf_blocks.1.ff.layers.2",
    "out_head",
  ]);
  assert.deepEqual(count((n) => n.endsWith("out_proj")), [
    "trf_blocks.0.att.out_proj",
    "trf_blocks.1.att.out_proj",
  ]);
});

Deno.test("replaceLinearWithLora() throws a UserError for targets that match no layer, and on a model that already has LoRA", () => {
  const model = new GPTModel(TINY);
  assert.throws(
    () => replaceLinearWithLora(model, { rank: 2, alpha: 2, targets: ["W_qeury"] }),
    (e) => e instanceof UserError && /"W_qeury" matches no linear layer/.test(e.message),
  );
  assert.throws(
    () => replaceLinearWithLora(model, { rank: 2, alpha: 2, targets: () => false }),
    /select no linear layer/,
  );
  assert.throws(() => replaceLinearWithLora(model, { rank: 2, alpha: 2, targets: [] }), UserError);
  replaceLinearWithLora(model, { rank: 2, alpha: 2 });
  assert.throws(() => replaceLinearWithLora(model, { rank: 2, alpha: 2 }), /already has LoRA/);
  model.dispose();
});

Deno.test("a model with fresh LoRA layers gives the base model's logits exactly (B = 0)", async () => {
  const model = new GPTModel(TINY, { seed: 5 });
  const input = ids(1);
  const before = await logitsOf(model, input);
  replaceLinearWithLora(model, { rank: 4, alpha: 16 });
  assert.deepEqual(await logitsOf(model, input), before);
  input.dispose();
  model.dispose();
});

Deno.test("LoRA dropout acts on the LoRA branch in train mode only", async () => {
  const layer = new LinearWithLoRA(new Linear(8, 8, { seed: 1 }), 2, 2, { dropout: 0.5 });
  layer.lora.B.assign(tf.ones([2, 8]));
  const x = tf.ones([4, 8]);
  const evalOut = await layer.apply(x).data();
  layer.train();
  const trainOut = await layer.apply(x).data();
  assert.ok(maxAbsDiff(Float32Array.from(evalOut), Float32Array.from(trainOut)) > 0);
  x.dispose();
  layer.dispose();
});

// ---------------------------------------------------------------------------------------------
// Training, merging, adapters

Deno.test("LoRA training with AdamW changes only A and B: frozen weights stay bitwise equal, optimizer state only for A/B", async () => {
  const model = new GPTModel(TINY, { seed: 7 });
  freezeAll(model);
  replaceLinearWithLora(model, { rank: 4, alpha: 8 });
  const before = await snapshot(model);
  const opt = new AdamW(model.namedParameters(), { lr: 0.02, weightDecay: 0.1 });
  assert.equal(opt.paramNames.length, 2 * 13);
  assert.ok(opt.paramNames.every((n) => /\.lora\.[AB]$/.test(n)), opt.paramNames.join(","));
  const tensorsBefore = tf.memory().numTensors;
  model.train();
  const losses = [];
  for (let s = 0; s < 4; s++) {
    const inputs = ids(100 + (s % 2)), targets = ids(200 + (s % 2));
    losses.push((await trainStep(model, opt, { inputs, targets }, { lr: 0.02 })).loss);
    tf.dispose([inputs, targets]);
  }
  assert.equal(tf.memory().numTensors, tensorsBefore, "no tensors leak per step");
  assert.ok(losses[3] < losses[1], `loss went down: ${losses}`);
  for (const [name, v] of model.namedParameters()) {
    const same = maxAbsDiff(before.get(name)!, (await v.data()) as Float32Array) === 0;
    if (/\.lora\.[AB]$/.test(name)) assert.ok(!same, `${name} changed`);
    else assert.deepEqual(await v.data(), before.get(name), `${name} unchanged`);
  }
  assert.equal(Object.keys((await opt.stateDict()).state).length, 26);
  opt.dispose();
  model.dispose();
});

Deno.test("mergeLora() gives a plain GPTModel with the LoRA model's logits (within 1e-5), for both scaling rules", async () => {
  for (const scaling of ["alpha/rank", "alpha"] as const) {
    const model = await trainedLoraModel({ scaling });
    const B = model.namedParameters().get("trf_blocks.0.att.W_query.lora.B")!;
    assert.ok((await B.data()).some((x) => x !== 0), "training made B non-zero");
    const merged = mergeLora(model);
    assert.equal(loraLayers(merged).size, 0);
    assert.deepEqual(
      [...merged.namedParameters().keys()],
      [...new GPTModel(TINY).namedParameters().keys()],
    );
    const input = ids(9);
    const a = await logitsOf(model, input), b = await logitsOf(merged, input);
    assert.ok(maxAbsDiff(a, b) < 1e-5, `max diff ${maxAbsDiff(a, b)}`);
    // The merge must matter: the base weights alone give other logits.
    const base = new GPTModel(TINY, { seed: 7 });
    assert.ok(maxAbsDiff(await logitsOf(base, input), b) > 1e-3);
    base.dispose();
    input.dispose();
    model.dispose();
    merged.dispose();
  }
});

Deno.test("mergeLora() keeps a classification head", async () => {
  const model = new GPTModel(TINY, { seed: 3 });
  replaceHeadWithClassifier(model, 2);
  freezeAll(model);
  replaceLinearWithLora(model, { rank: 2, alpha: 2 });
  for (const l of loraLayers(model).values()) {
    l.lora.B.assign(tf.randomNormal(l.lora.B.shape, 0, 0.1, "float32", 5));
  }
  const merged = mergeLora(model);
  const input = ids(4);
  const a = await logitsOf(model, input), b = await logitsOf(merged, input);
  assert.equal(a.length, 2 * 12 * 2);
  assert.ok(maxAbsDiff(a, b) < 1e-5, `max diff ${maxAbsDiff(a, b)}`);
  input.dispose();
  model.dispose();
  merged.dispose();
});

Deno.test("a merged model saves with saveCheckpoint (HF layout) and loads back with the same logits", async () => {
  const model = await trainedLoraModel();
  const merged = mergeLora(model);
  await withTempDir(async (dir) => {
    await saveCheckpoint(dir, merged.config, await paramsToTensors(merged));
    const { tensors: hf } = await readSafetensors(join(dir, "model.safetensors"));
    assert.ok(hf.has("transformer.h.0.attn.c_attn.weight") || hf.has("h.0.attn.c_attn.weight"));
    assert.ok(![...hf.keys()].some((k) => k.includes("lora")));
    const { config, tensors } = await loadCheckpoint(dir);
    const loaded = new GPTModel(config);
    loadWeightsInto(loaded, tensors);
    const input = ids(11);
    assert.deepEqual(await logitsOf(loaded, input), await logitsOf(merged, input));
    assert.ok(maxAbsDiff(await logitsOf(loaded, input), await logitsOf(model, input)) < 1e-5);
    input.dispose();
    loaded.dispose();
  });
  model.dispose();
  merged.dispose();
});

Deno.test("saveAdapter() writes a PEFT-like adapter_config.json and only the A/B tensors; loadAdapter() onto a fresh base gives the same logits", async () => {
  const model = await trainedLoraModel({ rank: 4, alpha: 8 });
  await withTempDir(async (dir) => {
    await saveAdapter(dir, model, { baseModel: "tiny-test" });
    const c: AdapterConfig = JSON.parse(await Deno.readTextFile(join(dir, ADAPTER_CONFIG_FILE)));
    assert.equal(c.peft_type, "LORA");
    assert.equal(c.task_type, "CAUSAL_LM");
    assert.equal(c.r, 4);
    assert.equal(c.lora_alpha, 8);
    assert.equal(c.scaling_rule, "alpha/rank");
    assert.equal(c.scaling, 2);
    assert.equal(c.base_model_name_or_path, "tiny-test");
    assert.deepEqual(c.target_modules, [
      "att.W_query",
      "att.W_key",
      "att.W_value",
      "att.out_proj",
      "ff.layers.0",
      "ff.layers.2",
      "out_head",
    ]);
    const { tensors } = await readSafetensors(join(dir, ADAPTER_WEIGHTS_FILE));
    assert.equal(tensors.size, 26);
    assert.deepEqual(tensors.get("trf_blocks.0.ff.layers.0.lora.A")!.shape, [32, 4]);
    assert.deepEqual(tensors.get("trf_blocks.0.ff.layers.0.lora.B")!.shape, [4, 128]);
    assert.deepEqual((await Array.fromAsync(Deno.readDir(dir))).map((e) => e.name).sort(), [
      ADAPTER_CONFIG_FILE,
      ADAPTER_WEIGHTS_FILE,
    ]);

    const base = new GPTModel(TINY, { seed: 7 });
    await loadAdapter(dir, base);
    const input = ids(13);
    assert.deepEqual(await logitsOf(base, input), await logitsOf(model, input));
    assert.equal(countTrainable(base), countTrainable(model));
    input.dispose();
    base.dispose();
  });
  model.dispose();
});

Deno.test("saveAdapter() with some targets lists them as PEFT target_modules and loads back onto just those layers", async () => {
  const model = new GPTModel(TINY, { seed: 7 });
  freezeAll(model);
  replaceLinearWithLora(model, { rank: 2, alpha: 4, targets: ["W_query", "W_value"] });
  for (const l of loraLayers(model).values()) {
    l.lora.B.assign(tf.randomNormal(l.lora.B.shape, 0, 0.1, "float32", 5));
  }
  await withTempDir(async (dir) => {
    await saveAdapter(dir, model, { baseModel: "tiny-test" });
    const c: AdapterConfig = JSON.parse(await Deno.readTextFile(join(dir, ADAPTER_CONFIG_FILE)));
    assert.deepEqual(c.target_modules, ["att.W_query", "att.W_value"]);
    const base = new GPTModel(TINY, { seed: 7 });
    await loadAdapter(dir, base);
    assert.deepEqual([...loraLayers(base).keys()], [...loraLayers(model).keys()]);
    const input = ids(3);
    assert.deepEqual(await logitsOf(base, input), await logitsOf(model, input));
    input.dispose();
    base.dispose();
  });
  model.dispose();
});

Deno.test("loadAdapter() onto a mismatched base throws a UserError naming the mismatch", async () => {
  const model = await trainedLoraModel({ rank: 4, alpha: 8 });
  await withTempDir(async (dir) => {
    await saveAdapter(dir, model, { baseModel: "tiny-test" });
    const check = async (base: GPTModel, pattern: RegExp, opts = {}) => {
      const loraBefore = loraLayers(base).size;
      await assert.rejects(
        () => loadAdapter(dir, base, opts),
        (e) => e instanceof UserError && pattern.test(e.message),
      );
      assert.equal(loraLayers(base).size, loraBefore, "nothing applied on error");
      base.dispose();
    };
    // More layers, other widths.
    await check(new GPTModel({ ...TINY, nLayers: 3 }, { seed: 7 }), /nLayers 2 \(this model: 3\)/);
    await check(new GPTModel({ ...TINY, embDim: 64 }, { seed: 7 }), /embDim 32 \(this model: 64\)/);
    await check(new GPTModel({ ...TINY, qkvBias: false }, { seed: 7 }), /qkvBias true/);
    // Same shapes, other weights.
    await check(new GPTModel(TINY, { seed: 8 }), /other base weights/);
    // A classification head instead of the vocabulary head.
    const cls = new GPTModel(TINY, { seed: 7 });
    replaceHeadWithClassifier(cls, 2);
    await check(cls, /layer "out_head" is \[32, 97\] in the adapter but \[32, 2\]/, {
      checkBaseWeights: false,
    });
    // LoRA of another rank already applied.
    const ranked = new GPTModel(TINY, { seed: 7 });
    replaceLinearWithLora(ranked, { rank: 2, alpha: 8 });
    await check(ranked, /rank 4.*already has LoRA of rank 2/);
  });
  // A weights file whose A does not have the config's rank.
  await withTempDir(async (dir) => {
    await saveAdapter(dir, model, { baseModel: "tiny-test" });
    const path = join(dir, ADAPTER_WEIGHTS_FILE);
    const { tensors } = await readSafetensors(path);
    tensors.set("trf_blocks.0.att.W_query.lora.A", { shape: [32, 3], data: new Float32Array(96) });
    await writeSafetensors(path, tensors);
    const base = new GPTModel(TINY, { seed: 7 });
    await assert.rejects(() => loadAdapter(dir, base), /has shape \[32,3\], expected \[32,4\]/);
    assert.equal(loraLayers(base).size, 0, "nothing applied on error");
    base.dispose();
  });
  await assert.rejects(() => loadAdapter("/nonexistent-adapter", model), /missing adapter_config/);
  model.dispose();
});

Deno.test("saveAdapter() on a model without LoRA layers is a UserError", async () => {
  const model = new GPTModel(TINY);
  await assert.rejects(
    () => saveAdapter("/tmp/never-written", model, { baseModel: "x" }),
    UserError,
  );
  model.dispose();
});

Deno.test("replaceHeadWithClassifier() puts Linear(embDim, numClasses) with bias in place of out_head", () => {
  const model = new GPTModel(TINY);
  replaceHeadWithClassifier(model, 2);
  const p = model.namedParameters();
  assert.deepEqual(p.get("out_head.weight")!.shape, [32, 2]);
  assert.deepEqual(p.get("out_head.bias")!.shape, [2]);
  const input = ids(2);
  assert.deepEqual(model.forward(input).shape, [2, 12, 2]);
  assert.throws(() => replaceHeadWithClassifier(model, 0), UserError);
  input.dispose();
  model.dispose();
});
