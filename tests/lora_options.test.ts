/** LoRA options of `--lora-targets`, `--lora-dropout` and `--use-rslora`, as adapter_config.json records them. */
import assert from "node:assert/strict";
import { join } from "node:path";
import * as tf from "@tensorflow/tfjs";
import { initBackend } from "../lib/backend.ts";
import { UserError } from "../lib/util/errors.ts";
import {
  ADAPTER_CONFIG_FILE,
  type AdapterConfig,
  loadAdapter,
  saveAdapter,
} from "../lib/io/adapter.ts";
import {
  linearLayers,
  loraLayers,
  loraScale,
  parseLoraTargets,
  replaceLinearWithLora,
  selectTargets,
} from "../lib/model/lora.ts";
import { GPTModel } from "../lib/model/gpt.ts";

await initBackend({ log: false });

const TINY = {
  vocabSize: 40,
  contextLength: 8,
  embDim: 16,
  nHeads: 2,
  nLayers: 2,
  dropRate: 0,
  qkvBias: false,
};
const names = [...linearLayers(new GPTModel(TINY, { seed: 1 })).keys()];

Deno.test("parseLoraTargets() reads all-linear, all-but-head, a /regex/ over whole names and a list", () => {
  assert.equal(selectTargets(names, parseLoraTargets("all-linear")).length, 13);
  assert.deepEqual(
    selectTargets(names, parseLoraTargets("all-but-head")),
    names.filter((n) => n !== "out_head"),
  );
  assert.deepEqual(
    selectTargets(names, parseLoraTargets("/trf_blocks\\.1\\.att\\.W_(query|value)/")),
    [
      "trf_blocks.1.att.W_query",
      "trf_blocks.1.att.W_value",
    ],
  );
  // A regex must match the whole name: "W_query" alone selects nothing.
  assert.throws(
    () => selectTargets(names, parseLoraTargets("/W_query/")),
    /select no linear layer/,
  );
  assert.deepEqual(selectTargets(names, parseLoraTargets("att.W_query, out_head")), [
    "trf_blocks.0.att.W_query",
    "trf_blocks.1.att.W_query",
    "out_head",
  ]);
  assert.throws(() => selectTargets(names, parseLoraTargets("att.W_nope")), UserError);
  assert.throws(() => parseLoraTargets("/(/"), UserError);
});

Deno.test("rsLoRA scales the update by alpha / sqrt(rank)", () => {
  assert.equal(loraScale(16, 16, "alpha/sqrt(rank)"), 4);
  assert.equal(loraScale(16, 16, "alpha/rank"), 1);
  assert.equal(loraScale(16, 16, "alpha"), 16);
});

Deno.test("adapter_config.json records targets, dropout and use_rslora, and loadAdapter() restores the rsLoRA factor", async () => {
  const model = new GPTModel(TINY, { seed: 2 });
  replaceLinearWithLora(model, {
    rank: 4,
    alpha: 8,
    scaling: "alpha/sqrt(rank)",
    dropout: 0.1,
    targets: parseLoraTargets("att.W_query,att.W_value"),
  });
  // Give B non-zero values so the adapter changes the output.
  for (const l of loraLayers(model).values()) l.lora.B.assign(tf.fill(l.lora.B.shape, 0.05));
  const dir = await Deno.makeTempDir();
  try {
    await saveAdapter(dir, model, { baseModel: "tiny" });
    const c: AdapterConfig = JSON.parse(await Deno.readTextFile(join(dir, ADAPTER_CONFIG_FILE)));
    assert.equal(c.use_rslora, true);
    assert.equal(c.scaling_rule, "alpha/sqrt(rank)");
    assert.equal(c.scaling, 4);
    assert.equal(c.lora_dropout, 0.1);
    assert.deepEqual(c.target_modules, ["att.W_query", "att.W_value"]);
    const base = new GPTModel(TINY, { seed: 2 });
    await loadAdapter(dir, base);
    const got = [...loraLayers(base).values()];
    assert.equal(got.length, 4);
    assert.ok(got.every((l) => l.lora.scale === 4 && l.lora.dropout === 0.1));
    const x = tf.tensor2d([[1, 2, 3]], [1, 3], "int32");
    model.eval();
    base.eval();
    const [a, b] = [model.forward(x), base.forward(x)];
    assert.deepEqual(await a.data(), await b.data());
    tf.dispose([x, a, b]);
    base.dispose();
  } finally {
    await Deno.remove(dir, { recursive: true });
    model.dispose();
  }
});
