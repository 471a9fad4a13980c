/**
 * The issue-14 flags end to end: `pretrain --init-from/--config/--grad-accum/--save-best/
 * --early-stop-patience/--log-every`, `finetune`'s LoRA options, `generate --top-p/
 * --repetition-penalty/--stop/--adapter`, `model-info --config`, and one clear line for bad input.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import * as tf from "@tensorflow/tfjs";
import { initBackend } from "../lib/backend.ts";
import { cli, withTempDir as withTmp } from "./cli_helpers.ts";
import type { GPTConfig } from "../lib/model/config.ts";
import { GPTModel } from "../lib/model/gpt.ts";
import { generate } from "../lib/model/generate.ts";
import { loraLayers, replaceLinearWithLora } from "../lib/model/lora.ts";
import { saveAdapter } from "../lib/io/adapter.ts";
import {
  loadCheckpoint,
  loadWeightsInto,
  paramsToTensors,
  saveCheckpoint,
} from "../lib/io/weights.ts";
import { createDataloaderV1, trainValSplit } from "../lib/data/text.ts";
import { calcLossLoader } from "../lib/train/loss.ts";
import { FIXTURES_DIR } from "./fixtures.ts";

await initBackend({ log: false });

const FIXTURE = new URL("gpt-tiny-qkv", FIXTURES_DIR).pathname;
const VERDICT = "data/the-verdict.txt";
/** GPT-2's vocabulary (the tokenizer's ids fit), everything else tiny. */
const SMALL: GPTConfig = {
  vocabSize: 50257,
  contextLength: 16,
  embDim: 8,
  nHeads: 2,
  nLayers: 1,
  dropRate: 0,
  qkvBias: true,
};

async function saveModel(dir: string, config: GPTConfig, seed: number): Promise<GPTModel> {
  const model = new GPTModel(config, { seed });
  await saveCheckpoint(dir, config, await paramsToTensors(model));
  return model;
}

/** The single error line of a failed run. */
function errorLine(r: { code: number; err: string }): string {
  assert.equal(r.code, 1, r.err);
  const lines = r.err.split("\n").filter((l) => l.startsWith("error: "));
  assert.equal(lines.length, 1, r.err);
  return lines[0];
}

Deno.test("bad input of the new flags is one clear error line and exit 1", async () => {
  await withTmp(async (tmp) => {
    const llama = join(tmp, "llama.json"), odd = join(tmp, "odd.json"), wide = join(tmp, "w.json");
    await Deno.writeTextFile(llama, JSON.stringify({ model_type: "llama", hidden_size: 8 }));
    await Deno.writeTextFile(
      odd,
      JSON.stringify({ n_embd: 770, n_layer: 1, n_head: 12, n_positions: 8, vocab_size: 50257 }),
    );
    await Deno.writeTextFile(
      wide,
      JSON.stringify({ n_embd: 64, n_layer: 2, n_head: 4, n_positions: 16, vocab_size: 97 }),
    );
    const gen = ["generate", "--weights", FIXTURE, "--prompt-ids", "1,2"];
    const cases: [string[], RegExp][] = [
      [
        ["pretrain", "--data", VERDICT, "--grad-accum", "0", "--dry-run"],
        /--grad-accum must be > 0/,
      ],
      [[...gen, "--top-p", "1.5"], /--top-p must be in \(0, 1\] \(got 1\.5\)/],
      [[...gen, "--top-p", "0"], /--top-p must be in \(0, 1\]/],
      [[...gen, "--repetition-penalty=0"], /--repetition-penalty must be > 0/],
      [
        ["pretrain", "--data", VERDICT, "--config", llama, "--dry-run"],
        /model_type is "llama", not a GPT-2/,
      ],
      [
        ["pretrain", "--data", VERDICT, "--config", odd, "--dry-run"],
        /embDim 770 is not divisible by nHeads 12/,
      ],
      [["model-info", "--config", odd], /not divisible/],
      [
        ["pretrain", "--data", VERDICT, "--init-from", FIXTURE, "--config", wide, "--dry-run"],
        /--init-from .* has another shape than --config .*embDim 32 \(--config: 64\)/,
      ],
      [
        ["finetune", "--data", "data/instruction-data.json", "--use-rslora", "--dry-run"],
        /--use-rslora need\(s\) --lora-rank/,
      ],
    ];
    for (const [args, re] of cases) assert.match(errorLine(await cli(...args)), re, args.join(" "));
  });
});

Deno.test("model-info --config takes the book's cfg dict: GPT_CONFIG_124M's 163,009,536 parameters", async () => {
  await withTmp(async (tmp) => {
    const file = join(tmp, "cfg.json");
    await Deno.writeTextFile(
      file,
      JSON.stringify({
        vocab_size: 50257,
        context_length: 1024,
        emb_dim: 768,
        n_heads: 12,
        n_layers: 12,
        drop_rate: 0.1,
        qkv_bias: false,
      }),
    );
    const r = await cli("model-info", "--config", file);
    assert.equal(r.code, 0, r.err);
    assert.equal(JSON.parse(r.out).totalParams, 163_009_536);
  });
});

Deno.test("generate --adapter gives the unmerged LoRA model's ids; --stop cuts the text; --top-p and --repetition-penalty run seeded", async () => {
  await withTmp(async (tmp) => {
    const { config, tensors } = await loadCheckpoint(FIXTURE);
    const model = new GPTModel(config);
    loadWeightsInto(model, tensors);
    replaceLinearWithLora(model, { rank: 2, alpha: 4, targets: "all-but-head" });
    for (const l of loraLayers(model).values()) {
      tf.tidy(() => l.lora.B.assign(tf.randomNormal(l.lora.B.shape, 0, 0.5, "float32", 9)));
    }
    await saveAdapter(join(tmp, "adapter"), model, { baseModel: FIXTURE });
    const want = await generate(model, [1, 2, 3], { maxNewTokens: 8 });
    const base = [
      "generate",
      "--weights",
      FIXTURE,
      "--prompt-ids",
      "1,2,3",
      "--max-new-tokens",
      "8",
    ];
    const r = await cli(...base, "--adapter", join(tmp, "adapter"), "--json");
    assert.equal(r.code, 0, r.err);
    assert.deepEqual(JSON.parse(r.out).ids, want);
    const plain = JSON.parse((await cli(...base, "--json")).out);
    assert.notDeepEqual(plain.ids, want, "the adapter changes the output");
    // --stop: generation ends at the first stop string; the text is cut before it.
    const stopChar = plain.text[2];
    const stopped = JSON.parse((await cli(...base, "--stop", stopChar, "--json")).out);
    assert.equal(stopped.text, plain.text.slice(0, plain.text.indexOf(stopChar)));
    assert.deepEqual(stopped.ids, plain.ids.slice(0, stopped.ids.length));
    assert.ok(stopped.ids.length < plain.ids.length);
    // --stop again: the earliest of the stop strings ends it; one that never occurs changes nothing.
    const later = plain.text[4];
    const two = JSON.parse(
      (await cli(...base, "--stop", later, "--stop", stopChar, "--stop", "\u2603\u2603", "--json"))
        .out,
    );
    const first = Math.min(plain.text.indexOf(later), plain.text.indexOf(stopChar));
    assert.equal(two.text, plain.text.slice(0, first));
    const sampled = [
      "--temperature",
      "1",
      "--top-p",
      "0.9",
      "--repetition-penalty",
      "1.3",
      "--json",
    ];
    const a = await cli(...base, ...sampled), b = await cli(...base, ...sampled);
    assert.equal(a.code, 0, a.err);
    assert.deepEqual(JSON.parse(a.out).ids, JSON.parse(b.out).ids);
    model.dispose();
  });
});

Deno.test("pretrain --init-from DIR --context-length 8 starts from the (cropped) weights and writes step rows, best/ and early-stop fields", async () => {
  await withTmp(async (tmp) => {
    const init = await saveModel(join(tmp, "init"), SMALL, 5);
    const out = join(tmp, "run");
    const args = [
      ...["pretrain", "--data", VERDICT, "--init-from", join(tmp, "init"), "--context-length", "8"],
      ...["--epochs", "1", "--batch-size", "8", "--grad-accum", "4", "--eval-freq", "1"],
      ...["--initial-lr", "1e-12", "--peak-lr", "1e-12", "--min-lr", "1e-12"],
      ...["--log-every", "1", "--save-best", "--early-stop-patience", "50", "--out", out],
    ];
    const r = await cli(...args);
    assert.equal(r.code, 0, r.err);
    assert.match(r.err, /initialised from/);
    const rows = (await Deno.readTextFile(join(out, "metrics.jsonl"))).trim().split("\n")
      .map((l) => JSON.parse(l));
    const evals = rows.filter((x) => x.kind === undefined);
    const steps = rows.filter((x) => x.kind === "step");
    assert.equal(steps.length, evals.length);
    assert.ok(steps.every((s) => s.gradNorm > 0 && s.tokensPerSec > 0 && s.lr === 1e-12));
    assert.ok(evals.every((e) => typeof e.bestValLoss === "number" && e.evalsSinceBest >= 0));
    // With an LR of 1e-12 the first validation loss is the init weights' own (context cropped to 8).
    const cropped = new GPTModel({ ...SMALL, contextLength: 8 });
    const p = init.namedParameters(), q = cropped.namedParameters();
    for (const [name, v] of q) {
      tf.tidy(() =>
        v.assign(name === "pos_emb.weight" ? p.get(name)!.slice([0, 0], [8, -1]) : p.get(name)!)
      );
    }
    const { valText } = trainValSplit(await Deno.readTextFile(VERDICT), 0.9);
    const val = createDataloaderV1(valText, {
      batchSize: 8,
      maxLength: 8,
      stride: 8,
      shuffle: false,
      dropLast: false,
    });
    const expected = await calcLossLoader(val, cropped.eval(), 1);
    assert.ok(Math.abs(evals[0].valLoss - expected) < 1e-4, `${evals[0].valLoss} vs ${expected}`);
    const best = JSON.parse(await Deno.readTextFile(join(out, "best", "config.json")));
    assert.equal(best.n_positions, 8);
    const state = JSON.parse(
      await Deno.readTextFile(join(out, "checkpoint", "trainer_state.json")),
    );
    assert.equal(JSON.stringify(state).includes('"gradAccum":4'), true);
    // Resuming with another --grad-accum is refused.
    const again = await cli(...args.map((x) => (x === "4" ? "2" : x)), "--resume", out);
    assert.match(errorLine(again), /gradAccum/);
    [init, cropped].forEach((m) => m.dispose());
  });
});

Deno.test("finetune --lora-targets/--lora-dropout/--use-rslora are recorded in adapter_config.json; targets matching nothing are refused", async () => {
  await withTmp(async (tmp) => {
    (await saveModel(join(tmp, "base"), { ...SMALL, contextLength: 128 }, 1)).dispose();
    const common = [
      "finetune",
      "--data",
      "data/instruction-data.json",
      "--weights",
      join(tmp, "base"),
    ];
    const run = [
      ...common,
      "--limit",
      "20",
      "--batch-size",
      "4",
      "--epochs",
      "1",
      "--eval-freq",
      "2",
    ];
    const bad = await cli(
      ...run,
      "--out",
      join(tmp, "bad"),
      "--lora-rank",
      "2",
      "--lora-targets",
      "att.W_nope",
    );
    assert.match(errorLine(bad), /LoRA target "att\.W_nope" matches no linear layer/);
    const out = join(tmp, "run");
    const r = await cli(
      ...run,
      ...["--out", out, "--max-new-tokens", "2", "--lora-rank", "4", "--lora-alpha", "8"],
      ...["--lora-targets", "/.*att\\.W_(query|value)/", "--lora-dropout", "0.1", "--use-rslora"],
      ...["--save-best", "--grad-accum", "2"],
    );
    assert.equal(r.code, 0, r.err);
    for (const dir of ["adapter", "best"]) {
      const c = JSON.parse(await Deno.readTextFile(join(out, dir, "adapter_config.json")));
      assert.equal(c.use_rslora, true, dir);
      assert.equal(c.scaling, 4, dir); // 8 / sqrt(4)
      assert.equal(c.lora_dropout, 0.1, dir);
      assert.deepEqual(c.target_modules, ["att.W_query", "att.W_value"], dir);
    }
  });
});

Deno.test("generate --weights ORG/NAME of a repo that is not a GPT-2 is one clear line, before any weights are fetched", async () => {
  const seen: string[] = [];
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (req) => {
    seen.push(new URL(req.url).pathname);
    return new Response(JSON.stringify({ model_type: "llama", hidden_size: 8 }));
  });
  const old = ["HF_ENDPOINT", "LLM_CACHE_DIR", "HF_HUB_CACHE"].map((k) => [k, Deno.env.get(k)]);
  await withTmp(async (tmp) => {
    try {
      Deno.env.set("HF_ENDPOINT", `http://127.0.0.1:${server.addr.port}`);
      Deno.env.set("LLM_CACHE_DIR", tmp);
      Deno.env.set("HF_HUB_CACHE", join(tmp, "none"));
      const r = await cli("generate", "--weights", "meta/llama", "--prompt", "hi");
      assert.match(errorLine(r), /model_type is "llama", not a GPT-2 .*GPT-2 models only/);
      assert.deepEqual(seen, ["/meta/llama/resolve/main/config.json"]);
    } finally {
      for (const [k, v] of old) v === undefined ? Deno.env.delete(k!) : Deno.env.set(k!, v);
      await server.shutdown();
    }
  });
});
