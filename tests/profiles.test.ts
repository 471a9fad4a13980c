import assert from "node:assert/strict";
import {
  APPENDIX_D,
  APPENDIX_E,
  APPENDIX_E_CLASSIFIER,
  appendixDLoaders,
  chapter07Plan,
  planBaseModel,
} from "../lib/profiles.ts";
import { formatProfileCosts, profileCosts, profileHelp } from "../lib/notebook_setup.ts";
import { parseProfile, PROFILE_NAMES } from "../lib/notebook/show.ts";
import { GPT_CONFIG_124M, PRESETS } from "../lib/model/config.ts";
import { countLoraParams } from "../lib/model/lora_counts.ts";
import { UserError } from "../lib/util/errors.ts";
import { useStockCpu } from "../lib/backend.ts";

const TRAINING_NOTEBOOKS = ["appendix-D", "appendix-E", "chapter-07"];
const VERDICT = new URL("../data/the-verdict.txt", import.meta.url);
await useStockCpu(); // the models built here are small; no tfjs banner

Deno.test("smoke trains 1-2 steps per run, fewer than quick, in every training notebook", async () => {
  for (const notebook of TRAINING_NOTEBOOKS) {
    const costs = await profileCosts(notebook);
    assert.ok(costs.smoke.length > 0, notebook);
    for (const run of costs.smoke) {
      assert.ok(run.steps >= 1 && run.steps <= 2, `${notebook} ${run.what}: ${run.steps} steps`);
    }
    const steps = (p: "quick" | "smoke") => costs[p].reduce((n, r) => n + r.steps, 0);
    assert.ok(steps("smoke") < steps("quick"), notebook);
  }
});

Deno.test("smoke's models have a shorter context than quick's (32 against 64 and 128)", async () => {
  assert.equal(APPENDIX_D.smoke.config.contextLength, 32);
  assert.ok(APPENDIX_D.smoke.config.contextLength < APPENDIX_D.quick.config.contextLength);
  const smokePlans = [APPENDIX_E.smoke, await chapter07Plan("smoke")];
  const quickPlans = [APPENDIX_E.quick, await chapter07Plan("quick")];
  for (const [i, plan] of smokePlans.entries()) {
    const smoke = await planBaseModel(plan);
    const quick = await planBaseModel(quickPlans[i]);
    assert.equal(smoke.config.contextLength, 32);
    assert.ok(smoke.config.contextLength < quick.config.contextLength);
    smoke.dispose();
    quick.dispose();
  }
});

Deno.test("smoke evaluates after every step, so each live loss chart gets two points", async () => {
  const text = await Deno.readTextFile(VERDICT);
  const { train, val } = appendixDLoaders(text, "smoke");
  assert.equal(train.length * APPENDIX_D.smoke.numEpochs, 2);
  assert.ok(val.length >= 1);
  for (const plan of [APPENDIX_D.smoke, APPENDIX_E.smoke, await chapter07Plan("smoke")]) {
    assert.equal(plan.evalFreq, 1);
  }
});

Deno.test("appendix D's full profile is the book's run: GPT-124M, 15 epochs, batch 2, 9 batches", async () => {
  const full = APPENDIX_D.full;
  assert.deepEqual(full.config, GPT_CONFIG_124M);
  assert.equal(full.numEpochs, 15);
  assert.equal(full.batchSize, 2);
  assert.equal(full.evalFreq, 5);
  assert.equal(full.textChars, undefined);
  const { train, val } = appendixDLoaders(await Deno.readTextFile(VERDICT), "full");
  assert.equal(train.length, 9); // the book's 9 training batches of 2 x 256 tokens
  assert.equal(val.length, 1);
});

Deno.test("quick keeps its settings: gpt-tiny with context 64 for 8 epochs, LoRA on 160 entries", () => {
  assert.deepEqual(APPENDIX_D.quick.config, { ...PRESETS["gpt-tiny"], contextLength: 64 });
  assert.equal(APPENDIX_D.quick.numEpochs, 8);
  assert.equal(APPENDIX_D.quick.evalFreq, 5);
  assert.equal(APPENDIX_D.quick.sampleTokens, undefined); // the book's 50 and 25
  assert.equal(APPENDIX_E.quick.trainEntries, 160);
  assert.equal(APPENDIX_E.quick.contextLength, undefined);
});

Deno.test("exercise 7.4's full runs finetune gpt2-medium for 2 epochs at lr 5e-5, batch 8", async () => {
  for (const plan of [APPENDIX_E.full, await chapter07Plan("full")]) {
    assert.equal(plan.weights, "gpt2-medium");
    assert.equal(plan.random, false);
    assert.equal(plan.numEpochs, 2);
    assert.equal(plan.lr, 5e-5);
    assert.equal(plan.batchSize, 8);
    assert.equal(plan.startContext, undefined); // the book's sample of the first val entry
  }
  assert.equal((await chapter07Plan("full")).maxNewTokens, 256);
});

Deno.test("appendix E's classifier is GPT-124M with 124,441,346 parameters (smoke: one block)", () => {
  const lora = { rank: 16, numClasses: 2 };
  for (const p of ["quick", "full"] as const) {
    const counts = countLoraParams(APPENDIX_E_CLASSIFIER[p], lora);
    assert.equal(counts.baseParams, 124_441_346);
    assert.equal(counts.loraParams, 2_666_528);
  }
  assert.equal(APPENDIX_E_CLASSIFIER.smoke.nLayers, 1);
  assert.equal(APPENDIX_E_CLASSIFIER.smoke.embDim, 768);
});

Deno.test("parseProfile() takes quick, full and smoke, and unset means quick", () => {
  assert.deepEqual([...PROFILE_NAMES], ["quick", "full", "smoke"]);
  for (const p of PROFILE_NAMES) assert.equal(parseProfile(p), p);
  assert.equal(parseProfile(undefined), "quick");
});

Deno.test("parseProfile() refuses an unknown profile with a message naming the three", () => {
  assert.throws(
    () => parseProfile("tiny"),
    (e) => e instanceof UserError && /quick, full or smoke \(got "tiny"\)/.test(e.message),
  );
});

Deno.test("the first cell's table has rows of all three profiles and marks the current one", async () => {
  const costs = await profileCosts("appendix-D");
  const table = formatProfileCosts(costs, "smoke", { small: 1e9, large: 2e9, how: "a test" });
  assert.match(table, /^smoke\* +gpt-tiny, context 32, batch 2, 1 epoch\(s\) +2 /m);
  assert.match(table, /^quick {2,}gpt-tiny, context 64/m);
  assert.match(table, /^full {3,}GPT-124M, context 256/m);
  assert.match(table, /measured here from a test/);
  assert.match(profileHelp("smoke"), /quick .*full .*smoke \(/);
});

Deno.test("deno task notebooks refuses LLM_PROFILE=tiny with one error line, before any set-up", async () => {
  const script = new URL("../lib/tools/notebooks.ts", import.meta.url).pathname;
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", script, "--timeout", "5", "appendix-A"],
    env: { LLM_PROFILE: "tiny" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const stderr = new TextDecoder().decode(out.stderr).trim();
  assert.equal(out.code, 1);
  assert.equal(stderr, 'error: LLM_PROFILE must be quick, full or smoke (got "tiny")');
  assert.equal(new TextDecoder().decode(out.stdout), ""); // nothing installed or run
});

Deno.test("deno task notebooks --help names the smoke profile", async () => {
  const script = new URL("../lib/tools/notebooks.ts", import.meta.url).pathname;
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", script, "--help"],
    stdout: "piped",
  }).output();
  assert.equal(out.code, 0);
  assert.match(new TextDecoder().decode(out.stdout), /LLM_PROFILE +quick \| full \| smoke/);
});
