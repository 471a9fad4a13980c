/**
 * Our GPT against the PyTorch reference on the same machine: a training step, or greedy
 * generation with a key/value cache.
 *
 *   deno task bench [--config tiny|gpt-124m-book] [--mode train|generate] [--steps N]
 *        [--warmup N] [--new-tokens N] [--torch-threads N] [--json] [--help]
 *
 * Two long-lived worker processes, driven over stdin/stdout one line at a time: ours (this file
 * under `deno run --worker`) and the peer (`/usr/bin/python3 bench/torch_peer.py` with the model
 * of bench/torch_step.py and `torch.set_num_threads(cores)`). After warm-up they take turns, one
 * step each (the first alternates), so that a busy machine slows both alike; figures are
 * medians. Peak memory is each worker's VmHWM (peak resident set) from /proc/<pid>/status. The
 * share of the cores that other processes used during the timed steps is reported too.
 *
 * The peer runs with OMP_WAIT_POLICY=PASSIVE unless the variable is set: Debian's torch uses GNU
 * OpenMP for its own threads and OpenBLAS's pthreads for matmuls, and OpenMP's default spinning
 * starves OpenBLAS (measured on 2 cores: 3x slower generation, 1.3x slower training steps).
 *
 * train: forward, cross-entropy, backward and AdamW (lr 4e-4, weight decay 0.1, no clipping)
 * with dropout 0.1 on a fixed random int32 batch. `tiny` is lib/model/config.ts's gpt-tiny (vocab
 * 50257, context 128, emb 128, 2 layers, 4 heads) with batch 4; `gpt-124m-book` is
 * GPT_CONFIG_124M (context 256) with batch 2.
 * generate: a gpt2-small-shaped model (random weights, seed 123, qkv bias, no dropout), a
 * 4-token prompt, `--new-tokens` greedy tokens (default 256) with the KV cache: lib/model/generate.ts
 * against a cached GPT-2 forward in torch_peer.py. One step = one whole generation.
 *
 * Without torch the peer is reported missing and ours is measured alone (ratio null). The env
 * variable BENCH_PYTHON names another interpreter for the peer.
 * Not a test.
 * @module
 */
import { Progress } from "../lib/notebook/progress.ts";
import { lines, LineWorker } from "./line_worker.ts";
import { defineFlags, parseArgv } from "../lib/cli/args.ts";
import * as tf from "@tensorflow/tfjs";
import { initBackend } from "../lib/backend.ts";
import { type GPTConfig, PRESETS, resolveConfig } from "../lib/model/config.ts";
import { UserError } from "../lib/util/errors.ts";
import { generate } from "../lib/model/generate.ts";
import { GPTModel } from "../lib/model/gpt.ts";
import { AdamW } from "../lib/train/adamw.ts";
import { calcLossBatch } from "../lib/train/loss.ts";
import { trainStep } from "../lib/train/train.ts";
import { type SftEstimate, sftEstimate, type SftLengths, sftLengths } from "./sft.ts";

/** The Debian interpreter that has torch (the `python3` on PATH may not); env BENCH_PYTHON overrides. */
export const TORCH_PYTHON = Deno.env.get("BENCH_PYTHON") || "/usr/bin/python3";
/** "Every effort moves you" in GPT-2 BPE: the generation prompt. */
export const PROMPT_IDS = [6109, 3626, 6100, 345];
const LR = 4e-4, WEIGHT_DECAY = 0.1;
/** Other processes using more than this share of all cores during the timed steps: a warning. */
const BUSY_OTHERS_PCT = 10;
/** Tokens of each warm-up generation (enough to compile every kernel path). */
const GENERATE_WARMUP_TOKENS = 16;

/** Benchmark configs: a preset of lib/model/config.ts and the batch size. */
export const BENCH_CONFIGS: Record<
  string,
  { preset: string; batch: number; steps: number; warmup: number; overrides?: Partial<GPTConfig> }
> = {
  // A smoke test of the machinery (seconds even on a software GPU): not a figure to quote.
  "micro": {
    preset: "gpt-tiny",
    batch: 2,
    steps: 3,
    warmup: 1,
    overrides: { vocabSize: 512, contextLength: 32, embDim: 64 },
  },
  "tiny": { preset: "gpt-tiny", batch: 4, steps: 10, warmup: 2 },
  "gpt-124m-book": { preset: "gpt-124m-book", batch: 2, steps: 3, warmup: 1 },
  // Chapter 7's finetuning step: GPT-2 medium as OpenAI's weights load (qkv bias, dropout 0),
  // batch 8 at the mean collated length of the book's data (bench/sft.ts).
  "gpt2-medium-sft": { preset: "gpt2-medium", batch: 8, steps: 3, warmup: 1 },
};
export type BenchConfigName = string;
export const BENCH_MODES = ["train", "generate"] as const;
export type BenchMode = typeof BENCH_MODES[number];
/** Defaults of generate mode (the --config flag does not apply: the model is gpt2-small's shape). */
export const GENERATE_DEFAULTS = { steps: 3, warmup: 1, newTokens: 256 } as const;

/** The parsed command line. */
export interface BenchOptions {
  config: BenchConfigName;
  mode: BenchMode;
  /** Timed steps of each side (train: optimizer steps; generate: whole generations). */
  steps: number;
  /** Untimed steps of each side first. */
  warmup: number;
  /** New tokens per generation (generate mode). */
  newTokens: number;
  /** torch.set_num_threads of the peer; null: the number of cores. */
  torchThreads: number | null;
  /** Our tfjs backend (LLM_BACKEND of our worker); null: initBackend's choice. */
  backend: string | null;
  /** The peer's torch device: "cpu" or "cuda". */
  device: "cpu" | "cuda";
  /** Tokens per row of gpt2-medium-sft (the mean collated length); set by runBench. */
  seqLen?: number;
  json: boolean;
  help: boolean;
}

export const USAGE =
  "usage: deno task bench [--config tiny|gpt-124m-book|gpt2-medium-sft|micro] [--mode train|generate] " +
  "[--steps N] [--warmup N] [--new-tokens N] [--backend NAME] [--device cpu|cuda] " +
  "[--torch-threads N] [--json] [--help]\n" +
  "  train (default): ms/step of our training step vs PyTorch's, alternating after warm-up\n" +
  "    --config tiny (default; steps 10, warmup 2) or gpt-124m-book (steps 3, warmup 1)\n" +
  "    or gpt2-medium-sft: chapter 7's finetuning step (batch 8 at the mean collated length of\n" +
  "    data/instruction-data.json) and the whole 2-epoch finetune in minutes, extrapolated\n" +
  "  generate: greedy tokens/s with a KV cache, gpt2-small shape, 256 new tokens (--new-tokens);\n" +
  "    steps 3, warmup 1 (warm-up generations are 16 tokens)\n" +
  `  --backend: our tfjs backend (cpu, webgpu, ...; default: initBackend's choice)\n` +
  `  --device: the peer's torch device, cpu (default) or cuda\n` +
  `  --torch-threads: torch.set_num_threads of the peer (default: the number of cores)\n` +
  `  --json: one JSON line. The peer is ${TORCH_PYTHON} with torch; without it ours runs alone.`;

const BENCH_FLAGS = defineFlags({
  config: { type: "string", help: "tiny (default), gpt-124m-book, gpt2-medium-sft or micro" },
  mode: { type: "string", choices: BENCH_MODES, default: "train", help: "what to time" },
  steps: { type: "int", min: 1, help: "timed steps of each side" },
  warmup: { type: "int", min: 0, help: "untimed steps first" },
  "new-tokens": { type: "int", min: 1, help: "new tokens per generation" },
  "torch-threads": { type: "int", min: 1, help: "torch.set_num_threads of the peer" },
  backend: { type: "string", help: "our tfjs backend (cpu, webgpu, ...)" },
  device: { type: "string", choices: ["cpu", "cuda"], default: "cpu", help: "the peer's device" },
  json: { type: "boolean", help: "one JSON line" },
});

/** Parses the command line; bad input throws UserError. */
export function parseBenchArgs(argv: string[]): BenchOptions {
  const { flags: values, help } = parseArgv(BENCH_FLAGS, argv);
  if (help) return { ...parseBenchArgs([]), help: true };
  const config = values.config === "gpt-tiny" ? "tiny" : values.config ?? "tiny";
  if (!isBenchConfig(config)) {
    throw new UserError(
      `unknown --config "${config}"; valid: ${Object.keys(BENCH_CONFIGS).join(", ")}`,
    );
  }
  const mode = values.mode;
  const defaults = mode === "generate"
    ? GENERATE_DEFAULTS
    : { ...BENCH_CONFIGS[config], newTokens: GENERATE_DEFAULTS.newTokens };
  const newTokens = values["new-tokens"] ?? defaults.newTokens;
  const maxNew = PRESETS["gpt2-small"].contextLength - PROMPT_IDS.length;
  if (newTokens > maxNew) {
    throw new UserError(`--new-tokens must be at most ${maxNew} (the context minus the prompt)`);
  }
  return {
    config,
    mode,
    steps: values.steps ?? defaults.steps,
    warmup: values.warmup ?? defaults.warmup,
    newTokens,
    torchThreads: values["torch-threads"] ?? null,
    backend: values.backend ?? null,
    device: values.device,
    json: values.json,
    help,
  };
}

function isBenchConfig(name: string): name is BenchConfigName {
  return Object.hasOwn(BENCH_CONFIGS, name);
}

/** The model each side builds, and the tokens one step processes. */
export interface BenchWorkload {
  model: GPTConfig;
  /** Sequences per batch (train) or 1 (generate). */
  batch: number;
  /** Tokens per row of a training batch (the context length, or the sft length). */
  seqLen: number;
  /** Tokens per timed step: batch x context (train) or new tokens (generate). */
  tokensPerStep: number;
}

/** The model and batch of a run. */
export function workload(o: BenchOptions): BenchWorkload {
  if (o.mode === "generate") {
    // gpt2-small as OpenAI's checkpoints load it (qkv bias on); dropout off for inference.
    const model = resolveConfig("gpt2-small", { qkvBias: true, dropRate: 0 });
    return { model, batch: 1, seqLen: o.newTokens, tokensPerStep: o.newTokens };
  }
  const c = BENCH_CONFIGS[o.config];
  if (o.config === "gpt2-medium-sft") {
    if (!o.seqLen) throw new Error("gpt2-medium-sft needs seqLen (runBench computes it)");
    const model = resolveConfig(c.preset, { qkvBias: true, dropRate: 0 });
    return { model, batch: c.batch, seqLen: o.seqLen, tokensPerStep: c.batch * o.seqLen };
  }
  const model = resolveConfig(c.preset, { dropRate: 0.1, ...c.overrides });
  const seqLen = model.contextLength;
  return { model, batch: c.batch, seqLen, tokensPerStep: c.batch * seqLen };
}

/** Where the run happened. */
export interface MachineInfo {
  cores: number;
  /** 1-minute load averages at the start and the end. */
  loadAvg: [number, number];
  /**
   * CPU time of other processes during the timed steps, in % of all cores (/proc/stat's busy
   * time minus the bench's own processes): above a few %, others slowed the figures.
   */
  otherCpuPct: number | null;
  cpuModel: string;
  memGiB: number;
  os: string;
  deno: string;
  tfjs: string;
}

/** Cores, CPU model and memory from /proc (Linux); "unknown" elsewhere. */
export function machineInfo(): MachineInfo {
  const read = (p: string) => {
    try {
      return Deno.readTextFileSync(p);
    } catch {
      return "";
    }
  };
  const cpuinfo = read("/proc/cpuinfo");
  const cpuModel = /^model name\s*:\s*(.+)$/m.exec(cpuinfo)?.[1].trim() ?? "unknown";
  const processors = (cpuinfo.match(/^processor\s*:/gm) ?? []).length;
  const memKb = Number(/^MemTotal:\s+(\d+) kB/m.exec(read("/proc/meminfo"))?.[1] ?? NaN);
  const load = loadAverage();
  return {
    cores: processors || navigator.hardwareConcurrency,
    loadAvg: [load, load],
    otherCpuPct: null,
    cpuModel,
    memGiB: Math.round((memKb / 2 ** 20) * 10) / 10,
    os: `${Deno.build.os} ${Deno.build.arch}`,
    deno: Deno.version.deno,
    tfjs: tf.version_core,
  };
}

/** The 1-minute load average (NaN where /proc/loadavg is missing). */
export function loadAverage(): number {
  try {
    return Number(Deno.readTextFileSync("/proc/loadavg").split(" ")[0]);
  } catch {
    return NaN;
  }
}

/** One side's figures. */
export interface SideResult {
  msPerStep: number[];
  /** Median ms per step. */
  medianMs: number;
  tokensPerSec: number;
  peakRssMB: number;
  /** What ran: backend, or torch version and threads. */
  detail: string;
}

/** Everything a run reports; `toJsonSummary` flattens it to the --json line. */
export interface BenchResult {
  options: BenchOptions;
  workload: BenchWorkload;
  machine: MachineInfo;
  ours: SideResult;
  /** Null when torch is not available. */
  torch: SideResult | null;
  /** Why the peer is missing (when torch is null). */
  peerMissing?: string;
  /** gpt2-medium-sft: the collated lengths and the evaluation forward passes' medians. */
  sft?: { lengths: SftLengths; oursForwardMs: number; torchForwardMs: number | null };
}

/** gpt2-medium-sft's extra figures: the whole chapter-7 finetune, extrapolated. */
export interface SftJson {
  lengths: SftLengths;
  oursForwardMs: number;
  torchForwardMs: number | null;
  /** Always true: minutes = steps x median step + evaluation forwards x median forward. */
  extrapolated: true;
  ours: SftEstimate;
  torch: SftEstimate | null;
}

/** The --json line's object. */
export interface BenchJson {
  mode: BenchMode;
  /** The bench config (train) or "gpt2-small" (generate). */
  config: string;
  model: GPTConfig;
  batch: number;
  /** Tokens per row of a training batch. */
  seqLen: number;
  tokensPerStep: number;
  steps: number;
  warmup: number;
  newTokens: number | null;
  oursMsPerStep: number;
  torchMsPerStep: number | null;
  /** ours / torch time per step (below 1: ours is faster); null without the peer. */
  ratio: number | null;
  oursTokensPerSec: number;
  torchTokensPerSec: number | null;
  oursPeakRssMB: number;
  torchPeakRssMB: number | null;
  oursMs: number[];
  torchMs: number[] | null;
  ours: string;
  peer: string | null;
  peerMissing: string | null;
  /** The peer's torch device. */
  device: "cpu" | "cuda";
  /** gpt2-medium-sft only. */
  sft?: SftJson;
  machine: MachineInfo;
}

const round = (x: number, digits = 1) => Math.round(x * 10 ** digits) / 10 ** digits;

/** The flat summary printed by --json. */
export function toJsonSummary(r: BenchResult): BenchJson {
  const { options: o, workload: w, ours, torch } = r;
  return {
    mode: o.mode,
    config: o.mode === "generate" ? "gpt2-small" : o.config,
    model: w.model,
    batch: w.batch,
    seqLen: w.seqLen,
    tokensPerStep: w.tokensPerStep,
    steps: o.steps,
    warmup: o.warmup,
    newTokens: o.mode === "generate" ? o.newTokens : null,
    oursMsPerStep: round(ours.medianMs),
    torchMsPerStep: torch ? round(torch.medianMs) : null,
    ratio: torch ? round(ours.medianMs / torch.medianMs, 3) : null,
    oursTokensPerSec: round(ours.tokensPerSec),
    torchTokensPerSec: torch ? round(torch.tokensPerSec) : null,
    oursPeakRssMB: Math.round(ours.peakRssMB),
    torchPeakRssMB: torch ? Math.round(torch.peakRssMB) : null,
    oursMs: ours.msPerStep.map((x) => round(x)),
    torchMs: torch ? torch.msPerStep.map((x) => round(x)) : null,
    ours: ours.detail,
    peer: torch?.detail ?? null,
    peerMissing: torch ? null : r.peerMissing ?? "torch not available",
    device: o.device,
    ...(r.sft ? { sft: sftJson(r) } : {}),
    machine: r.machine,
  };
}

function sftJson(r: BenchResult): SftJson {
  const { lengths, oursForwardMs, torchForwardMs } = r.sft!;
  return {
    lengths,
    oursForwardMs: round(oursForwardMs),
    torchForwardMs: torchForwardMs === null ? null : round(torchForwardMs),
    extrapolated: true,
    ours: sftEstimate(lengths, r.ours.medianMs, oursForwardMs),
    torch: r.torch && torchForwardMs !== null
      ? sftEstimate(lengths, r.torch.medianMs, torchForwardMs)
      : null,
  };
}

const fmt = (x: number, digits = 0) =>
  x.toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits });

/** A markdown table of the run, with the machine, for the README. */
export function formatMarkdown(r: BenchResult): string {
  const j = toJsonSummary(r), m = r.machine;
  const what = j.mode === "generate"
    ? `generate, gpt2-small shape, ${j.newTokens} new tokens (greedy, KV cache)`
    : `train, ${j.config} (batch ${j.batch} x ${j.seqLen} tokens, AdamW, dropout ${j.model.dropRate})`;
  const unit = j.mode === "generate" ? "ms/generation" : "ms/step";
  const rows = [
    `| ${what} | median ${unit} | tokens/s | peak RSS MB |`,
    "|---|---:|---:|---:|",
    `| ours (${j.ours}) | ${fmt(j.oursMsPerStep)} | ${fmt(j.oursTokensPerSec, 1)} | ${
      fmt(j.oursPeakRssMB)
    } |`,
  ];
  if (j.torchMsPerStep !== null) {
    rows.push(
      `| PyTorch (${j.peer}) | ${fmt(j.torchMsPerStep)} | ${fmt(j.torchTokensPerSec!, 1)} | ${
        fmt(j.torchPeakRssMB!)
      } |`,
      `| ours / PyTorch | ${j.ratio!.toFixed(2)}x time | ${
        (j.oursTokensPerSec / j.torchTokensPerSec!).toFixed(2)
      }x tokens/s | ${(j.oursPeakRssMB / j.torchPeakRssMB!).toFixed(2)}x |`,
    );
  } else {
    rows.push(`| PyTorch | missing: ${j.peerMissing} | | |`);
  }
  if (j.sft) {
    const e = j.sft;
    rows.push(
      `| whole finetune, 2 epochs of ${e.lengths.trainEntries} entries (${e.ours.steps} steps + ` +
        `${e.ours.evalForwards} eval forwards, extrapolated) | ours ${
          e.ours.minutes.toFixed(2)
        } min | ` +
        `PyTorch ${e.torch ? e.torch.minutes.toFixed(2) + " min" : "-"} | |`,
    );
  }
  return [
    ...rows,
    "",
    `Machine: ${m.cpuModel}, ${m.cores} cores, ${m.memGiB} GiB; ${m.os}, Deno ${m.deno}, ` +
    `tfjs ${m.tfjs}. Medians of ${j.steps} ${
      j.ratio === null ? "" : "alternating "
    }steps after ${j.warmup} warm-up; ` +
    `other processes used ${
      m.otherCpuPct === null ? "?" : m.otherCpuPct.toFixed(0)
    }% of the cores meanwhile.`,
  ].join("\n");
}

// ---------------------------------------------------------------------------------------------
// Our worker: builds the model, then answers "step" / "gen N" lines with {"ms": ...}.

async function ourWorker(o: BenchOptions): Promise<void> {
  const info = await initBackend({ log: false });
  const w = workload(o);
  const model = new GPTModel(w.model, { seed: 123 });
  let step: (() => Promise<Record<string, unknown>>) | undefined;
  let forward: (() => Promise<Record<string, unknown>>) | undefined;
  if (o.mode === "train") {
    const optimizer = new AdamW(model.namedParameters(), { lr: LR, weightDecay: WEIGHT_DECAY });
    const shape: [number, number] = [w.batch, w.seqLen];
    const batch = {
      inputs: tf.randomUniform(shape, 0, w.model.vocabSize, "int32", 1) as tf.Tensor2D,
      targets: tf.randomUniform(shape, 0, w.model.vocabSize, "int32", 2) as tf.Tensor2D,
    };
    step = async () => {
      model.train();
      const { loss } = await trainStep(model, optimizer, batch, { lr: LR, maxGradNorm: null });
      return { loss };
    };
    // An evaluation batch: forward and loss only (the finetune's calc_loss_loader).
    forward = async () => {
      model.eval();
      const value = tf.tidy(() => calcLossBatch(batch.inputs, batch.targets, model));
      const loss = (await value.data())[0];
      value.dispose();
      return { loss };
    };
  } else model.eval();
  const out = (x: unknown) =>
    Deno.stdout.writeSync(new TextEncoder().encode(JSON.stringify(x) + "\n"));
  // "cpu (fast kernels: BLAS libopenblas.so.0, 2 threads; ...)": without the skipped backends.
  const detail = `tfjs ${info.name} (${info.detail.replace(/\/\S*\//g, "")})`;
  out({ ready: true, detail });
  for await (
    const line of Deno.stdin.readable.pipeThrough(new TextDecoderStream()).pipeThrough(lines())
  ) {
    const [cmd, arg] = line.trim().split(/\s+/);
    if (cmd === "quit") break;
    const t0 = performance.now();
    let result: Record<string, unknown>;
    if (cmd === "step" && step) result = await step();
    else if (cmd === "fwd" && forward) result = await forward();
    else if (cmd === "gen") {
      const ids = await generate(model, PROMPT_IDS, {
        maxNewTokens: Number(arg),
        temperature: 0,
        useCache: true,
      });
      result = { tokens: ids.length, ids: ids.slice(0, 8) };
    } else {
      out({ error: `unknown command ${cmd}` });
      continue;
    }
    out({ ms: performance.now() - t0, ...result });
  }
}

// ---------------------------------------------------------------------------------------------
// Parent: starts the workers one after the other, alternates their steps, reads their VmHWM.

class Worker extends LineWorker {
  detail = "";

  /** Sends one command and returns its time in ms. */
  async run(command: string): Promise<number> {
    await this.send(command);
    const reply = await this.read<{ ms?: number; error?: string }>();
    if (reply.ms === undefined) throw new Error(`${this.name} worker: ${reply.error}`);
    return reply.ms;
  }

  /** Peak resident set of the worker process in MB (VmHWM), read while it is alive. */
  /** CPU time of the worker process (all threads) in clock ticks. */
  cpuTicks(): number {
    return processTicks(`/proc/${this.proc.pid}/stat`);
  }

  peakRssMB(): number {
    const status = Deno.readTextFileSync(`/proc/${this.proc.pid}/status`);
    const m = /^VmHWM:\s+(\d+) kB/m.exec(status);
    return m ? Number(m[1]) / 1024 : NaN;
  }

  async quit(): Promise<void> {
    await this.send("quit");
    await this.close();
  }
}

/** Why torch cannot be used, or null when `/usr/bin/python3 -c "import torch"` works. */
export async function torchMissing(): Promise<string | null> {
  try {
    const r = await new Deno.Command(TORCH_PYTHON, {
      args: ["-c", "import torch"],
      stdout: "null",
      stderr: "piped",
    }).output();
    if (r.success) return null;
    const err = new TextDecoder().decode(r.stderr).trim().split("\n").pop();
    return `${TORCH_PYTHON} -c "import torch" failed: ${err}`;
  } catch (err) {
    return `${TORCH_PYTHON} cannot run: ${err instanceof Error ? err.message : err}`;
  }
}

/** utime + stime of a process from /proc/<pid>/stat, in clock ticks (NaN off Linux). */
function processTicks(path: string): number {
  try {
    // The command name (field 2) may hold spaces: count fields after its closing parenthesis.
    const stat = Deno.readTextFileSync(path);
    const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return Number(f[11]) + Number(f[12]);
  } catch {
    return NaN;
  }
}

/** Busy and total clock ticks of all cores from /proc/stat. */
function machineTicks(): { busy: number; total: number } {
  try {
    const f = Deno.readTextFileSync("/proc/stat").split("\n")[0].trim().split(/\s+/).slice(1)
      .map(Number);
    const total = f.slice(0, 8).reduce((a, b) => a + b, 0);
    return { busy: total - f[3] - f[4], total }; // minus idle and iowait
  } catch {
    return { busy: NaN, total: NaN };
  }
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b), m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

function torchArgs(o: BenchOptions, w: BenchWorkload, threads: number): string[] {
  const c = w.model;
  return [
    new URL("./torch_peer.py", import.meta.url).pathname,
    "--mode",
    o.mode,
    "--prompt",
    PROMPT_IDS.join(","),
    "--vocab",
    `${c.vocabSize}`,
    "--ctx",
    `${c.contextLength}`,
    "--seq",
    `${w.seqLen}`,
    "--device",
    o.device,
    "--emb",
    `${c.embDim}`,
    "--layers",
    `${c.nLayers}`,
    "--heads",
    `${c.nHeads}`,
    "--batch",
    `${w.batch}`,
    "--drop",
    `${c.dropRate}`,
    "--threads",
    `${threads}`,
    ...(c.qkvBias ? ["--qkv-bias"] : []),
  ];
}

/** Runs the comparison (see the module comment); `log` gets progress lines. */
export async function runBench(
  options: BenchOptions,
  log: (line: string) => void = (l) => console.error(l),
): Promise<BenchResult> {
  const lengths = options.config === "gpt2-medium-sft" && options.mode === "train"
    ? await sftLengths()
    : undefined;
  const o = lengths ? { ...options, seqLen: lengths.mean } : options;
  if (lengths) {
    log(
      `chapter 7 data: ${lengths.batchesPerEpoch} batches of ${lengths.batchSize} per epoch, ` +
        `collated length ${lengths.min}..${lengths.max}, mean ${lengths.mean} (timed)`,
    );
  }
  const w = workload(o), machine = machineInfo();
  const peerMissing = await torchMissing();
  const workers: Worker[] = [];
  try {
    // One at a time: building both at once would only slow both.
    log(`starting ours (${o.mode}) ...`);
    const ours = new Worker(
      "ours",
      Deno.execPath(),
      ["run", "-A", new URL(import.meta.url).pathname, "--worker", JSON.stringify(o)],
      o.backend ? { LLM_BACKEND: o.backend } : {},
    );
    workers.push(ours);
    ours.detail = (await ours.read<{ detail: string }>()).detail;
    if (peerMissing) log(`PyTorch peer missing (${peerMissing}): measuring ours alone`);
    else {
      const threads = o.torchThreads ?? machine.cores;
      log(`starting PyTorch (${threads} threads) ...`);
      // GNU OpenMP's threads spin after each parallel region by default and starve OpenBLAS's
      // own threads: measured 3x slower generation and 1.3x slower training steps on 2 cores.
      const ompWait = Deno.env.get("OMP_WAIT_POLICY") ?? "PASSIVE";
      const peer = new Worker("torch", TORCH_PYTHON, torchArgs(o, w, threads), {
        OMP_WAIT_POLICY: ompWait,
      });
      workers.push(peer);
      const ready = await peer.read<{ torch: string; threads: number; deviceName?: string }>();
      peer.detail = o.device === "cuda"
        ? `torch ${ready.torch}, CUDA ${ready.deviceName}, eager fp32`
        : `torch ${ready.torch}, ${ready.threads} threads, OMP_WAIT_POLICY=${ompWait}`;
    }
    const command = (warm: boolean) =>
      o.mode === "train"
        ? "step"
        : `gen ${warm ? Math.min(GENERATE_WARMUP_TOKENS, o.newTokens) : o.newTokens}`;
    const bar = new Progress({
      label: `bench ${o.mode}`,
      total: (o.warmup + o.steps) * workers.length,
      write: log,
    });
    for (let i = 0; i < o.warmup; i++) {
      for (const wk of workers) {
        await wk.run(command(true));
        bar.update(bar.done + 1);
      }
    }
    const times = new Map<Worker, number[]>(workers.map((wk) => [wk, []]));
    const ownTicks = () =>
      workers.reduce((sum, wk) => sum + wk.cpuTicks(), processTicks("/proc/self/stat"));
    const own0 = ownTicks(), m0 = machineTicks();
    for (let i = 0; i < o.steps; i++) {
      // Alternate which side goes first, so neither always runs right after the other.
      const order = i % 2 ? [...workers].reverse() : workers;
      for (const wk of order) {
        const ms = await wk.run(command(false));
        times.get(wk)!.push(ms);
        bar.update(bar.done + 1);
      }
    }
    await bar.finish();
    const own1 = ownTicks(), m1 = machineTicks();
    // gpt2-medium-sft: the evaluation forward passes, timed the same way (after the steps).
    const forwardMs = new Map<Worker, number[]>(workers.map((wk) => [wk, []]));
    for (let i = 0; lengths && i < o.steps; i++) {
      for (const wk of i % 2 ? [...workers].reverse() : workers) {
        const ms = await wk.run("fwd");
        forwardMs.get(wk)!.push(ms);
        log(`  forward ${i + 1}/${o.steps} ${wk.name}: ${ms.toFixed(0)} ms`);
      }
    }
    machine.loadAvg[1] = loadAverage();
    const others = (m1.busy - m0.busy - (own1 - own0)) / (m1.total - m0.total);
    machine.otherCpuPct = Number.isFinite(others)
      ? Math.round(Math.max(0, others) * 1000) / 10
      : null;
    const side = (wk: Worker): SideResult => {
      const ms = times.get(wk)!, med = median(ms);
      return {
        msPerStep: ms,
        medianMs: med,
        tokensPerSec: w.tokensPerStep / (med / 1000),
        peakRssMB: wk.peakRssMB(),
        detail: wk.detail,
      };
    };
    const result: BenchResult = {
      options: o,
      workload: w,
      machine,
      ours: side(workers[0]),
      torch: workers[1] ? side(workers[1]) : null,
    };
    if (peerMissing) result.peerMissing = peerMissing;
    if (lengths) {
      result.sft = {
        lengths,
        oursForwardMs: median(forwardMs.get(workers[0])!),
        torchForwardMs: workers[1] ? median(forwardMs.get(workers[1])!) : null,
      };
    }
    return result;
  } finally {
    for (const wk of workers) await wk.quit().catch(() => {});
  }
}

if (import.meta.main) {
  const workerAt = Deno.args.indexOf("--worker");
  if (workerAt >= 0) {
    await ourWorker(JSON.parse(Deno.args[workerAt + 1]) as BenchOptions);
  } else {
    try {
      const o = parseBenchArgs(Deno.args);
      if (o.help) console.log(USAGE);
      else {
        const r = await runBench(o);
        if (o.json) console.log(JSON.stringify(toJsonSummary(r)));
        else {
          const j = toJsonSummary(r);
          console.log(
            j.ratio === null
              ? `ours ${fmt(j.oursMsPerStep)} ms/step; PyTorch peer missing (${j.peerMissing})`
              : `ours ${fmt(j.oursMsPerStep)} ms vs PyTorch ${fmt(j.torchMsPerStep!)} ms ` +
                `per ${j.mode === "generate" ? "generation" : "step"}: ours/torch ${
                  j.ratio.toFixed(2)
                }x time`,
          );
          const others = j.machine.otherCpuPct;
          if (others !== null && others > BUSY_OTHERS_PCT) {
            console.log(
              `warning: other processes used ${others}% of the cores during the timed steps: ` +
                "both sides slowed down, torch's threads (OpenMP) far more than ours; " +
                "rerun on an idle machine",
            );
          }
          console.log("");
          console.log(formatMarkdown(r));
        }
      }
    } catch (err) {
      if (!(err instanceof UserError)) throw err;
      console.error(`error: ${err.message}`);
      Deno.exit(1);
    }
  }
}
