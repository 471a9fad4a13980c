/**
 * A notebook's first cell: it picks the backend and shows it (on WebGPU the adapter and its
 * limits), the profile and how to switch, and what each profile's training runs cost on this
 * backend (steps, tokens per step, an estimate from a FLOP/s probe), before anything long starts.
 *
 * @example
 * ```ts
 * const { profile } = await setupNotebook("appendix-D");
 * ```
 * @module
 */
import * as tf from "@tensorflow/tfjs";
import { type BackendInfo, describeBackend, initBackend } from "./backend.ts";
import { countParams, type GPTConfig, PRESETS, resolveConfig } from "./model/config.ts";
import { GPTModel } from "./model/gpt.ts";
import { type InstructionEntry, loadInstructionFile, splitData } from "./data/instruction.ts";
import { InstructionDataset } from "./data/instruction_dataset.ts";
import { AdamW } from "./train/adamw.ts";
import { trainStep } from "./train/train.ts";
import { formatDuration } from "./notebook/progress.ts";
import { profile as currentProfile, PROFILE_NAMES, show } from "./notebook/show.ts";
import {
  APPENDIX_D,
  APPENDIX_E,
  appendixDLoaders,
  chapter07Plan,
  type FinetunePlan,
  type ProfileName,
} from "./profiles.ts";

const PROFILES: readonly ProfileName[] = PROFILE_NAMES;

/** One training run of a notebook. */
export interface RunCost {
  what: string;
  steps: number;
  /** Tokens per step (padded batches: their mean). */
  tokensPerStep: number;
  params: number;
}

/** Parameters of the probe model (gpt-tiny). */
const SMALL_PARAMS = countParams(PRESETS["gpt-tiny"]).totalParams;

const DATA = new URL("../data/", import.meta.url);

function gptConfig(plan: FinetunePlan): GPTConfig {
  const qkvBias = plan.weights.startsWith("gpt2-") ? true : undefined;
  return resolveConfig(plan.weights, { qkvBias, contextLength: plan.contextLength });
}

async function appendixDCost(p: ProfileName): Promise<RunCost[]> {
  const { config, batchSize, numEpochs } = APPENDIX_D[p];
  const text = await Deno.readTextFile(new URL("the-verdict.txt", DATA));
  const loader = appendixDLoaders(text, p).train;
  const ctx = config.contextLength;
  const model = p === "full" ? "GPT-124M" : "gpt-tiny";
  return [{
    what: `${model}, context ${ctx}, batch ${batchSize}, ${numEpochs} epoch(s)`,
    steps: loader.length * numEpochs,
    tokensPerStep: batchSize * ctx,
    params: countParams(config).totalParams,
  }];
}

/** Mean padded batch size in tokens, batching in data order. */
function meanBatchTokens(ds: InstructionDataset, batchSize: number, maxLength: number): number {
  const lengths = ds.items.map((it) => Math.min(it.ids.length, maxLength));
  let sum = 0, batches = 0;
  for (let i = 0; i + batchSize <= lengths.length; i += batchSize) {
    sum += batchSize * Math.max(...lengths.slice(i, i + batchSize));
    batches++;
  }
  return batches ? sum / batches : 0;
}

let instructionData: Promise<InstructionEntry[]> | undefined;

async function finetuneCost(plan: FinetunePlan, label: string, epochs: number): Promise<RunCost> {
  instructionData ??= loadInstructionFile(new URL("instruction-data.json", DATA).pathname);
  const data = await instructionData;
  const split = splitData(plan.entries ? data.slice(0, plan.entries) : data);
  const train = split.train.slice(0, plan.trainEntries ?? split.train.length);
  const config = gptConfig(plan);
  const ds = new InstructionDataset(train);
  const batches = Math.floor(train.length / plan.batchSize);
  return {
    what: `${label}: ${
      plan.random ? "random " : ""
    }${plan.weights}, ${train.length} entries, ${epochs} epoch(s)`,
    steps: batches * epochs,
    tokensPerStep: meanBatchTokens(ds, plan.batchSize, Math.min(1024, config.contextLength)),
    params: countParams(config).totalParams,
  };
}

/** The training runs of a notebook under each profile. */
export async function profileCosts(notebook: string): Promise<Record<ProfileName, RunCost[]>> {
  const out = {} as Record<ProfileName, RunCost[]>;
  for (const p of PROFILES) {
    if (notebook === "appendix-D") out[p] = await appendixDCost(p);
    else if (notebook === "appendix-E") {
      out[p] = [await finetuneCost(APPENDIX_E[p], "LoRA", APPENDIX_E[p].numEpochs)];
    } else if (notebook === "chapter-07") {
      const plan = await chapter07Plan(p);
      out[p] = [
        await finetuneCost(plan, "finetune", plan.numEpochs),
        await finetuneCost(plan, "LoRA", plan.loraEpochs ?? plan.numEpochs),
      ];
    } else out[p] = [];
  }
  return out;
}

/** Training FLOP/s of small and large models on this backend, and how they were measured. */
export interface TrainingFlops {
  small: number;
  large: number;
  /** How the rates were measured, for the table's footnote. */
  how: string;
}

/**
 * Training FLOP/s on this backend, counting 6 x parameters x tokens per step (the usual estimate
 * of a forward and backward pass): a small GPT step's rate (per-op overhead dominates it), and
 * half the rate of a 512x768x3072 matmul (what large models are made of; GPT-124M's training
 * step measured 0.45-0.7 of the BLAS rate on the project's machine). `cheap` (the smoke profile)
 * takes both from half the rate of one 256x768x768 matmul: a second on a software GPU, where the
 * full probe takes a minute or two.
 */
export async function probeTrainingFlops({ cheap = false } = {}): Promise<TrainingFlops> {
  if (cheap) {
    const rate = 0.5 * await matmulFlops(256, 768, 768, 2);
    return { small: rate, large: rate, how: "half the rate of a 256x768x768 matmul" };
  }
  const config = resolveConfig("gpt-tiny", { contextLength: 64, dropRate: 0 });
  const model = new GPTModel(config, { seed: 1 });
  const optimizer = new AdamW(model.namedParameters(), { lr: 1e-4 });
  const batch = {
    inputs: tf.randomUniform([2, 64], 0, config.vocabSize, "int32", 1) as tf.Tensor2D,
    targets: tf.randomUniform([2, 64], 0, config.vocabSize, "int32", 2) as tf.Tensor2D,
  };
  const step = () => trainStep(model, optimizer, batch, { lr: 1e-4 });
  const small = (6 * countParams(config).totalParams * 128) / await secondsPer(step, 2);
  tf.dispose([batch.inputs, batch.targets]);
  model.dispose();
  optimizer.dispose();
  const large = 0.5 * await matmulFlops(512, 768, 3072, 3);
  const how = "a small GPT step, and half the rate of a 512x768x3072 matmul for large ones";
  return { small, large: Math.max(small, large), how };
}

/** FLOP/s of an [m, k] x [k, n] matmul, read back each time, over `reps` calls. */
async function matmulFlops(m: number, k: number, n: number, reps: number): Promise<number> {
  const [a, b] = [tf.randomNormal([m, k]), tf.randomNormal([k, n])];
  const matmul = async () => {
    const c = tf.matMul(a, b);
    await c.data();
    c.dispose();
  };
  const flops = (2 * m * k * n) / await secondsPer(matmul, reps);
  tf.dispose([a, b]);
  return flops;
}

/** Seconds per call of `work`, after one untimed call. */
async function secondsPer(work: () => Promise<unknown>, reps: number): Promise<number> {
  await work();
  const t0 = performance.now();
  for (let i = 0; i < reps; i++) await work();
  return (performance.now() - t0) / 1000 / reps;
}

/** The table of runs, steps and estimated minutes, with the current profile marked. */
export function formatProfileCosts(
  costs: Record<ProfileName, RunCost[]>,
  current: ProfileName,
  flops: TrainingFlops,
): string {
  const rows = PROFILES.flatMap((p) =>
    costs[p].map((c) => {
      // Models up to 10x the probe run at its rate; larger ones at the matmul-based rate.
      const rate = c.params <= 10 * SMALL_PARAMS ? flops.small : flops.large;
      const seconds = (6 * c.params * c.tokensPerStep * c.steps) / rate;
      const mark = p === current ? "*" : " ";
      return `${(p + mark).padEnd(7)} ${c.what.padEnd(58)} ${String(c.steps).padStart(5)} ` +
        `${Math.round(c.tokensPerStep).toString().padStart(8)}  ~${formatDuration(seconds)}`;
    })
  );
  if (rows.length === 0) return "";
  return [
    `${"profile".padEnd(7)} ${"training run".padEnd(58)} ${"steps".padStart(5)} ${
      "tok/step".padStart(8)
    }  estimate`,
    ...rows,
    `(estimate: 6 x parameters x tokens per step, at ${rates(flops)}, measured here from ` +
    `${flops.how}; evaluation and generation come on top)`,
  ].join("\n");
}

function rates({ small, large }: TrainingFlops): string {
  const gflops = (flops: number) => `${(flops / 1e9).toFixed(flops < 10e9 ? 1 : 0)} GFLOP/s`;
  return small === large
    ? `${gflops(small)} for every model`
    : `${gflops(small)} for small models and ${gflops(large)} for large ones`;
}

/** How to switch profiles, for the first cell. */
export function profileHelp(current: ProfileName): string {
  const other = current === "quick" ? "full" : "quick";
  return `LLM_PROFILE=${current}${Deno.env.get("LLM_PROFILE") ? "" : " (the default)"}. ` +
    `Profiles: quick (small models, minutes on 2 CPU cores; the default), full (the book's ` +
    `models and data), smoke (a step or two of a tiny GPT: checks that every cell runs on a ` +
    `slow device such as a software GPU, learns nothing).\n` +
    `To run the ${other} profile, set it before the kernel starts and restart the kernel:\n` +
    `  jupyter:  LLM_PROFILE=${other} jupyter lab   (or: LLM_PROFILE=${other} deno task notebooks)\n` +
    `  VS Code:  start VS Code from a shell with LLM_PROFILE=${other} set (code .), then Restart`;
}

/** The first cell of a notebook: picks the backend, shows it, the profile and what each costs. */
export async function setupNotebook(
  notebook: string,
): Promise<{ backend: BackendInfo; profile: ProfileName }> {
  const backend = await initBackend({ log: false });
  const profile = currentProfile();
  const costs = await profileCosts(notebook);
  const hasRuns = PROFILES.some((p) => costs[p].length > 0);
  const table = hasRuns
    ? formatProfileCosts(costs, profile, await probeTrainingFlops({ cheap: profile === "smoke" }))
    : "This notebook trains nothing long: every profile runs the same cells, in seconds.";
  await show([describeBackend(backend), profileHelp(profile), table].filter(Boolean).join("\n\n"));
  return { backend, profile };
}
