/** bench/bench.ts without running it: argument parsing, the --json shape, the markdown table. */
import assert from "node:assert/strict";
import {
  type BenchResult,
  formatMarkdown,
  parseBenchArgs,
  toJsonSummary,
  workload,
} from "../bench/bench.ts";
import { sftEstimate, sftLengths } from "../bench/sft.ts";
import { UserError } from "../lib/util/errors.ts";

Deno.test("parseBenchArgs() defaults: tiny train, 10 steps after 2 warm-up", () => {
  const o = parseBenchArgs([]);
  assert.deepEqual(
    { config: o.config, mode: o.mode, steps: o.steps, warmup: o.warmup, json: o.json },
    { config: "tiny", mode: "train", steps: 10, warmup: 2, json: false },
  );
  assert.equal(o.torchThreads, null);
});

Deno.test("parseBenchArgs() gpt-124m-book defaults to 3 steps after 1 warm-up", () => {
  const o = parseBenchArgs(["--config", "gpt-124m-book", "--json"]);
  assert.deepEqual([o.steps, o.warmup, o.json], [3, 1, true]);
});

Deno.test("parseBenchArgs() generate defaults to 256 new tokens, 3 runs after 1 warm-up", () => {
  const o = parseBenchArgs(["--mode", "generate"]);
  assert.deepEqual([o.newTokens, o.steps, o.warmup], [256, 3, 1]);
  assert.equal(parseBenchArgs(["--mode", "generate", "--new-tokens", "8"]).newTokens, 8);
});

Deno.test("parseBenchArgs() explicit flags override the defaults", () => {
  const o = parseBenchArgs(["--steps", "5", "--warmup", "0", "--torch-threads", "1"]);
  assert.deepEqual([o.steps, o.warmup, o.torchThreads], [5, 0, 1]);
});

Deno.test("parseBenchArgs() rejects bad input with a UserError", () => {
  for (
    const argv of [
      ["--config", "huge"],
      ["--mode", "eval"],
      ["--steps", "0"],
      ["--steps", "2.5"],
      ["--warmup", "-1"],
      ["--new-tokens", "1021"],
      ["--bogus"],
      ["extra"],
    ]
  ) {
    assert.throws(() => parseBenchArgs(argv), UserError, argv.join(" "));
  }
});

Deno.test("workload(): tiny trains batch 4 x 128, gpt-124m-book batch 2 x 256, generate is gpt2-small", () => {
  const tiny = workload(parseBenchArgs([]));
  assert.deepEqual(
    [tiny.model.embDim, tiny.model.nLayers, tiny.model.nHeads, tiny.batch, tiny.tokensPerStep],
    [128, 2, 4, 4, 512],
  );
  const book = workload(parseBenchArgs(["--config", "gpt-124m-book"]));
  assert.deepEqual([book.model.contextLength, book.batch, book.tokensPerStep], [256, 2, 512]);
  const gen = workload(parseBenchArgs(["--mode", "generate", "--new-tokens", "16"]));
  assert.deepEqual(
    [gen.model.embDim, gen.model.nLayers, gen.model.contextLength, gen.model.qkvBias],
    [768, 12, 1024, true],
  );
  assert.equal(gen.tokensPerStep, 16);
});

function fakeResult(withTorch: boolean): BenchResult {
  const options = parseBenchArgs(["--steps", "3"]);
  return {
    options,
    workload: workload(options),
    machine: {
      cores: 2,
      loadAvg: [0.1, 0.2],
      otherCpuPct: 1,
      cpuModel: "Test CPU",
      memGiB: 24,
      os: "linux x86_64",
      deno: "2.9.0",
      tfjs: "4.22.0",
    },
    ours: {
      msPerStep: [300, 100, 200],
      medianMs: 200,
      tokensPerSec: 2560,
      peakRssMB: 700,
      detail: "tfjs cpu",
    },
    torch: withTorch
      ? {
        msPerStep: [400, 400, 400],
        medianMs: 400,
        tokensPerSec: 1280,
        peakRssMB: 900,
        detail: "torch 1.13",
      }
      : null,
    peerMissing: withTorch ? undefined : "no torch",
  };
}

Deno.test("toJsonSummary() has the medians, ratio ours/torch, peak RSS and the machine", () => {
  const j = toJsonSummary(fakeResult(true));
  assert.deepEqual(
    [j.oursMsPerStep, j.torchMsPerStep, j.ratio, j.oursPeakRssMB, j.torchPeakRssMB],
    [200, 400, 0.5, 700, 900],
  );
  assert.deepEqual([j.mode, j.config, j.steps, j.machine.cores, j.machine.cpuModel], [
    "train",
    "tiny",
    3,
    2,
    "Test CPU",
  ]);
  // One line of plain JSON.
  assert.deepEqual(JSON.parse(JSON.stringify(j)), j);
});

Deno.test("toJsonSummary() without torch: ratio and torch figures are null, the reason is kept", () => {
  const j = toJsonSummary(fakeResult(false));
  assert.deepEqual([j.ratio, j.torchMsPerStep, j.torchPeakRssMB, j.peerMissing], [
    null,
    null,
    null,
    "no torch",
  ]);
});

Deno.test("formatMarkdown() is a table with both sides, the ratio and the machine", () => {
  const md = formatMarkdown(fakeResult(true));
  assert.match(md, /^\| train, tiny .*\|\n\|---\|---:\|---:\|---:\|/);
  assert.match(md, /\| ours \/ PyTorch \| 0\.50x time \| 2\.00x tokens\/s \| 0\.78x \|/);
  assert.match(md, /Machine: Test CPU, 2 cores/);
  assert.match(formatMarkdown(fakeResult(false)), /PyTorch \| missing: no torch/);
});

Deno.test("parseBenchArgs() --backend names our tfjs backend, --device the peer's (cpu or cuda)", () => {
  const o = parseBenchArgs(["--backend", "webgpu", "--device", "cuda"]);
  assert.deepEqual([o.backend, o.device], ["webgpu", "cuda"]);
  const d = parseBenchArgs([]);
  assert.deepEqual([d.backend, d.device], [null, "cpu"]);
  assert.throws(() => parseBenchArgs(["--device", "tpu"]), UserError);
});

Deno.test("workload(): gpt2-medium-sft trains GPT-2 medium (qkv bias, no dropout) on batch 8 x the collated length", () => {
  const o = { ...parseBenchArgs(["--config", "gpt2-medium-sft"]), seqLen: 71 };
  const w = workload(o);
  assert.deepEqual(
    [w.model.embDim, w.model.nLayers, w.model.qkvBias, w.model.dropRate, w.batch, w.seqLen],
    [1024, 24, true, 0, 8, 71],
  );
  assert.equal(w.tokensPerStep, 8 * 71);
});

Deno.test("sftLengths(): the book's 935 training entries give 116 batches of 8, collated to 53..91 tokens (mean 71)", async () => {
  const l = await sftLengths();
  assert.deepEqual(l, {
    trainEntries: 935,
    batchSize: 8,
    batchesPerEpoch: 116,
    mean: 71,
    min: 53,
    max: 91,
  });
});

Deno.test("sftEstimate(): 2 epochs = 232 steps plus 47 evaluations of 5 + 5 batches, in minutes", () => {
  const l = { trainEntries: 935, batchSize: 8, batchesPerEpoch: 116, mean: 71, min: 53, max: 91 };
  const e = sftEstimate(l, 150, 40);
  assert.deepEqual([e.steps, e.evalForwards], [232, 470]);
  assert.equal(e.minutes, Math.round((232 * 150 + 470 * 40) / 60_000 * 1000) / 1000);
});
