/** `deno task llm ...` end to end: the book's numbers, greedy ids against PyTorch, and bad input. */
import { deepStrictEqual as assertEquals, match, ok as assert } from "node:assert/strict";
import { FIXTURES_DIR, loadModelExpected } from "./fixtures.ts";

const CLI = new URL("../lib/cli.ts", import.meta.url).pathname;

async function llm(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", CLI, ...args],
    env: { LLM_BACKEND: Deno.env.get("LLM_BACKEND") ?? "" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

Deno.test("model-info: GPT-124M has 163,009,536 parameters, 124,412,160 tied, 621.83 MB", async () => {
  const r = await llm("model-info", "--model", "gpt2-small");
  assertEquals(r.code, 0);
  const info = JSON.parse(r.stdout);
  assertEquals([info.totalParams, info.tiedParams, info.sizeMB], [
    163_009_536,
    124_412_160,
    621.83,
  ]);
});

Deno.test("model-info: gpt2-medium has 406,212,608 parameters, 354,749,440 tied", async () => {
  const info = JSON.parse((await llm("model-info", "--model", "gpt2-medium")).stdout);
  assertEquals([info.totalParams, info.tiedParams], [406_212_608, 354_749_440]);
});

Deno.test("model-info: an unknown model name exits 1 with one line listing the valid names", async () => {
  const r = await llm("model-info", "--model", "gpt5");
  assertEquals(r.code, 1);
  match(r.stderr.trim(), /^error: unknown model "gpt5"; valid names: gpt2-small, gpt2-medium/);
  assertEquals(r.stderr.trim().split("\n").length, 1);
});

Deno.test("pretrain --dry-run: The Verdict gives 9 batches, 1 val batch, 135 steps, 27 warmup, 4,608 / 512 tokens", async () => {
  const r = await llm(
    "pretrain",
    "--data",
    "data/the-verdict.txt",
    "--model",
    "gpt-124m-book",
    "--dry-run",
  );
  assertEquals(r.code, 0, r.stderr);
  const plan = JSON.parse(r.stdout);
  assertEquals(
    [
      plan.batchesPerEpoch,
      plan.valBatches,
      plan.totalSteps,
      plan.warmupSteps,
      plan.trainTokens,
      plan.valTokens,
    ],
    [9, 1, 135, 27, 4608, 512],
  );
  assertEquals(plan.lrs.length, 135);
  assertEquals(plan.lrs[0], 1e-5);
  assertEquals(plan.lrs[27], 1e-3);
});

Deno.test("pretrain: bad input is one clear line and a non-zero exit", async () => {
  const tmp = await Deno.makeTempDir();
  await Deno.writeTextFile(`${tmp}/short.txt`, "Too short.");
  const cases: [string[], RegExp][] = [
    [["--data", `${tmp}/missing.txt`], /cannot read --data/],
    [["--data", `${tmp}/short.txt`], /too short/],
    [
      ["--data", "data/the-verdict.txt", "--warmup-fraction", "1.5"],
      /warmup-fraction must be in \[0, 1\]/,
    ],
    [["--data", "data/the-verdict.txt", "--epochs", "0"], /--epochs must be > 0/],
    [["--data", "data/the-verdict.txt", "--peak-lr=-1"], /--peak-lr must be > 0/],
    [["--data", "data/the-verdict.txt", "--batch-size", "two"], /--batch-size must be an integer/],
    [["--data", "data/the-verdict.txt", "--bogus"], /Unknown option '--bogus'/],
  ];
  for (const [args, re] of cases) {
    const r = await llm("pretrain", ...args, "--dry-run");
    assertEquals(r.code, 1, args.join(" "));
    match(r.stderr.trim(), re);
    assertEquals(r.stderr.trim().split("\n").length, 1, r.stderr);
  }
  await Deno.remove(tmp, { recursive: true });
});

for (const dir of ["gpt-tiny-qkv", "gpt-tiny-noqkv", "gpt-tiny-qkv-hf"]) {
  Deno.test(`generate --temperature 0 --json reproduces PyTorch's greedy ids (${dir})`, async () => {
    const expected = await loadModelExpected(
      dir.startsWith("gpt-tiny-noqkv") ? "gpt-tiny-noqkv" : "gpt-tiny-qkv",
    );
    // The tiny model has a 97-token vocabulary, so the prompt is given as ids.
    const prompt = expected.promptIds.join(",");
    const r = await llm(
      "generate",
      "--weights",
      new URL(dir, FIXTURES_DIR).pathname,
      "--prompt-ids",
      prompt,
      "--max-new-tokens",
      "10",
      "--temperature",
      "0",
      "--json",
    );
    assertEquals(r.code, 0, r.stderr);
    const out = JSON.parse(r.stdout);
    assertEquals(out.ids, expected.generatedIds.slice(expected.promptIds.length));
  });
}

Deno.test("generate: a missing weights folder is one clear line naming what to pass", async () => {
  const r = await llm("generate", "--weights", "/nonexistent/dir", "--prompt", "hi");
  assertEquals(r.code, 1);
  match(r.stderr.trim(), /neither a folder nor a pretrained name/);
});

Deno.test("pretrain writes metrics.jsonl, lr.svg, loss.svg and a resumable checkpoint", async () => {
  const out = await Deno.makeTempDir();
  const text = (await Deno.readTextFile("data/the-verdict.txt")).slice(0, 6000);
  await Deno.writeTextFile(`${out}/text.txt`, text);
  const args = [
    "pretrain",
    "--data",
    `${out}/text.txt`,
    "--model",
    "gpt-tiny",
    "--context-length",
    "32",
    "--epochs",
    "1",
    "--batch-size",
    "2",
    "--eval-freq",
    "2",
    "--out",
    `${out}/run`,
  ];
  const r = await llm(...args);
  assertEquals(r.code, 0, r.stderr);
  const metrics = (await Deno.readTextFile(`${out}/run/metrics.jsonl`)).trim().split("\n").map((
    l,
  ) => JSON.parse(l));
  assert(metrics.length > 1);
  assertEquals(Object.keys(metrics[0]).sort(), [
    "epoch",
    "lr",
    "step",
    "tokensSeen",
    "trainLoss",
    "valLoss",
  ]);
  for (const f of ["lr.svg", "loss.svg"]) match(await Deno.readTextFile(`${out}/run/${f}`), /<svg/);
  // Starting again over the same folder refuses instead of overwriting.
  const again = await llm(...args);
  assertEquals(again.code, 1);
  match(again.stderr, /already holds a run/);
  // The checkpoint is a plain HF GPT-2 folder: generate can load it.
  const g = await llm(
    "generate",
    "--weights",
    `${out}/run/checkpoint`,
    "--prompt",
    "Every effort",
    "--max-new-tokens",
    "3",
    "--json",
  );
  assertEquals(g.code, 0, g.stderr);
  assertEquals(JSON.parse(g.stdout).ids.length, 3);
  await Deno.remove(out, { recursive: true });
});

Deno.test("model-info --qkv-bias --num-classes 2 --lora-rank 16: 124,441,346 parameters, 2,666,528 trainable", async () => {
  const r = await llm(
    "model-info",
    "--model",
    "gpt2-small",
    "--qkv-bias",
    "--num-classes",
    "2",
    "--lora-rank",
    "16",
    "--lora-alpha",
    "16",
  );
  assertEquals(r.code, 0, r.stderr);
  const info = JSON.parse(r.stdout);
  assertEquals([info.totalParams, info.trainableParams], [124_441_346, 2_666_528]);
});

Deno.test("model-info gpt2-medium --qkv-bias --lora-rank 16: 406,286,336 parameters, 7,898,384 LoRA parameters", async () => {
  const r = await llm(
    "model-info",
    "--model",
    "gpt2-medium",
    "--qkv-bias",
    "--lora-rank",
    "16",
    "--lora-alpha",
    "16",
  );
  const info = JSON.parse(r.stdout);
  assertEquals([info.totalParams, info.trainableParams], [406_286_336, 7_898_384]);
});
