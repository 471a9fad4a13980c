/** LoRA adapters in PEFT's format for GPT2LMHeadModel: layout, merge equality, loading back. */
import assert from "node:assert/strict";
import { join } from "node:path";
import * as tf from "@tensorflow/tfjs";
import { useStockCpu } from "../lib/backend.ts";
import { withTempDir } from "./cli_helpers.ts";
import { loadPeftAdapter, savePeftAdapter } from "../lib/io/peft_adapter.ts";
import { readSafetensors, type TensorMap, writeSafetensors } from "../lib/io/safetensors.ts";
import { bookToHf, hfToBook } from "../lib/io/gpt2_layout.ts";
import {
  loadCheckpoint,
  loadWeightsInto,
  paramsToTensors,
  saveCheckpoint,
} from "../lib/io/weights.ts";
import { exportModel } from "../lib/export.ts";
import type { GPTConfig } from "../lib/model/config.ts";
import { GPTModel } from "../lib/model/gpt.ts";
import { replaceLinearWithLora } from "../lib/model/lora.ts";
import { ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE, saveAdapter } from "../lib/io/adapter.ts";

await useStockCpu();

const CONFIG: GPTConfig = {
  vocabSize: 50,
  contextLength: 16,
  embDim: 8,
  nHeads: 2,
  nLayers: 2,
  dropRate: 0,
  qkvBias: true,
};
const LAYOUT = JSON.parse(
  await Deno.readTextFile(new URL("./fixtures/peft_gpt2_lora_layout.json", import.meta.url)),
);

/** A base model and the same model with trained-looking (random, non-zero B) LoRA of rank 2. */
function loraModel(targets: "all" | string[] = "all") {
  const model = new GPTModel(CONFIG, { seed: 11 });
  replaceLinearWithLora(model, { rank: 2, alpha: 4, targets, seed: 5 });
  let seed = 40;
  for (const [name, v] of model.namedParameters()) {
    if (name.endsWith(".lora.B")) {
      tf.tidy(() => v.assign(tf.randomNormal(v.shape, 0, 0.5, "float32", seed++)));
    }
  }
  return model;
}

function logits(model: GPTModel): Promise<Float32Array> {
  const ids = tf.tensor2d([[3, 14, 15, 9, 26, 5, 35, 8]], [1, 8], "int32");
  const out = model.forward(ids);
  ids.dispose();
  return out.data().then((d) => (out.dispose(), d as Float32Array));
}

/** A fresh base model: the frozen weights of loraModel() (the same seed). */
async function baseOf(): Promise<{ base: GPTModel; hf: TensorMap }> {
  const base = new GPTModel(CONFIG, { seed: 11 });
  const tensors = await paramsToTensors(base);
  return { base, hf: bookToHf(tensors, CONFIG).tensors };
}

/** `W + scaling * (B A)^T` (Conv1D, fan_in_fan_out) or `W + scaling * B A` (lm_head): PEFT's merge. */
function peftMerge(hf: TensorMap, adapter: TensorMap, config: Record<string, unknown>): TensorMap {
  const out: TensorMap = new Map([...hf].map(([k, t]) => [k, { ...t, data: t.data.slice() }]));
  for (const [key, a] of adapter) {
    if (!key.endsWith(".lora_A.weight")) continue;
    const b = adapter.get(key.replace("lora_A", "lora_B"))!;
    const module = key.slice("base_model.model.".length, -".lora_A.weight".length);
    const rank = a.shape[0];
    // PEFT picks a pattern entry whose key matches the module name as `(.*\.)?(key)$`.
    const pattern = (p: unknown) =>
      Object.entries(p as Record<string, number>).find(([k]) =>
        new RegExp(`^(.*\\.)?(${k})$`).test(module)
      )?.[1];
    const alpha = pattern(config.alpha_pattern) ?? (config.lora_alpha as number);
    const scaling = alpha / rank;
    const [outDim, inDim] = [b.shape[0], a.shape[1]];
    const w = out.get(`${module}.weight`)!;
    for (let o = 0; o < outDim; o++) {
      for (let i = 0; i < inDim; i++) {
        let s = 0;
        for (let r = 0; r < rank; r++) s += b.data[o * rank + r] * a.data[r * inDim + i];
        // Conv1D stores [in, out]; lm_head (nn.Linear) stores [out, in].
        const at = module === "lm_head" ? o * inDim + i : i * outDim + o;
        w.data[at] += scaling * s;
      }
    }
  }
  return out;
}

Deno.test("savePeftAdapter writes PEFT's keys and shapes for GPT2LMHeadModel (lora_A [r,in], lora_B [out,r], c_attn at rank 3r) and its config", async () => {
  await withTempDir(async (dir) => {
    const model = loraModel();
    await savePeftAdapter(dir, model, { baseModel: "openai-community/gpt2" });
    const { tensors, metadata } = await readSafetensors(join(dir, ADAPTER_WEIGHTS_FILE));
    assert.equal(metadata.format, "pt");
    const shapes = Object.fromEntries([...tensors].map(([k, t]) => [k, t.shape]));
    assert.deepEqual(shapes, LAYOUT.shapes);
    const config = JSON.parse(await Deno.readTextFile(join(dir, ADAPTER_CONFIG_FILE)));
    for (const [k, v] of Object.entries(LAYOUT.config)) assert.deepEqual(config[k], v, k);
    assert.equal(config.base_model_name_or_path, "openai-community/gpt2");
    model.dispose();
  });
});

Deno.test("base weights merged the way PEFT merges our PEFT adapter give the LoRA model's logits", async () => {
  await withTempDir(async (dir) => {
    const model = loraModel();
    await savePeftAdapter(dir, model, { baseModel: "gpt2" });
    const { tensors } = await readSafetensors(join(dir, ADAPTER_WEIGHTS_FILE));
    const config = JSON.parse(await Deno.readTextFile(join(dir, ADAPTER_CONFIG_FILE)));
    const { base, hf } = await baseOf();
    const merged = new GPTModel(CONFIG);
    loadWeightsInto(merged, hfToBook(peftMerge(hf, tensors, config), CONFIG));
    const [want, got] = [await logits(model), await logits(merged)];
    const worst = want.reduce((m, x, i) => Math.max(m, Math.abs(x - got[i])), 0);
    assert.ok(worst < 2e-5, `max |logit difference| ${worst}`);
    // Not trivially so: the adapter moves the logits.
    const plain = await logits(base);
    assert.ok(want.some((x, i) => Math.abs(x - plain[i]) > 0.1));
    for (const m of [model, base, merged]) m.dispose();
  });
});

Deno.test("a PEFT adapter loads back into the book's layers with identical logits (Q/K/V split from the block-diagonal c_attn), also for Q+V only", async () => {
  for (const targets of ["all", ["W_query", "W_value"]] as const) {
    await withTempDir(async (dir) => {
      const model = loraModel(targets === "all" ? "all" : [...targets]);
      await savePeftAdapter(dir, model, { baseModel: "gpt2" });
      const { base } = await baseOf();
      await loadPeftAdapter(dir, base);
      assert.deepEqual(await logits(base), await logits(model));
      const names = [...base.namedParameters().keys()].filter((n) => n.endsWith(".lora.A"));
      assert.equal(names.length, targets === "all" ? 13 : 4);
      model.dispose();
      base.dispose();
    });
  }
});

Deno.test("a PEFT adapter as Python writes one (dense c_attn B, rank_pattern) loads with the logits of PEFT's merge", async () => {
  await withTempDir(async (dir) => {
    // Random lora_A/lora_B in PEFT's layout (fixture shapes), c_attn's B not block-diagonal.
    const tensors: TensorMap = new Map();
    let seed = 1;
    for (const [key, shape] of Object.entries(LAYOUT.shapes as Record<string, number[]>)) {
      const t = tf.randomNormal(shape, 0, 0.3, "float32", seed++);
      tensors.set(key, { shape, data: (await t.data()) as Float32Array });
      t.dispose();
    }
    await writeSafetensors(join(dir, ADAPTER_WEIGHTS_FILE), tensors, { format: "pt" });
    await Deno.writeTextFile(join(dir, ADAPTER_CONFIG_FILE), JSON.stringify(LAYOUT.config));
    const model = new GPTModel(CONFIG, { seed: 11 });
    const hf = bookToHf(await paramsToTensors(model), CONFIG).tensors;
    await loadPeftAdapter(dir, model);
    const merged = new GPTModel(CONFIG);
    loadWeightsInto(merged, hfToBook(peftMerge(hf, tensors, LAYOUT.config), CONFIG));
    const [want, got] = [await logits(merged), await logits(model)];
    const worst = want.reduce((m, x, i) => Math.max(m, Math.abs(x - got[i])), 0);
    assert.ok(worst < 2e-5, `max |logit difference| ${worst}`);
    model.dispose();
    merged.dispose();
  });
});

Deno.test("loadPeftAdapter refuses a rank that disagrees with adapter_config.json and another base's shapes, in one line", async () => {
  await withTempDir(async (dir) => {
    const model = loraModel();
    await savePeftAdapter(dir, model, { baseModel: "gpt2" });
    const cfg = JSON.parse(await Deno.readTextFile(join(dir, ADAPTER_CONFIG_FILE)));
    await Deno.writeTextFile(join(dir, ADAPTER_CONFIG_FILE), JSON.stringify({ ...cfg, r: 4 }));
    await assert.rejects(
      loadPeftAdapter(dir, new GPTModel(CONFIG)),
      /has rank 2, adapter_config.json says 4/,
    );
    await Deno.writeTextFile(join(dir, ADAPTER_CONFIG_FILE), JSON.stringify(cfg));
    await assert.rejects(
      loadPeftAdapter(dir, new GPTModel({ ...CONFIG, embDim: 16 })),
      /which this base model lacks/,
    );
    model.dispose();
  });
});

Deno.test("export --format peft rewrites our adapter in PEFT's format; gguf/hf export takes a PEFT adapter and merges it like ours", async () => {
  await withTempDir(async (dir) => {
    const model = loraModel();
    const { base } = await baseOf();
    await saveCheckpoint(join(dir, "base"), CONFIG, await paramsToTensors(base));
    await saveAdapter(join(dir, "ours"), model, { baseModel: join(dir, "base") });
    const r = await exportModel({
      weights: join(dir, "base"),
      adapter: join(dir, "ours"),
      format: "peft",
      out: join(dir, "peft"),
    });
    assert.deepEqual(r.files, [ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE]);
    const { tensors } = await readSafetensors(join(dir, "peft", ADAPTER_WEIGHTS_FILE));
    assert.deepEqual(
      Object.fromEntries([...tensors].map(([k, t]) => [k, t.shape])),
      LAYOUT.shapes,
    );
    // Merged through either adapter format: the same weights.
    for (const [adapter, out] of [["ours", "hf-ours"], ["peft", "hf-peft"]]) {
      await exportModel({
        weights: join(dir, "base"),
        adapter: join(dir, adapter),
        format: "hf",
        out: join(dir, out),
      });
    }
    const a = await loadCheckpoint(join(dir, "hf-ours")),
      b = await loadCheckpoint(join(dir, "hf-peft"));
    for (const [name, t] of a.tensors) assert.deepEqual(b.tensors.get(name)!.data, t.data, name);
    model.dispose();
    base.dispose();
  });
});
