import assert from "node:assert/strict";
import { join } from "node:path";
import * as tf from "@tensorflow/tfjs";
import type { GPTConfig } from "../lib/model/config.ts";
import { UserError } from "../lib/util/errors.ts";
import { GPTModel } from "../lib/model/gpt.ts";
import { readSafetensors, type TensorMap, writeSafetensors } from "../lib/io/safetensors.ts";
import { bookToHf, hfToBook, transpose2d } from "../lib/io/gpt2_layout.ts";
import { gptConfigFromHf, hfConfigFromGpt, readHfConfig } from "../lib/io/hf_config.ts";
import {
  loadCheckpoint,
  loadWeightsInto,
  paramsToTensors,
  saveCheckpoint,
} from "../lib/io/weights.ts";
import { useStockCpu } from "../lib/backend.ts";

await useStockCpu();

// A tiny GPT-2: vocab 11, context 5, emb 4, 2 heads, 2 layers.
const CFG: GPTConfig = {
  vocabSize: 11,
  contextLength: 5,
  embDim: 4,
  nHeads: 2,
  nLayers: 2,
  dropRate: 0.1,
  qkvBias: true,
};
const E = CFG.embDim, V = CFG.vocabSize;

let counter = 0;
/** A tensor with distinct values, so every mix-up of elements shows. */
function t(shape: number[]): { shape: number[]; data: Float32Array } {
  const n = shape.reduce((a, b) => a * b, 1);
  return { shape, data: Float32Array.from({ length: n }, () => ++counter / 1000) };
}

/** HF GPT-2 tensors in the plain layout of openai-community/gpt2 (no lm_head: tied). */
function hfPlain(cfg = CFG): TensorMap {
  const e = cfg.embDim, m = new Map();
  m.set("wte.weight", t([cfg.vocabSize, e]));
  m.set("wpe.weight", t([cfg.contextLength, e]));
  for (let i = 0; i < cfg.nLayers; i++) {
    const h = `h.${i}.`;
    m.set(h + "ln_1.weight", t([e]));
    m.set(h + "ln_1.bias", t([e]));
    m.set(h + "attn.c_attn.weight", t([e, 3 * e]));
    m.set(h + "attn.c_attn.bias", t([3 * e]));
    m.set(h + "attn.c_proj.weight", t([e, e]));
    m.set(h + "attn.c_proj.bias", t([e]));
    m.set(h + "ln_2.weight", t([e]));
    m.set(h + "ln_2.bias", t([e]));
    m.set(h + "mlp.c_fc.weight", t([e, 4 * e]));
    m.set(h + "mlp.c_fc.bias", t([4 * e]));
    m.set(h + "mlp.c_proj.weight", t([4 * e, e]));
    m.set(h + "mlp.c_proj.bias", t([e]));
  }
  m.set("ln_f.weight", t([e]));
  m.set("ln_f.bias", t([e]));
  return m;
}

/** The same tensors as transformers' GPT2LMHeadModel state_dict, with mask buffers and lm_head. */
function hfTransformers(
  plain: TensorMap,
  lmHead?: { shape: number[]; data: Float32Array },
): TensorMap {
  const m: TensorMap = new Map();
  for (const [k, v] of plain) m.set("transformer." + k, v);
  for (let i = 0; i < CFG.nLayers; i++) {
    m.set(`transformer.h.${i}.attn.bias`, t([1, 1, 5, 5]));
    m.set(`transformer.h.${i}.attn.masked_bias`, t([]));
  }
  if (lmHead) m.set("lm_head.weight", lmHead);
  return m;
}

function throwsUserError(fn: () => unknown, pattern: RegExp): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof UserError, `expected UserError, got ${err}`);
    assert.match(err.message, pattern);
    return true;
  });
}

/** Element [r, c] of a row-major matrix with `cols` columns. */
const at = (x: { data: Float32Array }, cols: number, r: number, c: number) => x.data[r * cols + c];

Deno.test("hfToBook() maps the plain HF layout to the book's 12 tensors per block plus 5", () => {
  const book = hfToBook(hfPlain(), CFG);
  assert.equal(book.size, 2 * 16 + 5); // 16 per block with qkv biases; tok, pos, final_norm x2, out_head
  assert.deepEqual(book.get("tok_emb.weight")!.shape, [V, E]);
  assert.deepEqual(book.get("out_head.weight")!.shape, [E, V]);
  assert.deepEqual(book.get("trf_blocks.1.ff.layers.0.weight")!.shape, [E, 4 * E]);
  assert.deepEqual(book.get("trf_blocks.1.norm2.shift")!.shape, [E]);
});

Deno.test("hfToBook() splits c_attn [E,3E] into W_query | W_key | W_value along the last axis", () => {
  const hf = hfPlain();
  const book = hfToBook(hf, CFG);
  const fused = hf.get("h.1.attn.c_attn.weight")!, bias = hf.get("h.1.attn.c_attn.bias")!;
  ["W_query", "W_key", "W_value"].forEach((name, k) => {
    const w = book.get(`trf_blocks.1.att.${name}.weight`)!;
    for (let r = 0; r < E; r++) {
      for (let c = 0; c < E; c++) assert.equal(at(w, E, r, c), at(fused, 3 * E, r, k * E + c));
    }
    assert.deepEqual(
      book.get(`trf_blocks.1.att.${name}.bias`)!.data,
      bias.data.slice(k * E, (k + 1) * E),
    );
  });
});

Deno.test("hfToBook() keeps Conv1D weights [in,out] as they are (no transpose)", () => {
  const hf = hfPlain();
  const book = hfToBook(hf, CFG);
  assert.equal(
    book.get("trf_blocks.0.ff.layers.2.weight")!.data,
    hf.get("h.0.mlp.c_proj.weight")!.data,
  );
  assert.equal(
    book.get("trf_blocks.0.att.out_proj.bias")!.data,
    hf.get("h.0.attn.c_proj.bias")!.data,
  );
  assert.equal(book.get("final_norm.scale")!.data, hf.get("ln_f.weight")!.data);
});

Deno.test("hfToBook() ties the head when there is no lm_head: out_head = wte^T", () => {
  const hf = hfPlain();
  const book = hfToBook(hf, CFG);
  const wte = hf.get("wte.weight")!, head = book.get("out_head.weight")!;
  for (let v = 0; v < V; v++) {
    for (let e = 0; e < E; e++) assert.equal(at(head, V, e, v), at(wte, E, v, e));
  }
});

Deno.test("hfToBook() reads transformers' layout: transformer. prefix, lm_head [V,E], mask buffers ignored", () => {
  const plain = hfPlain();
  const lmHead = t([V, E]);
  const fromPlain = hfToBook(plain, CFG);
  const book = hfToBook(hfTransformers(plain, lmHead), CFG);
  assert.deepEqual([...book.keys()], [...fromPlain.keys()]);
  for (const [k, v] of fromPlain) if (k !== "out_head.weight") assert.deepEqual(book.get(k), v);
  assert.deepEqual(book.get("out_head.weight")!.data, transpose2d(lmHead.data, V, E));
});

Deno.test("hfToBook() names a missing tensor", () => {
  const hf = hfPlain();
  hf.delete("h.1.mlp.c_fc.bias");
  throwsUserError(() => hfToBook(hf, CFG), /tensor "h\.1\.mlp\.c_fc\.bias" \[16\] is missing/);
});

Deno.test("hfToBook() names a tensor with the wrong shape, expected vs actual", () => {
  const hf = hfPlain();
  hf.set("wpe.weight", t([7, E]));
  throwsUserError(
    () => hfToBook(hf, CFG),
    /tensor "wpe\.weight" has shape \[7,4\], expected \[5,4\]/,
  );
});

Deno.test("hfToBook() rejects unknown tensors and hints at a layer-count mismatch", () => {
  const hf = hfPlain({ ...CFG, nLayers: 3 });
  throwsUserError(
    () => hfToBook(hf, CFG),
    /12 unexpected tensor\(s\) "h\.2\.ln_1\.weight".*n_layer is 2/,
  );
  const extra = hfPlain();
  extra.set("score.weight", t([2]));
  throwsUserError(() => hfToBook(extra, CFG), /1 unexpected tensor\(s\) "score\.weight"$/);
});

Deno.test("hfToBook() with qkv_bias false accepts a zero or absent c_attn.bias and rejects a nonzero one", () => {
  const noBias = { ...CFG, qkvBias: false };
  const hf = hfPlain();
  for (let i = 0; i < CFG.nLayers; i++) {
    hf.set(`h.${i}.attn.c_attn.bias`, { shape: [3 * E], data: new Float32Array(3 * E) });
  }
  const book = hfToBook(hf, noBias);
  assert.equal(book.has("trf_blocks.0.att.W_query.bias"), false);
  assert.equal(book.size, 2 * 13 + 5);
  hf.delete("h.0.attn.c_attn.bias");
  hf.delete("h.1.attn.c_attn.bias");
  assert.equal(hfToBook(hf, noBias).size, 2 * 13 + 5);
  throwsUserError(
    () => hfToBook(hfPlain(), noBias),
    /qkv_bias false but "h\.0\.attn\.c_attn\.bias" is not all zeros/,
  );
});

Deno.test("bookToHf() inverts hfToBook(): a tied model gives back the plain layout exactly", () => {
  const hf = hfPlain();
  const { tensors, hfConfig, tied } = bookToHf(hfToBook(hf, CFG), CFG);
  assert.equal(tied, true);
  assert.equal(hfConfig.tie_word_embeddings, true);
  assert.deepEqual([...tensors.keys()].sort(), [...hf.keys()].sort());
  for (const [k, v] of hf) assert.deepEqual(tensors.get(k), v, k);
});

Deno.test("bookToHf() writes an untied head as transformer.* + lm_head.weight [V,E], tie_word_embeddings false", () => {
  const lmHead = t([V, E]);
  const src = hfTransformers(hfPlain(), lmHead);
  const { tensors, hfConfig, tied } = bookToHf(hfToBook(src, CFG), CFG);
  assert.equal(tied, false);
  assert.equal(hfConfig.tie_word_embeddings, false);
  assert.deepEqual(tensors.get("lm_head.weight"), lmHead);
  assert.ok(tensors.has("transformer.wte.weight"));
  assert.equal([...tensors.keys()].filter((k) => !k.startsWith("transformer.")).length, 1);
  assert.equal(tensors.size, src.size - 2 * CFG.nLayers); // without the mask buffers
});

Deno.test("bookToHf() without qkv bias writes a zero c_attn.bias and qkv_bias false", () => {
  const noBias = { ...CFG, qkvBias: false };
  const hf = hfPlain();
  for (let i = 0; i < CFG.nLayers; i++) hf.delete(`h.${i}.attn.c_attn.bias`);
  const { tensors, hfConfig } = bookToHf(hfToBook(hf, noBias), noBias);
  assert.deepEqual(tensors.get("h.1.attn.c_attn.bias"), {
    shape: [3 * E],
    data: new Float32Array(3 * E),
  });
  assert.equal(hfConfig.qkv_bias, false);
  assert.equal(gptConfigFromHf(hfConfig).config.qkvBias, false);
});

Deno.test("bookToHf() names a missing or extra parameter", () => {
  const book = hfToBook(hfPlain(), CFG);
  book.delete("trf_blocks.1.att.W_key.weight");
  throwsUserError(
    () => bookToHf(book, CFG),
    /parameter "trf_blocks\.1\.att\.W_key\.weight" \[4,4\] is missing/,
  );
  const extra = hfToBook(hfPlain(), CFG);
  extra.set("trf_blocks.0.att.W_query.lora.A", t([4, 2]));
  throwsUserError(() => bookToHf(extra, CFG), /not in a GPT-2 checkpoint.*lora\.A/);
});

Deno.test("hfConfigFromGpt() and gptConfigFromHf() round-trip a GPTConfig", () => {
  const hf = hfConfigFromGpt(CFG, { tied: false });
  assert.equal(hf.model_type, "gpt2");
  assert.deepEqual(hf.architectures, ["GPT2LMHeadModel"]);
  assert.equal(hf.activation_function, "gelu_new");
  assert.equal(hf.layer_norm_epsilon, 1e-5);
  assert.deepEqual(gptConfigFromHf(hf), { config: CFG, tied: false });
});

Deno.test("gptConfigFromHf() reads OpenAI's gpt2 config.json (n_ctx, no qkv_bias field: true)", () => {
  // The fields of openai-community/gpt2's config.json that matter.
  const hf = {
    activation_function: "gelu_new",
    model_type: "gpt2",
    n_ctx: 1024,
    n_embd: 768,
    n_head: 12,
    n_layer: 12,
    resid_pdrop: 0.1,
    embd_pdrop: 0.1,
    attn_pdrop: 0.1,
    vocab_size: 50257,
  };
  assert.deepEqual(gptConfigFromHf(hf).config, {
    vocabSize: 50257,
    contextLength: 1024,
    embDim: 768,
    nHeads: 12,
    nLayers: 12,
    dropRate: 0.1,
    qkvBias: true,
  });
  assert.equal(gptConfigFromHf(hf).tied, true);
  throwsUserError(
    () => gptConfigFromHf({ ...hf, n_embd: undefined }, "c.json"),
    /^c\.json: n_embd must be a positive integer/,
  );
  throwsUserError(
    () => gptConfigFromHf({ ...hf, n_head: 7 }, "c.json"),
    /^c\.json: embDim 768 is not divisible by nHeads 7/,
  );
  throwsUserError(() => gptConfigFromHf({ ...hf, model_type: "llama" }), /only "gpt2"/);
});

Deno.test("saveCheckpoint() then loadCheckpoint() round-trips tensors, config and the head", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const book = hfToBook(hfPlain(), CFG);
    await saveCheckpoint(join(dir, "ckpt"), CFG, book);
    assert.deepEqual([...Deno.readDirSync(join(dir, "ckpt"))].map((e) => e.name).sort(), [
      "config.json",
      "model.safetensors",
    ]);
    assert.deepEqual(await readHfConfig(join(dir, "ckpt")), CFG);
    const file = await readSafetensors(join(dir, "ckpt", "model.safetensors"));
    assert.equal(file.metadata.format, "pt");
    assert.ok(file.tensors.has("wte.weight") && !file.tensors.has("lm_head.weight"));
    const back = await loadCheckpoint(join(dir, "ckpt"));
    assert.deepEqual(back.config, CFG);
    assert.equal(back.tied, true);
    for (const [k, v] of book) assert.deepEqual(back.tensors.get(k), v, k);

    // Untied: a changed out_head survives the round trip.
    book.get("out_head.weight")!.data[3] += 1;
    await saveCheckpoint(join(dir, "ckpt"), CFG, book);
    const untied = await loadCheckpoint(join(dir, "ckpt"));
    assert.equal(untied.tied, false);
    assert.deepEqual(untied.tensors.get("out_head.weight"), book.get("out_head.weight"));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("loadCheckpoint() reads a transformers-style file with mask buffers", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const plain = hfPlain();
    await writeSafetensors(join(dir, "model.safetensors"), hfTransformers(plain));
    await Deno.writeTextFile(join(dir, "config.json"), JSON.stringify(hfConfigFromGpt(CFG)));
    const { tensors } = await loadCheckpoint(dir);
    assert.deepEqual(tensors.get("tok_emb.weight"), plain.get("wte.weight"));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("loadCheckpoint() says what is missing and where the files belong", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await assert.rejects(loadCheckpoint(join(dir, "nope")), (err: unknown) => {
      assert.ok(err instanceof UserError);
      assert.match(
        err.message,
        /checkpoint folder .*nope does not exist \(a checkpoint folder holds config\.json and model\.safetensors\)/,
      );
      return true;
    });
    await Deno.writeTextFile(join(dir, "config.json"), JSON.stringify(hfConfigFromGpt(CFG)));
    await assert.rejects(
      loadCheckpoint(dir),
      /: missing model\.safetensors \(a checkpoint folder holds/,
    );
    // A truncated weights file names the file and the tensor.
    const bytes = (await Deno.makeTempFile()).toString();
    await writeSafetensors(bytes, hfPlain());
    const full = await Deno.readFile(bytes);
    await Deno.writeFile(join(dir, "model.safetensors"), full.slice(0, full.length - 100));
    await assert.rejects(
      loadCheckpoint(dir),
      /model\.safetensors: tensor "h\.1\.mlp\.c_proj\.weight" needs bytes \d+\.\.\d+ but the file has \d+ \(truncated download\?\)/,
    );
    await Deno.remove(bytes);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("loadWeightsInto() and paramsToTensors() move weights through namedParameters() only", async () => {
  const vars = new Map([
    ["a.weight", tf.variable(tf.zeros([2, 3]))],
    ["b.bias", tf.variable(tf.zeros([3]))],
  ]);
  const model = { namedParameters: () => vars };
  const before = tf.memory().numTensors;
  loadWeightsInto(
    model,
    new Map([
      ["a.weight", { shape: [2, 3], data: new Float32Array([1, 2, 3, 4, 5, 6]) }],
      ["b.bias", { shape: [3], data: new Float32Array([7, 8, 9]) }],
    ]),
  );
  assert.equal(tf.memory().numTensors, before, "no tensors leak");
  const out = await paramsToTensors(model);
  assert.deepEqual(out.get("a.weight"), {
    shape: [2, 3],
    data: new Float32Array([1, 2, 3, 4, 5, 6]),
  });
  assert.throws(
    () => loadWeightsInto(model, new Map([["a.weight", out.get("a.weight")!]])),
    /no tensor for parameter "b\.bias" \[3\]/,
  );
  assert.throws(
    () =>
      loadWeightsInto(
        model,
        new Map([...out, ["b.bias", { shape: [1, 3], data: new Float32Array(3) }]]),
      ),
    /"b\.bias" has shape \[1,3\], the model expects \[3\]/,
  );
  assert.throws(
    () => loadWeightsInto(model, new Map([...out, ["c", out.get("b.bias")!]])),
    /tensor\(s\) the model lacks: c/,
  );
  for (const v of vars.values()) v.dispose();
});

Deno.test("a GPTModel saved with saveCheckpoint() loads into a differently seeded GPTModel", async () => {
  const dir = await Deno.makeTempDir();
  const a = new GPTModel(CFG, { seed: 1 }), b = new GPTModel(CFG, { seed: 2 });
  try {
    await saveCheckpoint(dir, CFG, await paramsToTensors(a));
    const { config, tensors } = await loadCheckpoint(dir);
    assert.deepEqual(config, CFG);
    loadWeightsInto(b, tensors);
    const pa = await paramsToTensors(a), pb = await paramsToTensors(b);
    for (const [k, v] of pa) assert.deepEqual(pb.get(k), v, k);
  } finally {
    a.dispose();
    b.dispose();
    await Deno.remove(dir, { recursive: true });
  }
});
