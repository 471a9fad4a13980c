/**
 * Our GGUF export run by the real llama.cpp (node-llama-cpp 3.21.1, a test-only dependency that
 * tests/interop/install.sh installs; .ci/run installs it and sets LLM_REQUIRE_LLAMA_CPP=1, so
 * there a missing engine fails instead of skipping).
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import * as tf from "@tensorflow/tfjs";
import { useStockCpu } from "../lib/backend.ts";
import { encode } from "../lib/data/tokenizer.ts";
import type { GPTConfig } from "../lib/model/config.ts";
import { generate } from "../lib/model/generate.ts";
import { GPTModel } from "../lib/model/gpt.ts";
import { writeGpt2Gguf } from "../lib/io/gpt2_gguf.ts";
import { bf16ToF32, f16ToF32, type FloatType, toBf16, toF16 } from "../lib/io/dtypes.ts";
import { paramsToTensors } from "../lib/io/weights.ts";
import { exists } from "../lib/util/fs.ts";
import { withTempDir } from "./cli_helpers.ts";

await useStockCpu();

const INTEROP = new URL("./interop/", import.meta.url).pathname;
const installed = await exists(join(INTEROP, "node_modules/node-llama-cpp/package.json"));
const required = Deno.env.get("LLM_REQUIRE_LLAMA_CPP") === "1";
const ignore = !installed && !required;
if (ignore) console.warn("gguf_llama_cpp: node-llama-cpp not installed (tests/interop/install.sh)");

const TRICKY = [
  "Hello, world",
  "  two  spaces,   three   and a trailing one ",
  "lines\nand\n\nblank\n\n\nlines",
  "windows\r\nline\r\nends",
  "\ttabs\t\tand mixed \t \n whitespace",
  "日本語のテキスト、中文文本",
  "emoji 🤖👍🏽 and family 👨‍👩‍👧",
  "one<|endoftext|>two<|endoftext|>",
  "it's we'll they've I'M 123 4567 $5.99",
];
const STEPS = 24;
const PROMPT = encode("Every effort moves you toward");

interface Case {
  label: string;
  qkvBias: boolean;
  tied: boolean;
  type: FloatType;
}

/** A tiny GPT-2 (GPT-2's vocabulary, 2 layers of width 32) with a tied or untied head. */
function tinyModel({ qkvBias, tied }: Case): GPTModel {
  const config: GPTConfig = {
    vocabSize: 50257,
    contextLength: 64,
    embDim: 32,
    nHeads: 2,
    nLayers: 2,
    dropRate: 0,
    qkvBias,
  };
  const model = new GPTModel(config, { seed: 7 });
  if (tied) {
    const p = model.namedParameters();
    tf.tidy(() => p.get("tok_emb.weight")!.assign(p.get("out_head.weight")!.transpose()));
  }
  return model;
}

/** Our probability of each generated token (one forward pass over prompt + ids). */
async function ourProbs(model: GPTModel, prompt: number[], ids: number[]): Promise<number[]> {
  const all = [...prompt, ...ids];
  const probs = tf.tidy(() =>
    tf.softmax(model.forward(tf.tensor2d(all, [1, all.length], "int32")).squeeze([0]))
  );
  const p = (await probs.data()) as Float32Array;
  probs.dispose();
  const v = model.config.vocabSize;
  return ids.map((id, k) => p[(prompt.length - 1 + k) * v + id]);
}

/** Runs the jobs in llama.cpp (tests/interop/llama_cpp_worker.ts). */
async function runLlamaCpp(jobs: unknown[]) {
  const dir = await Deno.makeTempDir();
  try {
    const request = join(dir, "request.json");
    await Deno.writeTextFile(request, JSON.stringify(jobs));
    const p = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", join(INTEROP, "llama_cpp_worker.ts"), request],
      signal: AbortSignal.timeout(120_000),
    }).output();
    const err = new TextDecoder().decode(p.stderr);
    assert.equal(p.code, 0, `llama.cpp worker failed: ${err.slice(-2000)}`);
    return JSON.parse(new TextDecoder().decode(p.stdout)) as {
      ids: number[];
      probs: number[];
      tokenized: number[][];
    }[];
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

const CASES: Case[] = [
  { label: "untied head, qkv bias", qkvBias: true, tied: false, type: "f32" },
  { label: "tied head, qkv bias", qkvBias: true, tied: true, type: "f32" },
  { label: "untied head, no qkv bias", qkvBias: false, tied: false, type: "f32" },
];

Deno.test({
  name:
    "llama.cpp runs our F32 GGUF exports (tied/untied head, with/without qkv bias): the same 24 greedy ids, probabilities within 1e-3, and its tokenizer gives our ids on tricky text",
  ignore,
  async fn() {
    assert.ok(installed, "node-llama-cpp is not installed: run tests/interop/install.sh");
    await withTempDir(async (dir) => {
      const ours: { ids: number[]; probs: number[] }[] = [];
      const jobs = [];
      for (const [i, c] of CASES.entries()) {
        const model = tinyModel(c);
        const gguf = join(dir, `model${i}.gguf`);
        const { tied } = await writeGpt2Gguf(gguf, model.config, await paramsToTensors(model), {
          type: c.type,
        });
        assert.equal(tied, c.tied, c.label);
        const ids = await generate(model, PROMPT, { maxNewTokens: STEPS });
        ours.push({ ids, probs: await ourProbs(model, PROMPT, ids) });
        jobs.push({ gguf, contextSize: 64, prompt: PROMPT, maxTokens: STEPS, tokenize: TRICKY });
        model.dispose();
      }
      assert.ok(PROMPT.length + STEPS <= 64);
      const theirs = await runLlamaCpp(jobs);
      for (const [i, c] of CASES.entries()) {
        assert.deepEqual(theirs[i].ids, ours[i].ids, `greedy ids, ${c.label}`);
        assert.ok(new Set(ours[i].ids).size > 3, `${c.label}: a degenerate test model`);
        theirs[i].probs.forEach((p, k) => {
          const q = ours[i].probs[k];
          assert.ok(Math.abs(p - q) <= 1e-3 * q + 1e-7, `${c.label} step ${k}: ${p} vs ${q}`);
        });
        TRICKY.forEach((text, k) =>
          assert.deepEqual(theirs[i].tokenized[k], encode(text), JSON.stringify(text))
        );
      }
    });
  },
});

/** Rounds the model's 2-D weights to `type` in place: what an F16/BF16 GGUF stores of them. */
async function roundWeights(model: GPTModel, type: "f16" | "bf16"): Promise<void> {
  const [to, from] = type === "f16" ? [toF16, f16ToF32] : [toBf16, bf16ToF32];
  for (const v of model.namedParameters().values()) {
    if (v.shape.length !== 2) continue;
    const rounded = from(to((await v.data()) as Float32Array));
    tf.tidy(() => v.assign(tf.tensor(rounded, v.shape)));
  }
}

Deno.test({
  name:
    "llama.cpp runs our F16 and BF16 GGUF exports: the 24 greedy ids of our model with the same rounded weights",
  ignore,
  async fn() {
    assert.ok(installed, "node-llama-cpp is not installed: run tests/interop/install.sh");
    await withTempDir(async (dir) => {
      const ours: number[][] = [], jobs = [];
      for (const type of ["f16", "bf16"] as const) {
        const model = tinyModel({ label: type, qkvBias: true, tied: false, type });
        await roundWeights(model, type);
        const gguf = join(dir, `${type}.gguf`);
        await writeGpt2Gguf(gguf, model.config, await paramsToTensors(model), { type });
        ours.push(await generate(model, PROMPT, { maxNewTokens: STEPS }));
        jobs.push({ gguf, contextSize: 64, prompt: PROMPT, maxTokens: STEPS, tokenize: [] });
        model.dispose();
      }
      const theirs = await runLlamaCpp(jobs);
      assert.deepEqual(theirs[0].ids, ours[0], "greedy ids, F16");
      assert.deepEqual(theirs[1].ids, ours[1], "greedy ids, BF16");
    });
  },
});
