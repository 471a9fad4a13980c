/**
 * Chapter 7's instruction data, ready to train on: the entries (a JSON file, or Stanford Alpaca
 * for exercise 7.3), the book's 85/10/5 split, tokenized datasets and batch loaders.
 *
 * @example
 * ```ts
 * import { loadInstructionSource, prepareInstructionData } from "./instruction_data.ts";
 * const { entries } = await loadInstructionSource("data/instruction-data.json");
 * const data = prepareInstructionData(entries, { batchSize: 8 }); // 935 / 55 / 110, 116 batches
 * ```
 * @module
 */
import {
  type InstructionEntry,
  loadInstructionFile,
  type PromptTemplate,
  splitData,
} from "./instruction.ts";
import { InstructionDataset } from "./instruction_dataset.ts";
import { InstructionLoader } from "./collate.ts";
import { downloadAlpaca } from "../io/download.ts";
import { UserError } from "../util/errors.ts";
import type { Tokenizer } from "./tokenizer.ts";

/** The chapter's data settings (chapter 7.2-7.4). */
export const INSTRUCTION_DATA_DEFAULTS = {
  /** The chapter's `allowed_max_length` (GPT-2's context length). */
  allowedMaxLength: 1024,
  batchSize: 8,
  /** Seed of the training loader's shuffling. */
  seed: 123,
} as const;

/** Exercise 7.3's advice for Stanford Alpaca on a small GPU (out of memory at 8 / 1024). */
export const ALPACA_ADVICE = { batchSize: 4, allowedMaxLength: 512 } as const;

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
    allowedMaxLength = INSTRUCTION_DATA_DEFAULTS.allowedMaxLength,
    maskInstruction = false,
    batchSize = INSTRUCTION_DATA_DEFAULTS.batchSize,
    seed = INSTRUCTION_DATA_DEFAULTS.seed,
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

/** The Alpaca split as the book computes it (exercise 7.3): 44,201 / 5,200 / 2,601. */
export function splitSizes(n: number): { train: number; test: number; val: number } {
  const { train, test, val } = splitData(new Array<0>(n).fill(0));
  return { train: train.length, test: test.length, val: val.length };
}
