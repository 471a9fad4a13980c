import assert from "node:assert/strict";
import { findLayerProblems, layerOf, layerProblems, MAX_LINES } from "../lib/tools/layers.ts";

Deno.test("layerProblems() refuses model/ importing train/ or cli/, naming the line", () => {
  const src = [
    'import { trainModel } from "../train/train.ts";',
    "const x = 1;",
    'const cli = await import("../cli/args.ts");',
  ].join("\n");
  const found = layerProblems("lib/model/gpt.ts", src);
  assert.deepEqual(found.map((p) => p.where), ["lib/model/gpt.ts:1", "lib/model/gpt.ts:3"]);
  assert.match(found[0].message, /lib\/model \(layer 2\) imports lib\/train \(layer 5\)/);
});

Deno.test("layerProblems() accepts imports within a layer and downwards, and skips comments", () => {
  const src = [
    'import { UserError } from "../util/errors.ts";',
    'import { Linear } from "./nn.ts";',
    'import * as tf from "@tensorflow/tfjs";',
    ' * import { finetuneModel } from "../train/finetune.ts";',
    '// import { main } from "../cli.ts";',
  ].join("\n");
  assert.deepEqual(layerProblems("lib/model/lora.ts", src), []);
  assert.deepEqual(layerProblems("lib/cli/generate.ts", 'import "../model/gpt.ts";'), []);
});

Deno.test(`layerProblems() refuses a lib file over ${MAX_LINES} lines`, () => {
  const long = "const a = 1;\n".repeat(MAX_LINES + 1);
  assert.match(layerProblems("lib/data/text.ts", long)[0].message, /lines \(at most 450\)/);
  assert.deepEqual(layerProblems("lib/data/text.ts", "const a = 1;\n".repeat(10)), []);
});

Deno.test("layerOf() is the folder (or top-level file) under lib/, null outside lib/", () => {
  assert.equal(layerOf("lib/model/gpt.ts"), "model");
  assert.equal(layerOf("lib/backend.ts"), "backend.ts");
  assert.equal(layerOf("tests/nn.test.ts"), null);
});

Deno.test("the library's imports all go from higher layers to lower ones", async () => {
  assert.deepEqual(await findLayerProblems("lib"), []);
});
