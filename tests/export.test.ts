/** `llm export` and the files it writes: GGUF layout, HF folder, F16/BF16, Modelfile, bad input. */
import assert from "node:assert/strict";
import { join } from "node:path";
import * as tf from "@tensorflow/tfjs";
import { Template } from "@huggingface/jinja";
import { useStockCpu } from "../lib/backend.ts";
import { cli, withTempDir } from "./cli_helpers.ts";
import { chatTemplate, ollamaTemplate, templateOfChatTemplate } from "../lib/data/chat_template.ts";
import { formatInput, formatResponse, responsePrefix } from "../lib/data/instruction.ts";
import { exportModel } from "../lib/export.ts";
import { readGgufHeader } from "../lib/io/gguf.ts";
import { bf16ToF32, f16ToF32, f32ToBf16Bits, f32ToF16Bits } from "../lib/io/dtypes.ts";
import { readSafetensors } from "../lib/io/safetensors.ts";
import { TOKENIZER_FILES } from "../lib/io/tokenizer_files.ts";
import { loadCheckpoint, paramsToTensors, saveCheckpoint } from "../lib/io/weights.ts";
import type { GPTConfig } from "../lib/model/config.ts";
import { GPTModel } from "../lib/model/gpt.ts";
import { replaceLinearWithLora } from "../lib/model/lora.ts";
import { saveAdapter } from "../lib/io/adapter.ts";

await useStockCpu();

const CONFIG: GPTConfig = {
  vocabSize: 50257,
  contextLength: 32,
  embDim: 16,
  nHeads: 2,
  nLayers: 2,
  dropRate: 0,
  qkvBias: false,
};

/** A saved tiny checkpoint with GPT-2's vocabulary (tied head when asked). */
async function tinyCheckpoint(dir: string, { tied = false, qkvBias = false } = {}) {
  const model = new GPTModel({ ...CONFIG, qkvBias }, { seed: 3 });
  if (tied) {
    const p = model.namedParameters();
    tf.tidy(() => p.get("out_head.weight")!.assign(p.get("tok_emb.weight")!.transpose()));
  }
  await saveCheckpoint(dir, model.config, await paramsToTensors(model));
  return model;
}

Deno.test("f32ToF16Bits/f32ToBf16Bits round to the nearest value, ties to even", () => {
  const values = [0, -0, 1, -2.5, 65504, 65520, 1e-8, 6e-5, 5.96e-8, 2.98e-8, 3e38, Infinity];
  for (let i = 0; i < 2000; i++) {
    values.push((Math.random() - 0.5) * 10 ** (Math.random() * 12 - 6));
  }
  const f32 = (x: number) => Math.fround(x);
  for (const x of values) {
    for (const [bits, back] of [[f32ToF16Bits, f16ToF32], [f32ToBf16Bits, bf16ToF32]] as const) {
      const h = bits(x), v = back(new Uint16Array([h]))[0];
      if (!Number.isFinite(v)) continue; // overflow to infinity: nothing nearer exists
      // No neighbouring half value is nearer to x.
      for (const n of [h - 1, h + 1]) {
        const w = back(new Uint16Array([n & 0xffff]))[0];
        if (Number.isNaN(w)) continue;
        if ((w < 0) !== (v < 0) && v !== 0) continue;
        assert.ok(Math.abs(w - f32(x)) >= Math.abs(v - f32(x)), `${x}: ${v} vs neighbour ${w}`);
      }
    }
  }
  assert.equal(f32ToF16Bits(1), 0x3c00);
  assert.equal(f32ToF16Bits(65520), 0x7c00); // rounds up to infinity, like torch
  assert.equal(f32ToF16Bits(1 + 2 ** -11), 0x3c00); // a tie goes to the even mantissa
  assert.equal(f32ToF16Bits(1 + 3 * 2 ** -11), 0x3c02);
  assert.equal(f32ToF16Bits(2 ** -25), 0); // half of the smallest subnormal: ties to 0
  assert.equal(f32ToBf16Bits(1 + 2 ** -8), 0x3f80);
  assert.equal(f32ToBf16Bits(NaN) & 0x7fc0, 0x7fc0);
});

Deno.test("the chat templates render, in Hugging Face's Jinja, exactly the book's chapter-7 prompts", () => {
  const entry = { instruction: "Rewrite the sentence.", input: "", output: "Done it is." };
  for (const t of ["alpaca", "phi3"] as const) {
    const tpl = new Template(chatTemplate(t));
    const prompt = tpl.render({
      messages: [{ role: "user", content: entry.instruction }],
      add_generation_prompt: true,
      eos_token: "<|endoftext|>",
    });
    assert.equal(prompt, formatInput(entry, { template: t }) + responsePrefix({ template: t }));
    const full = tpl.render({
      messages: [{ role: "user", content: entry.instruction }, {
        role: "assistant",
        content: entry.output,
      }],
      add_generation_prompt: false,
      eos_token: "<|endoftext|>",
    });
    assert.equal(
      full,
      formatInput(entry, { template: t }) + formatResponse(entry, { template: t }) +
        "<|endoftext|>",
    );
    assert.equal(templateOfChatTemplate(chatTemplate(t)), t);
    // Ollama's Go template: the same text around {{ .Prompt }}.
    const go = ollamaTemplate(t).replace("{{ .Prompt }}", entry.instruction).replace(
      "{{ .Response }}",
      "",
    );
    assert.equal(go, prompt);
  }
});

Deno.test("saveCheckpoint writes GPT-2's tokenizer files: vocab.json sorted like transformers, merges.txt with #version: 0.2, generation eos 50256", async () => {
  await withTempDir(async (dir) => {
    await tinyCheckpoint(dir);
    const names = [...Deno.readDirSync(dir)].map((e) => e.name).sort();
    assert.deepEqual(names, ["config.json", "model.safetensors", ...TOKENIZER_FILES].sort());
    const vocabText = await Deno.readTextFile(join(dir, "vocab.json"));
    const vocab = JSON.parse(vocabText);
    assert.equal(Object.keys(vocab).length, 50257);
    assert.equal(vocab["<|endoftext|>"], 50256);
    assert.equal(vocab["Hello"], 15496);
    assert.ok(vocabText.startsWith('{\n  "!": 0,\n  "!!": 3228,'), vocabText.slice(0, 40));
    const merges = (await Deno.readTextFile(join(dir, "merges.txt"))).split("\n");
    assert.equal(merges[0], "#version: 0.2");
    assert.equal(merges[1], "Ġ t");
    assert.equal(merges.length, 50002); // header + 50,000 + the final newline
    const tok = JSON.parse(await Deno.readTextFile(join(dir, "tokenizer.json")));
    assert.equal(tok.model.type, "BPE");
    assert.equal(Object.keys(tok.model.vocab).length, 50257);
    assert.equal(tok.model.merges.length, 50000);
    const gen = JSON.parse(await Deno.readTextFile(join(dir, "generation_config.json")));
    assert.equal(gen.eos_token_id, 50256);
    const cfg = JSON.parse(await Deno.readTextFile(join(dir, "tokenizer_config.json")));
    assert.equal(cfg.chat_template, undefined); // a base model has no prompt format
    assert.equal(cfg.model_max_length, 32);
  });
});

Deno.test("export --format gguf: llama.cpp's gpt2 keys and tensor names, transposed Conv1D shapes, no output tensor for a tied head, zero qkv bias, a Modelfile", async () => {
  await withTempDir(async (dir) => {
    const model = await tinyCheckpoint(join(dir, "ckpt"), { tied: true });
    const r = await exportModel({
      weights: join(dir, "ckpt"),
      format: "gguf",
      out: join(dir, "out"),
      template: "alpaca",
    });
    assert.deepEqual(r.files, ["Modelfile", "model.gguf"]);
    assert.equal(r.tied, true);
    const bytes = await Deno.readFile(join(dir, "out", "model.gguf"));
    const info = readGgufHeader(bytes);
    const m = info.metadata;
    assert.equal(info.version, 3);
    assert.equal(m.get("general.architecture"), "gpt2");
    assert.equal(m.get("general.file_type"), 0);
    for (
      const [k, v] of [
        ["context_length", 32],
        ["embedding_length", 16],
        ["feed_forward_length", 64],
        ["block_count", 2],
        ["attention.head_count", 2],
      ] as const
    ) assert.equal(m.get(`gpt2.${k}`), v, k);
    assert.ok(Math.abs((m.get("gpt2.attention.layer_norm_epsilon") as number) - 1e-5) < 1e-12);
    assert.equal(m.get("tokenizer.ggml.model"), "gpt2");
    assert.equal(m.get("tokenizer.ggml.pre"), "gpt-2");
    assert.equal((m.get("tokenizer.ggml.tokens") as string[]).length, 50257);
    assert.equal((m.get("tokenizer.ggml.merges") as string[])[0], "Ġ t");
    assert.equal((m.get("tokenizer.ggml.token_type") as number[])[50256], 3);
    assert.equal(m.get("tokenizer.ggml.eos_token_id"), 50256);
    assert.equal(m.get("tokenizer.ggml.bos_token_id"), 50256);
    assert.equal(m.get("tokenizer.chat_template"), chatTemplate("alpaca"));
    const dims = new Map(info.tensors.map((t) => [t.name, t.dims]));
    assert.deepEqual(dims.get("token_embd.weight"), [16, 50257]);
    assert.deepEqual(dims.get("position_embd.weight"), [16, 32]);
    assert.deepEqual(dims.get("blk.1.attn_qkv.weight"), [16, 48]);
    assert.deepEqual(dims.get("blk.1.attn_qkv.bias"), [48]);
    assert.deepEqual(dims.get("blk.0.ffn_up.weight"), [16, 64]);
    assert.deepEqual(dims.get("blk.0.ffn_down.weight"), [64, 16]);
    assert.deepEqual(dims.get("output_norm.bias"), [16]);
    assert.equal(dims.has("output.weight"), false);
    assert.equal(info.tensors.length, 2 + 2 * 12 + 2);
    // ffn_up is stored [out, in]: its row j is column j of our [in, out] weight.
    const up = info.tensors.find((t) => t.name === "blk.0.ffn_up.weight")!;
    const at = info.dataStart + up.offset;
    const stored = new Float32Array(bytes.slice(at, at + 64 * 16 * 4).buffer);
    const w = (await model.namedParameters().get("trf_blocks.0.ff.layers.0.weight")!
      .data()) as Float32Array;
    for (const [o, i] of [[0, 0], [5, 3], [63, 15]]) {
      assert.equal(stored[o * 16 + i], w[i * 64 + o]);
    }
    const qkvB = info.tensors.find((t) => t.name === "blk.0.attn_qkv.bias")!;
    const b = new Float32Array(bytes.slice(info.dataStart + qkvB.offset).buffer, 0, 48);
    assert.ok(b.every((x) => x === 0));
    const modelfile = await Deno.readTextFile(join(dir, "out", "Modelfile"));
    assert.match(modelfile, /^FROM \.\/model\.gguf$/m);
    assert.match(modelfile, /^PARAMETER stop "<\|endoftext\|>"$/m);
    assert.match(modelfile, /^PARAMETER temperature 0$/m);
    assert.ok(modelfile.includes(`TEMPLATE """${ollamaTemplate("alpaca")}"""`));
    model.dispose();
  });
});

Deno.test("export --format gguf --dtype f16 is about half the F32 size; 2-D tensors F16, norms and biases F32; the untied head becomes output.weight", async () => {
  await withTempDir(async (dir) => {
    (await tinyCheckpoint(join(dir, "ckpt"), { qkvBias: true })).dispose();
    const a = await exportModel({
      weights: join(dir, "ckpt"),
      format: "gguf",
      out: join(dir, "a"),
    });
    await exportModel({
      weights: join(dir, "ckpt"),
      format: "gguf",
      type: "f16",
      out: join(dir, "b"),
    });
    assert.equal(a.tied, false);
    // The tensor data (after the header, which holds the 50,257-token vocabulary) halves.
    const dataSize = async (d: string) => {
      const bytes = await Deno.readFile(join(d, "model.gguf"));
      return bytes.length - readGgufHeader(bytes).dataStart;
    };
    const ratio = (await dataSize(join(dir, "b"))) / (await dataSize(join(dir, "a")));
    assert.ok(ratio > 0.5 && ratio < 0.51, `ratio ${ratio}`);
    const info = readGgufHeader(await Deno.readFile(join(dir, "b", "model.gguf")));
    assert.equal(info.metadata.get("general.file_type"), 1);
    const type = new Map(info.tensors.map((t) => [t.name, t.type]));
    assert.equal(type.get("output.weight"), 1);
    assert.equal(type.get("blk.0.attn_qkv.weight"), 1);
    assert.equal(type.get("blk.0.attn_qkv.bias"), 0);
    assert.equal(type.get("blk.0.attn_norm.weight"), 0);
  });
});

Deno.test("export --format hf --dtype bf16/f16: half-size safetensors that load back as the rounded weights, tokenizer files with the adapter's chat template", async () => {
  await withTempDir(async (dir) => {
    const model = await tinyCheckpoint(join(dir, "ckpt"));
    replaceLinearWithLora(model, { rank: 2, alpha: 4, seed: 1 });
    for (const [name, v] of model.namedParameters()) {
      if (name.endsWith(".lora.B")) {
        tf.tidy(() => v.assign(tf.randomNormal(v.shape, 0, 0.1, "float32", 5)));
      }
    }
    await saveAdapter(join(dir, "adapter"), model, { baseModel: join(dir, "ckpt") });
    await Deno.writeTextFile(
      join(dir, "adapter", "tokenizer_config.json"),
      JSON.stringify({ chat_template: chatTemplate("phi3") }),
    );
    for (const type of ["f16", "bf16"] as const) {
      const out = join(dir, type);
      const r = await exportModel({
        weights: join(dir, "ckpt"),
        adapter: join(dir, "adapter"),
        format: "hf",
        type,
        out,
      });
      assert.equal(r.template, "phi3");
      const header = await readSafetensors(join(out, "model.safetensors"));
      assert.ok(header.tensors.size > 0);
      const raw = new Uint8Array(await Deno.readFile(join(out, "model.safetensors")));
      const len = Number(new DataView(raw.buffer).getBigUint64(0, true));
      const json = JSON.parse(new TextDecoder().decode(raw.subarray(8, 8 + len)));
      assert.equal(
        (json["wte.weight"] ?? json["transformer.wte.weight"]).dtype,
        type.toUpperCase(),
      );
      assert.equal(
        JSON.parse(await Deno.readTextFile(join(out, "config.json"))).torch_dtype,
        type === "f16" ? "float16" : "bfloat16",
      );
      const back = await loadCheckpoint(out);
      // The merged weight W + scale * A B, rounded once to the half type.
      const merged = await (await import("../lib/model/lora_merge.ts")).mergeLora(model);
      const want = (await merged.namedParameters().get("trf_blocks.1.att.W_value.weight")!
        .data()) as Float32Array;
      const got = back.tensors.get("trf_blocks.1.att.W_value.weight")!.data;
      const round = type === "f16" ? f32ToF16Bits : f32ToBf16Bits;
      const unround = type === "f16" ? f16ToF32 : bf16ToF32;
      want.forEach((x, i) => assert.equal(got[i], unround(new Uint16Array([round(x)]))[0], `${i}`));
      merged.dispose();
      const tc = JSON.parse(await Deno.readTextFile(join(out, "tokenizer_config.json")));
      assert.equal(tc.chat_template, chatTemplate("phi3"));
    }
    model.dispose();
  });
});

Deno.test("llm export: unknown --format / --dtype, an existing --out without --force, an adapter of another base: one error line, exit 1", async () => {
  await withTempDir(async (dir) => {
    const ckpt = join(dir, "ckpt");
    (await tinyCheckpoint(ckpt)).dispose();
    const other = new GPTModel(CONFIG, { seed: 99 });
    replaceLinearWithLora(other, { rank: 2, alpha: 4 });
    await saveAdapter(join(dir, "adapter"), other, { baseModel: "other" });
    other.dispose();
    await Deno.mkdir(join(dir, "exists"));
    const cases: [string[], RegExp][] = [
      [["--format", "onnx", "--out", join(dir, "x")], /--format must be one of gguf, hf/],
      [
        ["--format", "gguf", "--dtype", "q4", "--out", join(dir, "x")],
        /--dtype must be one of f32, f16, bf16/,
      ],
      [["--format", "gguf", "--out", join(dir, "exists")], /already exists \(pass --force/],
      [
        ["--format", "gguf", "--adapter", join(dir, "adapter"), "--out", join(dir, "y")],
        /trained on other base weights/,
      ],
    ];
    for (const [args, re] of cases) {
      const r = await cli("export", "--weights", ckpt, ...args);
      assert.equal(r.code, 1, args.join(" "));
      const lines = r.err.trim().split("\n");
      assert.equal(lines.length, 1, r.err);
      assert.match(lines[0], /^error: /);
      assert.match(lines[0], re);
    }
    assert.equal(await Deno.stat(join(dir, "y")).then(() => true, () => false), false);
    const ok = await cli(
      "export",
      "--weights",
      ckpt,
      "--format",
      "gguf",
      "--out",
      join(dir, "exists"),
      "--force",
    );
    assert.equal(ok.code, 0, ok.err);
  });
});
