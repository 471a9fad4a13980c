/**
 * The notebooks' run sizes (env `LLM_PROFILE`): `quick` (small models, minutes on 2 cores; the
 * default), `full` (the book's models and data) and `smoke` (a gpt-tiny with context 32 for a
 * step or two: it checks that every cell runs end to end on a slow device such as a software GPU,
 * and learns nothing). The settings of each notebook live here, so the first cell
 * (lib/notebook_setup.ts) can say what each profile costs before anything long starts, and the
 * training cells read the same numbers.
 *
 * @example
 * ```ts
 * const { profile } = await setupNotebook("appendix-D"); // from lib/notebook_setup.ts
 * const s = APPENDIX_D[profile];
 * ```
 * @module
 */
import { type GPTConfig, PRESETS, resolveConfig } from "./model/config.ts";
import { GPTModel } from "./model/gpt.ts";
import { pretrainingLoaders, type TextDataLoader } from "./data/text.ts";
import type { ProfileName } from "./notebook/show.ts";
import { cachedPretrained, loadBaseModel } from "./io/resolve.ts";

export type { ProfileName };

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
