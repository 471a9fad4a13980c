/** `llm finetune` and lib/train/finetune.ts (chapter 7): dry-run numbers, a tiny run end to end, errors. */
import assert from "node:assert/strict";
import { join } from "node:path";
import { chatTemplate } from "../lib/data/chat_template.ts";
import { initBackend } from "../lib/backend.ts";
import { cli } from "./cli_helpers.ts";
import type { GPTConfig } from "../lib/model/config.ts";
import { cachedPretrained } from "../lib/io/resolve.ts";
import { prepareInstructionData, splitSizes } from "../lib/data/instruction_data.ts";
import { writeSafetensors } from "../lib/io/safetensors.ts";
import { GPTModel } from "../lib/model/gpt.ts";
import { paramsToTensors, saveCheckpoint } from "../lib/io/weights.ts";

await initBackend({ log: false });

const DATA = "data/instruction-data.json";

/** A tiny GPT-2-layout checkpoint (the real vocabulary, so the GPT-2 tokenizer fits). */
async function tinyCheckpoint(dir: string): Promise<GPTConfig> {
  const config: GPTConfig = {
    vocabSize: 50257,
    contextLength: 128,
    embDim: 16,
    nHeads: 2,
    nLayers: 1,
    dropRate: 0,
    qkvBias: true,
  };
  const model = new GPTModel(config, { seed: 1 });
  await saveCheckpoint(dir, config, await paramsToTensors(model));
  model.dispose();
  return config;
}

Deno.test("finetune --dry-run on instruction-data.json with batch 8: 935 / 55 / 110 entries, 116 batches per epoch", async () => {
  const { code, out } = await cli("finetune", "--data", DATA, "--batch-size", "8", "--dry-run");
  assert.equal(code, 0);
  const plan = JSON.parse(out);
  assert.equal(plan.train, 935);
  assert.equal(plan.val, 55);
  assert.equal(plan.test, 110);
  assert.equal(plan.batchesPerEpoch, 116);
  assert.equal(plan.totalSteps, 232);
  assert.equal(plan.maxLength, 91);
  assert.equal(plan.truncated, 0);
});

Deno.test("finetune --dry-run with --allowed-max-length below the longest entry warns with the count", async () => {
  const { code, out, err } = await cli(
    "finetune",
    "--data",
    DATA,
    "--allowed-max-length",
    "64",
    "--dry-run",
  );
  assert.equal(code, 0);
  const plan = JSON.parse(out);
  assert.ok(plan.truncated > 0);
  assert.match(err, new RegExp(`warning: ${plan.truncated} of 1100 entries are longer than`));
});

Deno.test("prepareInstructionData() batches train with shuffle + dropLast, val/test in order without dropLast", async () => {
  const entries = JSON.parse(await Deno.readTextFile(DATA)).slice(0, 40);
  const d = prepareInstructionData(entries, { batchSize: 8, log: () => {} });
  assert.deepEqual([d.train.length, d.test.length, d.val.length], [34, 4, 2]);
  assert.equal(d.trainLoader.length, 4); // floor(34 / 8)
  assert.equal(d.valLoader.length, 1);
  assert.equal(d.testLoader.length, 1);
  assert.ok(d.trainLoader.shuffle && d.trainLoader.dropLast);
  assert.ok(!d.valLoader.shuffle && !d.valLoader.dropLast);
});

Deno.test("splitSizes() gives the book's Alpaca split: 44,201 / 5,200 / 2,601", () => {
  assert.deepEqual(splitSizes(52002), { train: 44201, test: 5200, val: 2601 });
});

Deno.test("finetune on a tiny local checkpoint writes metrics.jsonl, loss.svg, checkpoint/ and test-responses.json", async () => {
  const tmp = await Deno.makeTempDir();
  try {
    await tinyCheckpoint(join(tmp, "base"));
    const out = join(tmp, "run");
    const { code, err } = await cli(
      "finetune",
      ...["--data", DATA, "--weights", join(tmp, "base"), "--out", out, "--limit", "30"],
      ...["--batch-size", "4", "--epochs", "1", "--eval-freq", "2", "--eval-iter", "1"],
      ...["--max-new-tokens", "3"],
    );
    assert.equal(code, 0, err);
    const metrics = (await Deno.readTextFile(join(out, "metrics.jsonl"))).trim().split("\n")
      .map((l) => JSON.parse(l));
    // 30 entries -> 25 train -> 6 batches of 4; evaluations at steps 0, 2, 4.
    assert.deepEqual(metrics.map((m) => m.step), [0, 2, 4]);
    assert.ok(metrics.every((m) => m.lr === 5e-5 && Number.isFinite(m.valLoss)));
    assert.match(await Deno.readTextFile(join(out, "loss.svg")), /^<svg/);
    for (const f of ["config.json", "model.safetensors", "trainer_state.json"]) {
      assert.ok((await Deno.stat(join(out, "checkpoint", f))).isFile, f);
    }
    const responses = JSON.parse(await Deno.readTextFile(join(out, "test-responses.json")));
    const test = JSON.parse(await Deno.readTextFile(DATA)).slice(25, 28);
    assert.equal(responses.length, 3);
    responses.forEach((r: Record<string, string>, i: number) => {
      assert.equal(r.instruction, test[i].instruction);
      assert.equal(typeof r.model_response, "string");
    });
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});

Deno.test("finetune --lora-rank prints the three counts of exercise 7.4 and saves adapter/ and merged/", async () => {
  const tmp = await Deno.makeTempDir();
  try {
    const c = await tinyCheckpoint(join(tmp, "base"));
    const out = join(tmp, "run");
    const { code, err } = await cli(
      "finetune",
      ...["--data", DATA, "--weights", join(tmp, "base"), "--out", out, "--limit", "20"],
      ...["--batch-size", "8", "--epochs", "1", "--eval-freq", "5", "--eval-iter", "1"],
      ...["--max-new-tokens", "2", "--lora-rank", "2", "--lora-alpha", "4", "--merge"],
    );
    assert.equal(code, 0, err);
    const e = c.embDim, v = c.vocabSize;
    // Embeddings and head, one block (attention with Q/K/V biases, feed-forward, 2 norms), norm.
    const base = 2 * v * e + 128 * e + (4 * e * e + 4 * e) + (8 * e * e + 5 * e) + 4 * e + 2 * e;
    // Per block: W_query/W_key/W_value/out_proj (e->e), ff 0 (e->4e), ff 2 (4e->e); plus out_head.
    const lora = 2 * (4 * 2 * e + 2 * 5 * e) + 2 * (e + v);
    const n = (x: number) => x.toLocaleString("en-US");
    assert.match(err, new RegExp(`Total trainable parameters before: ${n(base)}\n`));
    assert.match(err, /Total trainable parameters after: 0\n/);
    assert.match(err, new RegExp(`Total trainable LoRA parameters: ${n(lora)}`));
    for (const f of ["adapter/adapter_config.json", "merged/model.safetensors"]) {
      assert.ok((await Deno.stat(join(out, f))).isFile, f);
    }
    // PEFT's format beside ours, and the prompt format as a chat template (merged, checkpoint).
    const peft = JSON.parse(await Deno.readTextFile(join(out, "adapter-peft/adapter_config.json")));
    assert.equal(peft.peft_type, "LORA");
    assert.deepEqual(peft.rank_pattern, { c_attn: 6 });
    for (const d of ["merged", "checkpoint", "adapter"]) {
      const tc = JSON.parse(await Deno.readTextFile(join(out, d, "tokenizer_config.json")));
      assert.equal(tc.chat_template, chatTemplate("alpaca"), d);
    }
    assert.ok((await Deno.stat(join(out, "test-responses.json"))).isFile);
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});

Deno.test("finetune reports bad data as one line and exit code 1", async () => {
  const tmp = await Deno.makeTempDir();
  const file = join(tmp, "d.json");
  const run = async (text: string) => {
    await Deno.writeTextFile(file, text);
    const r = await cli("finetune", "--data", file, "--dry-run");
    assert.equal(r.code, 1);
    assert.equal(r.err.split("\n").length, 1, r.err);
    return r.err;
  };
  try {
    assert.match(await run('[{"instruction": "a", "output": "b"},'), /invalid JSON at line 1/);
    assert.match(
      await run('[{"instruction": "a", "output": "b"}, {"instruction": "c"}]'),
      /entry 1: "output" is missing/,
    );
    assert.match(await run("[]"), /the dataset has no entries/);
    assert.match(
      await run('[{"instruction": "a", "output": "b"}]'),
      /training split has 0 entries .* fewer than one batch of 8/,
    );
    const missing = await cli("finetune", "--data", join(tmp, "nope.json"), "--dry-run");
    assert.match(missing.err, /^error: .*nope\.json: file not found$/);
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});

Deno.test("finetune with an unknown --weights name lists the valid names", async () => {
  const r = await cli("finetune", "--data", DATA, "--weights", "./gpt3", "--out", "x");
  assert.equal(r.code, 1);
  assert.match(r.err, /^error: --weights "\.\/gpt3" .* valid names: gpt2-small, gpt2-medium/);
  // A bare name is tried on the Hub (here one that cannot be reached) before it is refused.
  const env = { HF_ENDPOINT: "http://127.0.0.1:9", HF_HUB_CACHE: "/nonexistent/hf-cache" };
  const saved = Object.keys(env).map((k) => Deno.env.get(k));
  Object.entries(env).forEach(([k, v]) => Deno.env.set(k, v));
  try {
    const bare = await cli("finetune", "--data", DATA, "--weights", "gpt3", "--out", "x");
    assert.equal(bare.code, 1);
    assert.match(
      bare.err,
      /^error: --weights "gpt3" is not a folder, a known model \(gpt2-small, gpt2-medium.*\) nor a GPT-2 reachable on the Hugging Face Hub/m,
    );
  } finally {
    Object.keys(env).forEach((k, i) =>
      saved[i] === undefined ? Deno.env.delete(k) : Deno.env.set(k, saved[i]!)
    );
  }
});

Deno.test("finetune with a truncated file in the cache and no network fails with one clear line", async () => {
  const tmp = await Deno.makeTempDir();
  const env = ["LLM_CACHE_DIR", "HF_ENDPOINT", "ALPACA_URL", "HF_HUB_CACHE"];
  const saved = env.map((k) => Deno.env.get(k));
  try {
    await Deno.mkdir(join(tmp, "gpt2-small"));
    await Deno.writeTextFile(
      join(tmp, "gpt2-small", "config.json"),
      JSON.stringify({ model_type: "gpt2", n_embd: 768 }),
    );
    await Deno.writeFile(join(tmp, "gpt2-small", "model.safetensors"), new Uint8Array(4));
    await Deno.writeTextFile(join(tmp, "alpaca_data.json"), '[{"instruction": "a", "outp');
    Deno.env.set("LLM_CACHE_DIR", tmp);
    Deno.env.set("HF_HUB_CACHE", join(tmp, "no-hf-cache")); // not a real ~/.cache/huggingface
    Deno.env.set("HF_ENDPOINT", "http://127.0.0.1:9");
    Deno.env.set("ALPACA_URL", "http://127.0.0.1:9/alpaca_data.json");
    const out = join(tmp, "run");
    const weights = await cli("finetune", "--data", DATA, "--weights", "gpt2-small", "--out", out);
    assert.equal(weights.code, 1);
    const line = weights.err.split("\n").find((l) => l.startsWith("error: "));
    assert.match(line!, /cannot reach 127\.0\.0\.1:9 .*gpt2-small\/model\.safetensors.*put/);
    const alpaca = await cli("finetune", "--data", "alpaca", "--dry-run");
    assert.equal(alpaca.code, 1);
    assert.match(alpaca.err, /CC BY-NC 4\.0/);
    assert.match(alpaca.err, /error: cannot reach 127\.0\.0\.1:9 to download alpaca_data\.json/);
  } finally {
    env.forEach((k, i) => saved[i] === undefined ? Deno.env.delete(k) : Deno.env.set(k, saved[i]!));
    await Deno.remove(tmp, { recursive: true });
  }
});

Deno.test("cachedPretrained() finds a complete cached model and never a missing or truncated one", async () => {
  const tmp = await Deno.makeTempDir();
  try {
    assert.equal(await cachedPretrained("gpt2-small", { cacheDir: tmp }), null);
    const dir = join(tmp, "gpt2-small");
    await Deno.mkdir(dir);
    await Deno.writeTextFile(join(dir, "config.json"), "{}");
    await writeSafetensors(
      join(dir, "model.safetensors"),
      new Map([["w", { shape: [4], data: new Float32Array(4) }]]),
    );
    assert.equal(await cachedPretrained("gpt2-small", { cacheDir: tmp }), dir);
    await Deno.truncate(join(dir, "model.safetensors"), 20);
    assert.equal(await cachedPretrained("gpt2-small", { cacheDir: tmp }), null);
    await assert.rejects(
      () => cachedPretrained("gpt5", { cacheDir: tmp }),
      /valid names: gpt2-small/,
    );
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});
