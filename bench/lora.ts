/**
 * LoRA finetuning vs full finetuning (exercise 7.4: the book reports 1.30 vs 1.80 min on an L4):
 * the same model, batch and AdamW, one process per mode so that each has its own peak memory,
 * and the steps alternate between the two processes after warm-up so that a busy machine slows
 * both alike.
 *
 *   deno run -A bench/lora.ts [--model gpt-tiny] [--batch 8] [--seq 64] [--rank 16] [--alpha 16]
 *        [--targets all|all-but-head|W_query,W_value] [--warmup 2] [--steps 5] [--json]
 *
 * `--model` is a preset of lib/model/config.ts (gpt-tiny: vocab 50257, emb 128, 2 layers; gpt2-small:
 * the 124M shape); dropout is 0 as in chapter 7. LoRA wraps every Linear, the head included
 * (the book's replace_linear_with_lora), after freezing the model. Peak memory is the process's
 * VmHWM (peak resident set) from /proc/self/status; "setup" is the resident set after building
 * the model and optimizer, before the first step. Not a test.
 * @module
 */
import { lines, LineWorker } from "./line_worker.ts";
import { defineFlags, flagHelp, parseArgv } from "../lib/cli/args.ts";
import * as tf from "@tensorflow/tfjs";
import { describeBackend, initBackend } from "../lib/backend.ts";
import { type GPTConfig, resolveConfig } from "../lib/model/config.ts";
import { countTrainable, freezeAll, replaceLinearWithLora } from "../lib/model/lora.ts";
import { GPTModel } from "../lib/model/gpt.ts";
import { AdamW } from "../lib/train/adamw.ts";
import { trainStep } from "../lib/train/train.ts";
import { Progress } from "../lib/notebook/progress.ts";

const MODES = ["lora", "full"] as const;
type Mode = typeof MODES[number];

/** What to compare (the CLI flags). */
export interface LoraBenchOptions {
  /** A preset of lib/model/config.ts (default gpt-tiny). */
  model?: string;
  /** Sequences per batch (default 8, chapter 7's). */
  batch?: number;
  /** Tokens per sequence (default 64; at most the model's context). */
  seq?: number;
  rank?: number;
  alpha?: number;
  /** "all" (default, the book), "all-but-head", or layer names. */
  targets?: "all" | "all-but-head" | string[];
  /** Untimed steps of each mode first (default 2). */
  warmup?: number;
  /** Timed steps of each mode (default 5). */
  steps?: number;
}

const DEFAULTS: Required<LoraBenchOptions> = {
  model: "gpt-tiny",
  batch: 8,
  seq: 64,
  rank: 16,
  alpha: 16,
  targets: "all",
  warmup: 2,
  steps: 5,
};

/** What a worker reports at the end. */
export interface WorkerReport {
  mode: Mode;
  backend: string;
  trainable: number;
  total: number;
  setupRssMB: number;
  peakRssMB: number;
  tensorMB: number;
}

/** One mode's result. */
export interface ModeResult extends WorkerReport {
  msPerStep: number[];
  medianMs: number;
  /** The fastest step: the least disturbed by other work on the machine. */
  minMs: number;
}

/** "all", "all-but-head", or a comma-separated list such as "W_query,W_value". */
function parseTargets(s: string): LoraBenchOptions["targets"] {
  return s === "all" || s === "all-but-head" ? s : s.split(",").map((t) => t.trim());
}

function procStatusMB(key: "VmHWM" | "VmRSS"): number {
  const m = new RegExp(`^${key}:\\s+(\\d+) kB`, "m").exec(
    Deno.readTextFileSync("/proc/self/status"),
  );
  return m ? Number(m[1]) / 1024 : NaN;
}

// ---------------------------------------------------------------------------------------------
// Worker: builds one mode, then runs a step per "step" line on stdin, answering with JSON lines.

async function worker(mode: Mode, o: Required<LoraBenchOptions>): Promise<void> {
  // Jupyter's Stop signals the kernel's whole process group: the parent decides when to stop, and
  // a worker ends when its stdin closes.
  Deno.addSignalListener("SIGINT", () => {});
  const info = await initBackend({ log: false });
  const config = resolveConfig(o.model, { dropRate: 0 });
  const seq = Math.min(o.seq, config.contextLength);
  const model = new GPTModel(config, { seed: 123 });
  const total = countTrainable(model);
  if (mode === "lora") {
    freezeAll(model);
    replaceLinearWithLora(model, { rank: o.rank, alpha: o.alpha, targets: o.targets });
  }
  const optimizer = new AdamW(model.namedParameters(), { lr: 5e-5, weightDecay: 0.1 });
  // The same batch in both processes: ids from a fixed seed.
  const inputs = tf.randomUniform([o.batch, seq], 0, config.vocabSize, "int32", 1);
  const targets = tf.randomUniform([o.batch, seq], 0, config.vocabSize, "int32", 2);
  const batch = { inputs: inputs as tf.Tensor2D, targets: targets as tf.Tensor2D };
  model.train();
  const setupRssMB = procStatusMB("VmRSS");
  const out = (x: unknown) =>
    Deno.stdout.writeSync(new TextEncoder().encode(JSON.stringify(x) + "\n"));
  out({ ready: true });
  for await (
    const line of Deno.stdin.readable.pipeThrough(new TextDecoderStream()).pipeThrough(lines())
  ) {
    if (line === "step") {
      const t0 = performance.now();
      const { loss } = await trainStep(model, optimizer, batch, { lr: 5e-5 });
      out({ ms: performance.now() - t0, loss });
    } else if (line === "report") {
      const report: WorkerReport = {
        mode,
        backend: describeBackend(info),
        trainable: countTrainable(model),
        total,
        setupRssMB,
        peakRssMB: procStatusMB("VmHWM"),
        tensorMB: tf.memory().numBytes / 2 ** 20,
      };
      out(report);
      break;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Parent: starts both workers, alternates their steps, prints the table.

class Worker extends LineWorker {
  constructor(readonly mode: Mode, o: Required<LoraBenchOptions>) {
    super(mode, Deno.execPath(), [
      "run",
      "-A",
      new URL(import.meta.url).pathname,
      "--worker",
      mode,
      "--options",
      JSON.stringify(o),
    ]);
  }

  async step(): Promise<number> {
    await this.send("step");
    return (await this.read<{ ms: number }>()).ms;
  }

  async finish(): Promise<WorkerReport> {
    await this.send("report");
    const report = await this.read<WorkerReport>();
    await this.close();
    return report;
  }
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b), m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/** The comparison's settings and results. */
export interface LoraBenchSummary extends Required<LoraBenchOptions> {
  config: GPTConfig;
  backend: string;
  /** Full-finetuning time per step over LoRA's. */
  speedup: number;
  /** 1 - LoRA time / full time (the book: 1 - 1.30 / 1.80 = 28%). */
  timeSaved: number;
  /** LoRA first, then full finetuning. */
  results: ModeResult[];
  /** True when the signal ended the timed steps early (the figures cover the steps taken). */
  stopped: boolean;
}

/**
 * Runs the comparison: one worker process per mode, built one after the other, then `warmup`
 * untimed and `steps` timed steps of each, alternating between the two.
 */
export async function runLoraBench(
  options: LoraBenchOptions = {},
  { signal }: { signal?: AbortSignal } = {},
): Promise<LoraBenchSummary> {
  const o: Required<LoraBenchOptions> = { ...DEFAULTS, ...options };
  const config = resolveConfig(o.model, { dropRate: 0 });
  o.seq = Math.min(o.seq, config.contextLength);
  // Start one at a time: building two models at once would only slow both.
  const workers: Worker[] = [];
  for (const mode of MODES) {
    const w = new Worker(mode, o);
    await w.read<{ ready: boolean }>();
    workers.push(w);
  }
  const times = new Map<Mode, number[]>(MODES.map((m) => [m, []]));
  const bar = new Progress({
    label: `LoRA bench (${o.model})`,
    total: (o.warmup + o.steps) * workers.length,
  });
  let done = 0;
  for (let i = 0; i < o.warmup + o.steps && !signal?.aborted; i++) {
    // Alternate which mode goes first, so neither always follows the other.
    const order = i % 2 ? [...workers].reverse() : workers;
    for (const w of order) {
      const ms = await w.step();
      if (i >= o.warmup) times.get(w.mode)!.push(ms);
      bar.update(++done);
    }
  }
  const stopped = done < (o.warmup + o.steps) * workers.length;
  await bar.finish({ stopped });
  const results: ModeResult[] = [];
  for (const w of workers) {
    const report = await w.finish();
    const ms = times.get(w.mode)!;
    results.push({ ...report, msPerStep: ms, medianMs: median(ms), minMs: Math.min(...ms) });
  }
  const [lora, full] = results;
  return {
    ...o,
    config,
    backend: lora.backend,
    speedup: full.medianMs / lora.medianMs,
    timeSaved: 1 - lora.medianMs / full.medianMs,
    results,
    stopped,
  };
}

/** The summary as a plain-text table with a one-line header and verdict. */
export function formatLoraBench(b: LoraBenchSummary): string {
  const targets = b.targets === "all" ? "" : ` (${b.targets})`;
  const rows = [
    [
      "mode",
      "trainable params",
      "median ms/step",
      "min ms/step",
      "peak RSS MB",
      "RSS after setup MB",
      "tensors MB",
    ],
    ...b.results.map((r) => [
      r.mode === "lora" ? `LoRA r=${b.rank}${targets}` : "full",
      r.trainable.toLocaleString("en-US"),
      r.medianMs.toFixed(0),
      r.minMs.toFixed(0),
      r.peakRssMB.toFixed(0),
      r.setupRssMB.toFixed(0),
      r.tensorMB.toFixed(0),
    ]),
  ];
  const widths = rows[0].map((_, j) => Math.max(...rows.map((r) => r[j].length)));
  const [lora, full] = b.results;
  return [
    `${b.model}: batch ${b.batch} x ${b.seq} tokens, ${b.steps} alternating steps after ${b.warmup} warm-up; ${b.backend}`,
    ...rows.map((r) => r.map((c, j) => c.padStart(widths[j])).join("  ")),
    `LoRA step: ${Math.abs(100 * b.timeSaved).toFixed(0)}% ${
      b.timeSaved >= 0 ? "less" : "more"
    } time than full finetuning (${b.speedup.toFixed(2)}x as fast); peak RSS ${
      lora.peakRssMB.toFixed(0)
    } vs ${full.peakRssMB.toFixed(0)} MB`,
  ].join("\n");
}

const FLAGS = defineFlags({
  model: { type: "string", default: DEFAULTS.model, help: "preset of lib/model/config.ts" },
  batch: { type: "int", positive: true, default: DEFAULTS.batch, help: "sequences per batch" },
  seq: { type: "int", positive: true, default: DEFAULTS.seq, help: "tokens per sequence" },
  rank: { type: "int", positive: true, default: DEFAULTS.rank, help: "LoRA rank" },
  alpha: { type: "number", positive: true, default: DEFAULTS.alpha, help: "LoRA alpha" },
  targets: { type: "string", default: "all", help: "all|all-but-head|W_query,W_value" },
  warmup: { type: "int", min: 0, default: DEFAULTS.warmup, help: "untimed steps first" },
  steps: { type: "int", positive: true, default: DEFAULTS.steps, help: "timed steps" },
  json: { type: "boolean", help: "print the summary as JSON" },
  worker: { type: "string", choices: MODES, help: "(internal) run one mode" },
  options: { type: "string", help: "(internal) the worker's options as JSON" },
});

if (import.meta.main) {
  const { flags: args, help } = parseArgv(FLAGS, Deno.args);
  if (help) {
    console.log(["usage: deno run -A bench/lora.ts [flags]", ...flagHelp(FLAGS)].join("\n"));
  } else if (args.worker) {
    await worker(args.worker, JSON.parse(args.options ?? "{}"));
  } else {
    const { json, worker: _worker, options: _options, targets, ...rest } = args;
    const summary = await runLoraBench({ ...rest, targets: parseTargets(targets) });
    console.log(json ? JSON.stringify(summary, null, 2) : formatLoraBench(summary));
  }
}
