/**
 * Instruction finetuning (chapter 7), the steps that `deno task llm finetune` and
 * notebooks/chapter-07.ipynb share: load the data (a JSON file, or Stanford Alpaca for exercise
 * 7.3), tokenize, split and batch it, load the pretrained base model, finetune with the book's
 * settings, optionally with LoRA (exercise 7.4), and generate the test-set responses that
 * chapter 7.8 scores.
 *
 * @example
 * ```ts
 * import {
 *   finetuneModel, generateTestResponses, loadBaseModel, loadInstructionSource,
 *   prepareInstructionData,
 * } from "./finetune.ts";
 * const { entries } = await loadInstructionSource("data/instruction-data.json");
 * const data = prepareInstructionData(entries, { batchSize: 8 }); // 935 / 55 / 110, 116 batches
 * const { model } = await loadBaseModel("gpt2-medium");          // downloads once (1.4 GB)
 * await finetuneModel(model, data);                               // AdamW 5e-5, 2 epochs
 * await generateTestResponses(model, data.test, { outPath: "build/test-responses.json" });
 * ```
 * @module
 */
import { join } from "node:path";
import { type GPTConfig, PRESETS } from "../model/config.ts";
import {
  extractResponse,
  formatInput,
  type InstructionEntry,
  loadInstructionFile,
  type PromptTemplate,
  splitData,
} from "../data/instruction.ts";
import { InstructionDataset } from "../data/instruction_dataset.ts";
import { InstructionLoader } from "../data/collate.ts";
import {
  ALPACA_URL,
  defaultCacheDir,
  downloadAlpaca,
  downloadPretrained,
  PRETRAINED,
} from "../io/download.ts";
import { UserError } from "../util/errors.ts";
import { downloadRepo, parseRepoId } from "../io/hub.ts";
import { exists, writeTextAtomic } from "../util/fs.ts";
import { generate } from "../model/generate.ts";
import type { ResponseEntry } from "../judge.ts";
import {
  countTrainable,
  freezeAll,
  type LoraScaling,
  type LoraTargets,
  replaceLinearWithLora,
} from "../model/lora.ts";
import { GPTModel } from "../model/gpt.ts";
import { checkSafetensorsFile } from "../io/safetensors.ts";
import { decode, encode, END_OF_TEXT, type Tokenizer } from "../data/tokenizer.ts";
import { AdamW } from "./adamw.ts";
import { warmupSteps as warmupStepsOf } from "./schedule.ts";
import {
  type EvalRecord,
  stepsPerEpoch,
  type TrainerState,
  type TrainHistory,
  trainModel,
  type TrainOptions,
  type TrainResult,
} from "./train.ts";
import { loadCheckpoint, loadWeightsInto, readHfConfig } from "../io/weights.ts";

/** The book's finetuning settings (chapter 7.6). */
export const FINETUNE_DEFAULTS = {
  /** AdamW learning rate, constant (the book's `train_model_simple` has no schedule). */
  lr: 5e-5,
  weightDecay: 0.1,
  numEpochs: 2,
  batchSize: 8,
  /** Evaluate every 5 steps ... */
  evalFreq: 5,
  /** ... over 5 batches of the training and the validation set. */
  evalIter: 5,
  /** The chapter's `allowed_max_length` (GPT-2's context length). */
  allowedMaxLength: 1024,
  seed: 123,
  /** Tokens generated per test response (chapter 7.7). */
  maxNewTokens: 256,
} as const;

/** Exercise 7.3's advice for Stanford Alpaca on a small GPU (out of memory at 8 / 1024). */
export const ALPACA_ADVICE = { batchSize: 4, allowedMaxLength: 512 } as const;

// ---------------------------------------------------------------------------------------------
// Data

/** Where the instruction data came from, and the entries. */
export interface InstructionSource {
  /** The file read (the cached alpaca_data.json for "alpaca"). */
  path: string;
  entries: InstructionEntry[];
  /** True for the Stanford Alpaca data (exercise 7.3). */
  alpaca: boolean;
  /** Settings suggested for this data on a small GPU (Alpaca only). */
  advice?: { batchSize: number; allowedMaxLength: number };
}

/** Options of `loadInstructionSource`. */
export interface InstructionSourceOptions {
  /** Download cache for "alpaca" (default: env LLM_CACHE_DIR, else data/cache). */
  cacheDir?: string;
  /** Where notes go (default console.error). */
  log?: (line: string) => void;
}

/**
 * Loads instruction entries from a JSON file, or, for `"alpaca"`, from Stanford Alpaca's
 * `alpaca_data.json` (downloaded once into the cache; the CC BY-NC 4.0 note is printed, and the
 * book's advice for small GPUs: batch size 4, allowedMaxLength 512). Bad files are one-line
 * UserErrors naming the entry and field.
 */
export async function loadInstructionSource(
  data: string,
  { cacheDir, log = console.error }: InstructionSourceOptions = {},
): Promise<InstructionSource> {
  if (data !== "alpaca") {
    return { path: data, entries: await loadInstructionFile(data), alpaca: false };
  }
  const path = await downloadAlpaca({ cacheDir }); // prints the license note
  const entries = await loadInstructionFile(path);
  log(
    `Alpaca: ${entries.length.toLocaleString("en-US")} entries, about 50x the chapter's data and ` +
      `longer; on a small GPU use batch size ${ALPACA_ADVICE.batchSize} and allowedMaxLength ` +
      `${ALPACA_ADVICE.allowedMaxLength} (lower to 2/1 and 256 if memory still runs out)`,
  );
  return { path, entries, alpaca: true, advice: { ...ALPACA_ADVICE } };
}

/** Options of `prepareInstructionData`, with the chapter's defaults. */
export interface PrepareOptions {
  /** Prompt style (default "alpaca"; "phi3" is exercise 7.1). */
  template?: PromptTemplate;
  /** Truncate batches to this many tokens (default 1024); null: never truncate. */
  allowedMaxLength?: number | null;
  /** Exercise 7.2: ignore the prompt's tokens in the loss (default false). */
  maskInstruction?: boolean;
  /** Items per batch (default 8). */
  batchSize?: number;
  /** Seed of the training loader's shuffling (default 123). */
  seed?: number;
  tokenizer?: Tokenizer;
  /** Where the truncation warning goes (default console.error). */
  log?: (line: string) => void;
}

/** Split, tokenized and batched instruction data. */
export interface PreparedInstructionData {
  /** The book's split in file order: 85% train, 10% test, the rest validation. */
  train: InstructionEntry[];
  val: InstructionEntry[];
  test: InstructionEntry[];
  trainDataset: InstructionDataset;
  valDataset: InstructionDataset;
  testDataset: InstructionDataset;
  /** Shuffled each epoch, last smaller batch dropped. */
  trainLoader: InstructionLoader;
  /** In order, every entry. */
  valLoader: InstructionLoader;
  testLoader: InstructionLoader;
  /** Entries (of all three splits) longer than `allowedMaxLength` tokens: their ends are cut. */
  truncated: number;
  /** Tokens of the longest entry (prompt + response, before the end-of-text token). */
  maxLength: number;
  /** The options used. */
  template: PromptTemplate;
  allowedMaxLength: number | null;
  batchSize: number;
}

/**
 * Chapter 7.2-7.4: split the entries (85/10/5), tokenize each split with `InstructionDataset`,
 * and batch them with `customCollate` (train: shuffle + dropLast; val/test: neither). Warns, with
 * the count, about entries longer than `allowedMaxLength`. Throws a UserError when the training
 * split does not fill one batch.
 */
export function prepareInstructionData(
  entries: readonly InstructionEntry[],
  {
    template = "alpaca",
    allowedMaxLength = FINETUNE_DEFAULTS.allowedMaxLength,
    maskInstruction = false,
    batchSize = FINETUNE_DEFAULTS.batchSize,
    seed = FINETUNE_DEFAULTS.seed,
    tokenizer,
    log = console.error,
  }: PrepareOptions = {},
): PreparedInstructionData {
  if (entries.length === 0) throw new UserError("the dataset has no entries");
  if (!(Number.isInteger(batchSize) && batchSize > 0)) {
    throw new UserError(`batch size must be a positive integer (got ${batchSize})`);
  }
  if (allowedMaxLength !== null && !(Number.isInteger(allowedMaxLength) && allowedMaxLength > 0)) {
    throw new UserError(
      `allowedMaxLength must be a positive integer (got ${allowedMaxLength})`,
    );
  }
  const { train, test, val } = splitData(entries);
  if (train.length < batchSize) {
    throw new UserError(
      `the training split has ${train.length} entries (85% of ${entries.length}), fewer than one ` +
        `batch of ${batchSize}: use more data or a smaller batch size`,
    );
  }
  const ds = (part: InstructionEntry[]) => new InstructionDataset(part, { template, tokenizer });
  const trainDataset = ds(train), valDataset = ds(val), testDataset = ds(test);
  const collate = { allowedMaxLength, maskInstruction };
  const trainLoader = new InstructionLoader(trainDataset, {
    ...collate,
    batchSize,
    shuffle: true,
    dropLast: true,
    seed,
  });
  const evalLoader = (d: InstructionDataset) =>
    new InstructionLoader(d, { ...collate, batchSize, shuffle: false, dropLast: false, seed });
  const valLoader = evalLoader(valDataset), testLoader = evalLoader(testDataset);

  let truncated = 0, maxLength = 0;
  for (const d of [trainDataset, valDataset, testDataset]) {
    maxLength = Math.max(maxLength, d.maxLength());
    if (allowedMaxLength !== null) {
      for (const item of d) if (item.ids.length > allowedMaxLength) truncated++;
    }
  }
  if (truncated > 0) {
    log(
      `warning: ${truncated} of ${entries.length} entries are longer than allowedMaxLength ` +
        `${allowedMaxLength} tokens (longest ${maxLength}): their ends are cut off in training`,
    );
  }
  if (val.length === 0) log("warning: the validation split is empty (validation loss is NaN)");
  if (test.length === 0) log("warning: the test split is empty (no responses to generate)");
  return {
    train: [...train],
    val: [...val],
    test: [...test],
    trainDataset,
    valDataset,
    testDataset,
    trainLoader,
    valLoader,
    testLoader,
    truncated,
    maxLength,
    template,
    allowedMaxLength,
    batchSize,
  };
}

// ---------------------------------------------------------------------------------------------
// The base model

/** Options of `loadBaseModel`. */
export interface BaseModelOptions {
  /** Dropout of the finetuned model (book: 0). */
  dropRate?: number;
  /** Download cache for pretrained names (default: env LLM_CACHE_DIR, else data/cache). */
  cacheDir?: string;
}

/** A loaded base model and where its weights came from. */
export interface BaseModel {
  model: GPTModel;
  /** The checkpoint folder read. */
  dir: string;
}

function unknownWeights(weights: string): UserError {
  return new UserError(
    `--weights "${weights}" is neither a folder nor a pretrained name nor a Hugging Face repo ` +
      `id (ORG/NAME or hf:NAME); valid names: ${Object.keys(PRETRAINED).join(", ")}`,
  );
}

/**
 * The config of `weights` without loading the tensors: a pretrained name's preset (with the
 * book's qkvBias true for OpenAI's weights), or a checkpoint folder's config.json.
 */
export async function baseModelConfig(weights: string): Promise<GPTConfig> {
  if (await exists(weights)) return await readHfConfig(weights);
  if (weights in PRETRAINED) return { ...PRESETS[weights], qkvBias: true };
  const repo = parseRepoId(weights);
  if (repo) return await readHfConfig(await downloadRepo(repo, { configOnly: true }));
  throw unknownWeights(weights);
}

/**
 * The cache folder of a pretrained name when its files are there and complete (config.json and
 * a whole model.safetensors), else null. Never downloads: notebooks use it to decide offline.
 */
export async function cachedPretrained(
  name: string,
  { cacheDir = defaultCacheDir() }: { cacheDir?: string } = {},
): Promise<string | null> {
  if (!(name in PRETRAINED)) throw unknownWeights(name);
  const dir = join(cacheDir, name);
  if (!(await exists(join(dir, "config.json")))) return null;
  return (await checkSafetensorsFile(join(dir, "model.safetensors"))).status === "ok" ? dir : null;
}

/**
 * The checkpoint folder of `weights`: the folder itself, for a pretrained name or a Hub repo id
 * (`ORG/NAME`, `hf:NAME`, a GPT-2) the Python Hugging Face cache's snapshot or our cache
 * folder, downloading the files the first time (a truncated cached file is resumed).
 */
export async function resolveWeights(
  weights: string,
  { cacheDir }: { cacheDir?: string } = {},
): Promise<string> {
  if (await exists(weights)) return weights;
  const repo = weights in PRETRAINED ? undefined : parseRepoId(weights);
  if (repo) return await downloadRepo(repo, { cacheDir });
  if (!(weights in PRETRAINED)) throw unknownWeights(weights);
  return await downloadPretrained(weights, { cacheDir });
}

/**
 * Chapter 7.5: a GPTModel with pretrained weights. `weights` is one of gpt2-small, gpt2-medium
 * (the book's choice), gpt2-large, gpt2-xl (downloaded once into the cache, then read from it),
 * or a checkpoint folder (config.json + model.safetensors). OpenAI's weights carry the Q/K/V
 * biases (qkvBias true, as the book sets for them); dropout is 0 for finetuning, as in the book.
 */
export async function loadBaseModel(
  weights: string,
  { dropRate = 0, cacheDir }: BaseModelOptions = {},
): Promise<BaseModel> {
  const dir = await resolveWeights(weights, { cacheDir });
  const { config, tensors } = await loadCheckpoint(dir);
  const model = new GPTModel({ ...config, dropRate });
  loadWeightsInto(model, tensors);
  return { model, dir };
}

/** The three counts of exercise 7.4, and the wrapped layers. */
export interface LoraCounts {
  /** Trainable parameters of the loaded model. */
  before: number;
  /** After freezing every parameter: 0. */
  afterFreeze: number;
  /** After `replaceLinearWithLora`: the LoRA A/B matrices only. */
  lora: number;
  layers: string[];
}

/** Options of `applyLora`. */
export interface ApplyLoraOptions {
  /** Book: 16. */
  rank: number;
  /** Book: 16. */
  alpha: number;
  /** "alpha/rank" (default, the corrected book repository), "alpha" (the printed book), "alpha/sqrt(rank)" (rsLoRA). */
  scaling?: LoraScaling;
  /** Which linear layers get LoRA (default "all", as the book). */
  targets?: LoraTargets;
  /** Dropout on the LoRA branch (default 0, as the book). */
  dropout?: number;
  seed?: number;
}

/**
 * Exercise 7.4's steps: count the trainable parameters, freeze all (count again: 0), wrap every
 * Linear in LoRA (count the new trainable ones). Create the optimizer afterwards.
 */
export function applyLora(model: GPTModel, opts: ApplyLoraOptions): LoraCounts {
  const before = countTrainable(model);
  freezeAll(model);
  const afterFreeze = countTrainable(model);
  const layers = replaceLinearWithLora(model, opts);
  return { before, afterFreeze, lora: countTrainable(model), layers };
}

/** The book's printout of the counts. */
export function formatLoraCounts(c: LoraCounts): string {
  const n = (x: number) => x.toLocaleString("en-US");
  return [
    `Total trainable parameters before: ${n(c.before)}`,
    `Total trainable parameters after: ${n(c.afterFreeze)}`,
    `Total trainable LoRA parameters: ${n(c.lora)}`,
  ].join("\n");
}

// ---------------------------------------------------------------------------------------------
// Finetuning

/** Options of `finetuneModel`: the book's settings by default. */
export interface FinetuneOptions {
  /** Peak (and, without a schedule, constant) learning rate (book: 5e-5). */
  lr?: number;
  /** AdamW weight decay (book: 0.1). */
  weightDecay?: number;
  numEpochs?: number;
  evalFreq?: number;
  evalIter?: number;
  /** Share of the steps spent warming up (book: 0, no warmup). */
  warmupFraction?: number;
  /** LR of step 0 when warming up (default lr / 100). */
  initialLr?: number;
  /** LR the cosine decays to after warmup (default lr: no decay). */
  minLr?: number;
  /** Clip the gradient norm (book: null, no clipping). */
  maxGradNorm?: number | null;
  /** Micro-batches per optimizer step (default 1, the book). */
  gradientAccumulationSteps?: number;
  /** A per-step metrics row every N steps (default 0: none). */
  logEvery?: number;
  /** Stop after N evaluations without a lower validation loss. */
  earlyStopPatience?: number;
  /** Called at each new lowest validation loss (save best/ here). */
  onBest?: TrainOptions["onBest"];
  /** An optimizer over the model's trainable parameters (default: a new AdamW). */
  optimizer?: AdamW;
  /** Prompt of the sample after each epoch (default: the first validation entry, as the book). */
  startContext?: string;
  resumeFrom?: TrainerState;
  signal?: AbortSignal;
  onEval?: (record: EvalRecord, history: TrainHistory) => void | Promise<void>;
  onCheckpoint?: (state: TrainerState) => void | Promise<void>;
  checkpointEvery?: number;
  log?: (line: string) => void;
  progressEverySeconds?: number;
}

/** What `finetuneModel` returns. */
export interface FinetuneResult extends TrainResult {
  optimizer: AdamW;
  /** Wall-clock training time. */
  seconds: number;
  warmupSteps: number;
  totalSteps: number;
}

/**
 * Chapter 7.6: `trainModel` with the book's `train_model_simple` settings: AdamW (lr 5e-5,
 * weight decay 0.1), 2 epochs, evaluation every 5 steps over 5 batches, constant LR (no warmup,
 * minLr = peakLr), no gradient clipping, and a greedy sample of the first validation prompt after
 * each epoch. Only the model's trainable parameters are updated (LoRA: the A/B matrices).
 */
export async function finetuneModel(
  model: GPTModel,
  data: Pick<PreparedInstructionData, "trainLoader" | "valLoader" | "val" | "template">,
  o: FinetuneOptions = {},
): Promise<FinetuneResult> {
  const lr = o.lr ?? FINETUNE_DEFAULTS.lr;
  const numEpochs = o.numEpochs ?? FINETUNE_DEFAULTS.numEpochs;
  const totalSteps = stepsPerEpoch(data.trainLoader.length, o.gradientAccumulationSteps) *
    numEpochs;
  const warmup = warmupStepsOf(totalSteps, o.warmupFraction ?? 0);
  const optimizer = o.optimizer ??
    new AdamW(model.namedParameters(), {
      lr,
      weightDecay: o.weightDecay ?? FINETUNE_DEFAULTS.weightDecay,
    });
  const start = performance.now();
  const result = await trainModel(model, {
    trainLoader: data.trainLoader,
    valLoader: data.valLoader,
    optimizer,
    numEpochs,
    evalFreq: o.evalFreq ?? FINETUNE_DEFAULTS.evalFreq,
    evalIter: o.evalIter ?? FINETUNE_DEFAULTS.evalIter,
    startContext: o.startContext ??
      (data.val.length ? formatInput(data.val[0], { template: data.template }) : undefined),
    peakLr: lr,
    initialLr: warmup > 0 ? o.initialLr ?? lr / 100 : lr,
    minLr: o.minLr ?? lr,
    warmupSteps: warmup,
    maxGradNorm: o.maxGradNorm ?? null,
    gradientAccumulationSteps: o.gradientAccumulationSteps,
    logEvery: o.logEvery,
    earlyStopPatience: o.earlyStopPatience,
    onBest: o.onBest,
    resumeFrom: o.resumeFrom,
    signal: o.signal,
    onEval: o.onEval,
    onCheckpoint: o.onCheckpoint,
    checkpointEvery: o.checkpointEvery,
    log: o.log,
    progressEverySeconds: o.progressEverySeconds,
  });
  return {
    ...result,
    optimizer,
    seconds: (performance.now() - start) / 1000,
    warmupSteps: warmup,
    totalSteps,
  };
}

// ---------------------------------------------------------------------------------------------
// Test responses (chapter 7.7)

/** An entry with the finetuned model's answer. */
export type EntryWithResponse = ResponseEntry & { model_response: string };

/** Options of `generateTestResponses`, with the book's defaults. */
export interface TestResponseOptions {
  template?: PromptTemplate;
  /** Book: 256. */
  maxNewTokens?: number;
  /** Stop at this token (book: 50256, `<|endoftext|>`). */
  eosId?: number;
  /** Write the entries here (JSON, indent 4 as the book's json.dump), atomically. */
  outPath?: string;
  /** Called after each entry. */
  onProgress?: (done: number, total: number, entry: EntryWithResponse) => void;
}

/**
 * Chapter 7.7: for each entry, greedy generation from `formatInput(entry)` until end-of-text (at
 * most 256 tokens), then the book's extraction (drop the prompt and "### Response:", trim).
 * Returns copies of the entries with `model_response`; with `outPath` also writes them
 * (the book's `instruction-data-with-response.json`).
 */
export async function generateTestResponses(
  model: GPTModel,
  entries: readonly InstructionEntry[],
  {
    template = "alpaca",
    maxNewTokens = FINETUNE_DEFAULTS.maxNewTokens,
    eosId = END_OF_TEXT,
    outPath,
    onProgress,
  }: TestResponseOptions = {},
): Promise<EntryWithResponse[]> {
  const out: EntryWithResponse[] = [];
  for (const entry of entries) {
    const inputText = formatInput(entry, { template });
    const prompt = encode(inputText);
    const ids = await generate(model, prompt, { maxNewTokens, temperature: 0, eosId });
    const generated = decode([...prompt, ...ids]);
    const withResponse = {
      ...entry,
      model_response: extractResponse(generated, inputText, { template }),
    };
    out.push(withResponse);
    onProgress?.(out.length, entries.length, withResponse);
    // Let Ctrl-C handlers and notebook output run between entries.
    await new Promise((r) => setTimeout(r, 0));
  }
  if (outPath) await writeTextAtomic(outPath, JSON.stringify(out, null, 4) + "\n");
  return out;
}

/** File name of the responses in a run folder. */
export const TEST_RESPONSES_FILE = "test-responses.json";

/** `DIR/test-responses.json`. */
export function testResponsesPath(dir: string): string {
  return join(dir, TEST_RESPONSES_FILE);
}

/** The Alpaca split as the book computes it (exercise 7.3): 44,201 / 5,200 / 2,601. */
export function splitSizes(n: number): { train: number; test: number; val: number } {
  const { train, test, val } = splitData(new Array<0>(n).fill(0));
  return { train: train.length, test: test.length, val: val.length };
}

export { ALPACA_URL };
