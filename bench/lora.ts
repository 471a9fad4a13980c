/**
 * LoRA finetuning vs full finetuning (exercise 7.4: the book reports 1.30 vs 1.80 min on an L4):
 * the same model, batch and AdamW, one process per mode so that each has its own peak memory,
 * and the steps alternate between the two processes after warm-up so that a busy machine slows
 * both alike.
 *
 *   deno run -A bench/lora.ts [--model gpt-tiny] [--batch 8] [--seq 64] [--rank 16] [--alpha 16]
 *        [--targets all|all-but-head|W_query,W_value] [--warmup 2] [--steps 5] [--json]
 *
 * `--model` is a preset of lib/config.ts (gpt-tiny: vocab 50257, emb 128, 2 layers; gpt2-small:
 * the 124M shape); dropout is 0 as in chapter 7. LoRA wraps every Linear, the head included
 * (the book's replace_linear_with_lora), after freezing the model. Peak memory is the process's
 * VmHWM (peak resident set) from /proc/self/status; "setup" is the resident set after building
 * the model and optimizer, before the first step. Not a test.
 * @module
 */
import { parseArgs } from "node:util";
import * as tf from "@tensorflow/tfjs";
import { describeBackend, initBackend } from "../lib/backend.ts";
import { resolveConfig } from "../lib/config.ts";
import { countTrainable, freezeAll, type LoraTargets, replaceLinearWithLora } from "../lib/lora.ts";
import { GPTModel } from "../lib/model.ts";
import { AdamW } from "../lib/train/adamw.ts";
import { trainStep } from "../lib/train/train.ts";

const MODES = ["lora", "full"] as const;
type Mode = typeof MODES[number];

const { values: args } = parseArgs({
  args: Deno.args,
  options: {
    model: { type: "string", default: "gpt-tiny" },
    batch: { type: "string", default: "8" },
    seq: { type: "string", default: "64" },
    rank: { type: "string", default: "16" },
    alpha: { type: "string", default: "16" },
    targets: { type: "string", default: "all" },
    warmup: { type: "string", default: "2" },
    steps: { type: "string", default: "5" },
    json: { type: "boolean", default: false },
    worker: { type: "string" },
    help: { type: "boolean", short: "h", default: false },
  },
});

/** What a worker reports at the end. */
interface WorkerReport {
  mode: Mode;
  backend: string;
  trainable: number;
  total: number;
  setupRssMB: number;
  peakRssMB: number;
  tensorMB: number;
}

/** One mode's result. */
interface ModeResult extends WorkerReport {
  msPerStep: number[];
  medianMs: number;
}

/** "all", "all-but-head", or a comma-separated list such as "W_query,W_value". */
function parseTargets(s: string): LoraTargets {
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

async function worker(mode: Mode): Promise<void> {
  const info = await initBackend({ log: false });
  const config = resolveConfig(args.model!, { dropRate: 0 });
  const seq = Math.min(Number(args.seq), config.contextLength);
  const model = new GPTModel(config, { seed: 123 });
  const total = countTrainable(model);
  if (mode === "lora") {
    freezeAll(model);
    replaceLinearWithLora(model, {
      rank: Number(args.rank),
      alpha: Number(args.alpha),
      targets: parseTargets(args.targets!),
    });
  }
  const optimizer = new AdamW(model.namedParameters(), { lr: 5e-5, weightDecay: 0.1 });
  // The same batch in both processes: ids from a fixed seed.
  const inputs = tf.randomUniform([Number(args.batch), seq], 0, config.vocabSize, "int32", 1);
  const targets = tf.randomUniform([Number(args.batch), seq], 0, config.vocabSize, "int32", 2);
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
      const { loss } = trainStep(model, optimizer, batch, { lr: 5e-5 });
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

function lines(): TransformStream<string, string> {
  let buf = "";
  return new TransformStream({
    transform(chunk, ctl) {
      buf += chunk;
      let i;
      while ((i = buf.indexOf("\n")) >= 0) {
        ctl.enqueue(buf.slice(0, i));
        buf = buf.slice(i + 1);
      }
    },
    flush(ctl) {
      if (buf) ctl.enqueue(buf);
    },
  });
}

// ---------------------------------------------------------------------------------------------
// Parent: starts both workers, alternates their steps, prints the table.

class Worker {
  readonly #proc: Deno.ChildProcess;
  readonly #writer: WritableStreamDefaultWriter<Uint8Array>;
  readonly #reader: ReadableStreamDefaultReader<string>;

  constructor(readonly mode: Mode) {
    const passOn = ["model", "batch", "seq", "rank", "alpha", "targets"].flatMap((k) => [
      `--${k}`,
      String(args[k as keyof typeof args]),
    ]);
    this.#proc = new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", new URL(import.meta.url).pathname, "--worker", mode, ...passOn],
      stdin: "piped",
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
    this.#writer = this.#proc.stdin.getWriter();
    this.#reader = this.#proc.stdout.pipeThrough(new TextDecoderStream()).pipeThrough(lines())
      .getReader();
  }

  async read<T>(): Promise<T> {
    const { value, done } = await this.#reader.read();
    if (done) throw new Error(`the ${this.mode} worker exited early`);
    return JSON.parse(value) as T;
  }

  async send(line: string): Promise<void> {
    await this.#writer.write(new TextEncoder().encode(line + "\n"));
  }

  async step(): Promise<number> {
    await this.send("step");
    return (await this.read<{ ms: number }>()).ms;
  }

  async finish(): Promise<WorkerReport> {
    await this.send("report");
    const report = await this.read<WorkerReport>();
    await this.#writer.close();
    await this.#proc.status;
    return report;
  }
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b), m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/** Runs the comparison (both workers) and returns the results, LoRA first. */
export async function runLoraBench(): Promise<ModeResult[]> {
  // Start one at a time: building two models at once would only slow both.
  const workers: Worker[] = [];
  for (const mode of MODES) {
    const w = new Worker(mode);
    await w.read<{ ready: boolean }>();
    workers.push(w);
  }
  const warmup = Number(args.warmup), steps = Number(args.steps);
  const times = new Map<Mode, number[]>(MODES.map((m) => [m, []]));
  for (let i = 0; i < warmup; i++) for (const w of workers) await w.step();
  for (let i = 0; i < steps; i++) {
    // Alternate which mode goes first, so neither always follows the other.
    const order = i % 2 ? [...workers].reverse() : workers;
    for (const w of order) times.get(w.mode)!.push(await w.step());
  }
  const results: ModeResult[] = [];
  for (const w of workers) {
    const report = await w.finish();
    const ms = times.get(w.mode)!;
    results.push({ ...report, msPerStep: ms, medianMs: median(ms) });
  }
  return results;
}

function table(results: ModeResult[]): string {
  const rows = [
    [
      "mode",
      "trainable params",
      "median ms/step",
      "peak RSS MB",
      "RSS after setup MB",
      "tensors MB",
    ],
    ...results.map((r) => [
      r.mode === "lora"
        ? `LoRA r=${args.rank}${args.targets === "all" ? "" : ` (${args.targets})`}`
        : "full",
      r.trainable.toLocaleString("en-US"),
      r.medianMs.toFixed(0),
      r.peakRssMB.toFixed(0),
      r.setupRssMB.toFixed(0),
      r.tensorMB.toFixed(0),
    ]),
  ];
  const widths = rows[0].map((_, j) => Math.max(...rows.map((r) => r[j].length)));
  return rows.map((r) => r.map((c, j) => c.padStart(widths[j])).join("  ")).join("\n");
}

if (import.meta.main) {
  if (args.help) {
    console.log(
      "usage: deno run -A bench/lora.ts [--model gpt-tiny] [--batch 8] [--seq 64] [--rank 16] " +
        "[--alpha 16] [--targets all|all-but-head|W_query,W_value] [--warmup 2] [--steps 5] [--json]",
    );
  } else if (args.worker) {
    if (!(MODES as readonly string[]).includes(args.worker)) throw new Error("bad --worker");
    await worker(args.worker as Mode);
  } else {
    const config = resolveConfig(args.model!, { dropRate: 0 });
    const results = await runLoraBench();
    const [lora, full] = results;
    const summary = {
      model: args.model,
      config,
      batch: Number(args.batch),
      seq: Math.min(Number(args.seq), config.contextLength),
      rank: Number(args.rank),
      alpha: Number(args.alpha),
      targets: args.targets,
      warmup: Number(args.warmup),
      steps: Number(args.steps),
      backend: lora.backend,
      speedup: full.medianMs / lora.medianMs,
      timeSaved: 1 - lora.medianMs / full.medianMs,
      results,
    };
    if (args.json) console.log(JSON.stringify(summary, null, 2));
    else {
      console.log(
        `${args.model}: batch ${summary.batch} x ${summary.seq} tokens, ${summary.steps} alternating steps after ${summary.warmup} warm-up; ${lora.backend}`,
      );
      console.log(table(results));
      console.log(
        `LoRA step: ${(100 * summary.timeSaved).toFixed(0)}% less time than full finetuning ` +
          `(${summary.speedup.toFixed(2)}x); peak RSS ${lora.peakRssMB.toFixed(0)} vs ${
            full.peakRssMB.toFixed(0)
          } MB`,
      );
    }
  }
}
