/**
 * The notebooks' run sizes (env `LLM_PROFILE`): `quick` (small models, minutes on 2 cores; the
 * default), `full` (the book's models and data) and `smoke` (a gpt-tiny with context 32 for a
 * step or two: it checks that every cell runs end to end on a slow device such as a software GPU,
 * and learns nothing). The settings of each notebook live here,
 * so the first cell can say what each profile costs before anything long starts, and the
 * training cells read the same numbers.
 *
 * @example
 * ```ts
 * const { profile } = await setupNotebook("appendix-D"); // backend, profile table, how to switch
 * const s = APPENDIX_D[profile];
 * ```
 * @module
 */
import * as tf from "@tensorflow/tfjs";
import { type BackendInfo, describeBackend, initBackend } from "./backend.ts";
import { countParams, type GPTConfig, PRESETS, resolveConfig } from "./model/config.ts";
import { GPTModel } from "./model/gpt.ts";
import { type InstructionEntry, loadInstructionFile, splitData } from "./data/instruction.ts";
import { InstructionDataset } from "./data/instruction_dataset.ts";
import { pretrainingLoaders, type TextDataLoader } from "./data/text.ts";
import { AdamW } from "./train/adamw.ts";
import { trainStep } from "./train/train.ts";
import { formatDuration } from "./notebook/progress.ts";
import {
  profile as currentProfile,
  PROFILE_NAMES,
  type ProfileName,
  show,
} from "./notebook/show.ts";
import { cachedPretrained, loadBaseModel } from "./io/resolve.ts";

export type { ProfileName };
const PROFILES: readonly ProfileName[] = PROFILE_NAMES;

// ---------------------------------------------------------------------------------------------
// Each notebook's settings

/** Settings of appendix D.4's pretraining run. */
export interface PretrainPlan {
  config: GPTConfig;
  batchSize: number;
  numEpochs: number;
  /** Evaluate every this many steps (book: 5). */
  evalFreq: number;
  /** Only the first N characters of the text (default: all of it). */
  textChars?: number;
  /** Training share of the text (default 0.9, the book's). */
  trainRatio?: number;
  /** Tokens of the samples after each epoch and at the end (default: the book's 50 and 25). */
  sampleTokens?: number;
}

/**
 * Appendix D.4's run: the book's GPT-124M for 15 epochs, a tiny GPT for 8, or (smoke) 2 steps on
 * the first 800 characters with an evaluation after each, so the live chart gets two points.
 */
export const APPENDIX_D: Record<ProfileName, PretrainPlan> = {
  quick: {
    config: { ...PRESETS["gpt-tiny"], contextLength: 64 },
    batchSize: 2,
    numEpochs: 8,
    evalFreq: 5,
  },
  full: { config: PRESETS["gpt-124m-book"], batchSize: 2, numEpochs: 15, evalFreq: 5 },
  smoke: {
    config: { ...PRESETS["gpt-tiny"], contextLength: 32 },
    batchSize: 2,
    numEpochs: 1,
    evalFreq: 1,
    textChars: 800,
    trainRatio: 0.8,
    sampleTokens: 3,
  },
};

/** Appendix D.4's training and validation loaders under a profile. */
export function appendixDLoaders(
  text: string,
  p: ProfileName,
): { train: TextDataLoader; val: TextDataLoader } {
  const { config, batchSize, textChars, trainRatio } = APPENDIX_D[p];
  const contextLength = config.contextLength;
  return pretrainingLoaders(text.slice(0, textChars), { contextLength, batchSize, trainRatio });
}

/** Settings of an instruction-finetuning run. */
export interface FinetunePlan {
  /** The base model: a pretrained name, or a preset started from random weights. */
  weights: string;
  random: boolean;
  /** Q/K/V biases of a random preset (OpenAI's weights always have them). */
  qkvBias?: boolean;
  /** Context length of a random preset (default: the preset's). */
  contextLength?: number;
  /** Entries used: the first N of the data set (then split 85/10/5), or all. */
  entries?: number;
  /** Training / validation entries (appendix E trims the split itself). */
  trainEntries?: number;
  valEntries?: number;
  batchSize: number;
  numEpochs: number;
  lr: number;
  evalFreq: number;
  evalIter: number;
  /** Epochs of the LoRA run (chapter 7, exercise 7.4). */
  loraEpochs?: number;
  /** Test entries to answer (undefined: all) and their length. */
  testEntries?: number;
  maxNewTokens: number;
  /** Prompt of the sample after each epoch; "" for none (default: the first validation entry). */
  startContext?: string;
}

/** Smoke's finetuning: a random gpt-tiny with context 32, batches of 2-4, one epoch. */
const SMOKE_FINETUNE = {
  weights: "gpt-tiny",
  random: true,
  contextLength: 32,
  numEpochs: 1,
  lr: 2e-3,
  evalFreq: 1,
  evalIter: 1,
  maxNewTokens: 3,
  startContext: "",
} as const;

/** Appendix E's LoRA run (exercise 7.4): GPT-2 medium, or a random gpt-tiny on 160 entries. */
export const APPENDIX_E: Record<ProfileName, FinetunePlan> = {
  quick: {
    weights: "gpt-tiny",
    random: true,
    trainEntries: 160,
    valEntries: 40,
    batchSize: 8,
    numEpochs: 2,
    lr: 2e-3,
    evalFreq: 5,
    evalIter: 2,
    maxNewTokens: 20,
  },
  full: {
    weights: "gpt2-medium",
    random: false,
    batchSize: 8,
    numEpochs: 2,
    lr: 5e-5,
    evalFreq: 5,
    evalIter: 5,
    maxNewTokens: 20,
  },
  smoke: { ...SMOKE_FINETUNE, trainEntries: 4, valEntries: 2, batchSize: 2 },
};

/**
 * Appendix E.4's classifier, built to count its trainable parameters and show its layers: GPT-124M
 * with a 2-class head. Smoke builds a stand-in of one block and a 2-token vocabulary (the same
 * layers, so the same structure): GPT-124M's 147 MiB embedding exceeds the 128 MiB a software
 * GPU binds per tensor.
 */
export const APPENDIX_E_CLASSIFIER: Record<ProfileName, GPTConfig> = {
  quick: { ...PRESETS["gpt2-small"], qkvBias: true, dropRate: 0 },
  full: { ...PRESETS["gpt2-small"], qkvBias: true, dropRate: 0 },
  smoke: { ...PRESETS["gpt2-small"], qkvBias: true, dropRate: 0, nLayers: 1, vocabSize: 2 },
};

/**
 * Chapter 7's runs. Quick uses GPT-2 small when it is already downloaded (100 entries), else a
 * random gpt-tiny that needs more steps and a higher LR to learn the format (400 entries); quick
 * never downloads. Smoke: the first 10 entries (8 train, 1 test, 1 validation), 2 steps per run.
 */
export async function chapter07Plan(profile: ProfileName): Promise<FinetunePlan> {
  if (profile === "smoke") {
    return {
      ...SMOKE_FINETUNE,
      qkvBias: true,
      entries: 10,
      batchSize: 4,
      loraEpochs: 1,
      testEntries: 1,
    };
  }
  const smallCached = profile === "quick" && (await cachedPretrained("gpt2-small")) !== null;
  const common = { batchSize: 8, numEpochs: 2 };
  if (profile === "full") {
    return {
      ...common,
      weights: "gpt2-medium",
      random: false,
      lr: 5e-5,
      evalFreq: 5,
      evalIter: 5,
      loraEpochs: 2,
      maxNewTokens: 256,
    };
  }
  const quick = { ...common, loraEpochs: 1, testEntries: 10, maxNewTokens: 64 };
  return smallCached
    ? {
      ...quick,
      weights: "gpt2-small",
      random: false,
      entries: 100,
      lr: 5e-5,
      evalFreq: 5,
      evalIter: 1,
    }
    : {
      ...quick,
      weights: "gpt-tiny",
      random: true,
      qkvBias: true,
      entries: 400,
      lr: 2e-3,
      evalFreq: 10,
      evalIter: 2,
    };
}

/**
 * The plan's base model: a random preset (seed 123, dropout 0), or the pretrained weights
 * (downloaded once; `signal` cancels the download, keeping the partial file for next time).
 */
export async function planBaseModel(
  plan: FinetunePlan,
  { signal }: { signal?: AbortSignal } = {},
): Promise<GPTModel> {
  if (!plan.random) return (await loadBaseModel(plan.weights, { signal })).model;
  const config = resolveConfig(plan.weights, {
    dropRate: 0,
    qkvBias: plan.qkvBias ?? false,
    contextLength: plan.contextLength,
  });
  return new GPTModel(config, { seed: 123 });
}

// ---------------------------------------------------------------------------------------------
// What a profile costs

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
    `(estimate: 6 x parameters x tokens per step, at ${gflops(flops.small)} GFLOP/s for small ` +
    `models and ${gflops(flops.large)} GFLOP/s for large ones, measured here from ${flops.how}; ` +
    `evaluation and generation come on top)`,
  ].join("\n");
}

function gflops(flops: number): string {
  return (flops / 1e9).toFixed(flops < 10e9 ? 1 : 0);
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
