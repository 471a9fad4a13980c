/**
 * Sliding-window text data (the book's `GPTDatasetV1` + `create_dataloader_v1`, chapter 2) and the
 * 90/10 train/validation split of appendix D.
 *
 * @example
 * ```ts
 * import { createDataloaderV1, trainValSplit } from "./text.ts";
 * const text = await Deno.readTextFile("data/the-verdict.txt");
 * const { trainText } = trainValSplit(text, 0.9);
 * const loader = createDataloaderV1(trainText, { batchSize: 2, maxLength: 256, stride: 256, seed: 123 });
 * loader.length; // 9 batches per epoch
 * for (const { inputs, targets } of loader) {
 *   // inputs, targets: int32 [2, 256]; the caller disposes them
 *   inputs.dispose();
 *   targets.dispose();
 * }
 * ```
 * @module
 */
import * as tf from "@tensorflow/tfjs";
import { UserError } from "../util/errors.ts";
import { DataLoader } from "./loader.ts";
import { gpt2Tokenizer, type Tokenizer } from "./tokenizer.ts";

/** Window options of `GPTDatasetV1` (the book's `max_length` and `stride`). */
export interface GPTDatasetV1Options {
  /** Tokens per window (the book: 256 = the context length). */
  maxLength?: number;
  /** Step between window starts (the book: 128 in chapter 2, 256 in appendix D). */
  stride?: number;
  /** Tokenizer (default GPT-2's; `<|endoftext|>` in the text becomes 50256). */
  tokenizer?: Tokenizer;
}

/**
 * Overlapping next-token windows over one token sequence, like the book's `GPTDatasetV1`:
 * for `i in range(0, len(ids) - maxLength, stride)`, input = ids[i : i+maxLength] and
 * target = ids[i+1 : i+maxLength+1].
 */
export class GPTDatasetV1 {
  /** The whole text's token ids. */
  readonly tokenIds: Int32Array;
  /** Start offset of every window, in order. */
  readonly starts: readonly number[];
  readonly maxLength: number;
  readonly stride: number;

  constructor(
    tokenIds: ArrayLike<number>,
    { maxLength = 256, stride = 128 }: GPTDatasetV1Options = {},
  ) {
    positiveInt("maxLength", maxLength);
    positiveInt("stride", stride);
    this.tokenIds = Int32Array.from(tokenIds);
    this.maxLength = maxLength;
    this.stride = stride;
    if (this.tokenIds.length <= maxLength) {
      throw new UserError(
        `text too short: one window of maxLength ${maxLength} needs at least ${
          maxLength + 1
        } tokens, ` +
          `found ${this.tokenIds.length}`,
      );
    }
    const starts: number[] = [];
    for (let i = 0; i < this.tokenIds.length - maxLength; i += stride) starts.push(i);
    this.starts = starts;
  }

  /** Tokenizes `text` (GPT-2 BPE by default) and builds the windows. */
  static fromText(text: string, options: GPTDatasetV1Options = {}): GPTDatasetV1 {
    return new GPTDatasetV1((options.tokenizer ?? gpt2Tokenizer).encode(text), options);
  }

  /** Number of windows (`len(dataset)`). */
  get length(): number {
    return this.starts.length;
  }

  /** Window `index`: input ids and the same ids shifted by one (views into `tokenIds`). */
  get(index: number): { input: Int32Array; target: Int32Array } {
    const s = this.starts[index];
    if (s === undefined) throw new RangeError(`window ${index} out of range [0, ${this.length})`);
    return {
      input: this.tokenIds.subarray(s, s + this.maxLength),
      target: this.tokenIds.subarray(s + 1, s + this.maxLength + 1),
    };
  }
}

/** Options of `createDataloaderV1`, with the book's defaults. */
export interface DataloaderV1Options extends GPTDatasetV1Options {
  /** Windows per batch (default 4). */
  batchSize?: number;
  /** Reshuffle the window order at the start of every epoch (default true). */
  shuffle?: boolean;
  /** Drop the last batch when it is smaller than batchSize (default true). */
  dropLast?: boolean;
  /** Seed of the shuffle (default 123, the book's `torch.manual_seed(123)`). */
  seed?: number;
}

/** One batch: int32 [batch, maxLength] tensors. The caller owns and disposes both. */
export interface TextBatch {
  inputs: tf.Tensor2D;
  targets: tf.Tensor2D;
}

/** A window: input ids and the same ids shifted by one. */
export interface TextWindow {
  input: Int32Array;
  target: Int32Array;
}

/** Stacks windows into one batch of int32 [n, maxLength] tensors. */
export function collateWindows(windows: readonly TextWindow[]): TextBatch {
  const n = windows.length, L = windows[0]?.input.length ?? 0;
  const inputs = new Int32Array(n * L), targets = new Int32Array(n * L);
  windows.forEach(({ input, target }, row) => {
    inputs.set(input, row * L);
    targets.set(target, row * L);
  });
  return {
    inputs: tf.tensor2d(inputs, [n, L], "int32"),
    targets: tf.tensor2d(targets, [n, L], "int32"),
  };
}

/**
 * Batches of windows: the shared DataLoader (./loader.ts) over a GPTDatasetV1, with the book's
 * `create_dataloader_v1` defaults (batch 4, shuffle, drop_last) and `numTokens`.
 */
export class TextDataLoader extends DataLoader<TextWindow, TextBatch> {
  declare readonly dataset: GPTDatasetV1;

  constructor(dataset: GPTDatasetV1, opts: DataloaderV1Options = {}) {
    const { batchSize = 4, shuffle = true, dropLast = true, seed = 123 } = opts;
    super(dataset, { batchSize, shuffle, dropLast, seed, collate: collateWindows });
    if (this.length === 0) {
      const needed = (batchSize - 1) * dataset.stride + dataset.maxLength + 1;
      throw new UserError(
        `text too short for one batch: ${dataset.length} window(s) of ${dataset.maxLength} tokens; ` +
          `batchSize ${batchSize} with dropLast needs ${needed} tokens, found ${dataset.tokenIds.length}`,
      );
    }
  }

  /** Input tokens served per epoch (what `tokens_seen` grows by in one epoch). */
  get numTokens(): number {
    const windows = this.dropLast ? this.length * this.batchSize : this.dataset.length;
    return windows * this.dataset.maxLength;
  }
}

/**
 * The book's `create_dataloader_v1(txt, batch_size=4, max_length=256, stride=128, shuffle=True,
 * drop_last=True)`: tokenizes the text and returns a loader of next-token windows.
 */
export function createDataloaderV1(text: string, opts: DataloaderV1Options = {}): TextDataLoader {
  return new TextDataLoader(GPTDatasetV1.fromText(text, opts), opts);
}

/** The two parts of a text split by characters. */
export interface TrainValSplit {
  trainText: string;
  valText: string;
  /** Characters (Unicode code points, like Python's `len`) in the training part. */
  splitIdx: number;
}

/**
 * Splits a text by characters like appendix D: `split_idx = int(train_ratio * len(text))`,
 * train = text[:split_idx], val = text[split_idx:]. Counts code points, as Python does.
 */
export function trainValSplit(text: string, trainRatio = 0.9): TrainValSplit {
  if (!(trainRatio > 0 && trainRatio < 1)) {
    throw new UserError(`trainRatio must be between 0 and 1 (got ${trainRatio})`);
  }
  // Fast path for text without surrogate pairs (UTF-16 units = code points).
  const chars = /[\uD800-\uDFFF]/.test(text) ? Array.from(text) : null;
  const len = chars ? chars.length : text.length;
  const splitIdx = Math.trunc(trainRatio * len);
  const trainText = chars ? chars.slice(0, splitIdx).join("") : text.slice(0, splitIdx);
  const valText = chars ? chars.slice(splitIdx).join("") : text.slice(splitIdx);
  return { trainText, valText, splitIdx };
}

function positiveInt(name: string, value: number): void {
  if (!Number.isInteger(value) || value <= 0) {
    throw new UserError(`${name} must be a positive integer (got ${value})`);
  }
}

/** Options of {@link pretrainingLoaders}, with the book's defaults (chapter 5.1.3). */
export interface PretrainingLoaderOptions {
  /** Window length and stride (the model's context length). */
  contextLength: number;
  /** Book: 2. */
  batchSize?: number;
  /** Seed of the training loader's shuffle (book: 123). */
  seed?: number;
  /** Share of the characters used for training (book: 0.9). */
  trainRatio?: number;
}

/**
 * The book's pretraining loaders: the text split 90/10 by characters, windows of `contextLength`
 * tokens with stride `contextLength`; training shuffled (seeded) and dropping the last partial
 * batch, validation in order and keeping it. Used by `llm pretrain` and appendix D.
 */
export function pretrainingLoaders(
  text: string,
  { contextLength, batchSize = 2, seed = 123, trainRatio = 0.9 }: PretrainingLoaderOptions,
): { train: TextDataLoader; val: TextDataLoader } {
  const { trainText, valText } = trainValSplit(text, trainRatio);
  const windows = { batchSize, maxLength: contextLength, stride: contextLength, seed };
  return {
    train: createDataloaderV1(trainText, { ...windows, shuffle: true, dropLast: true }),
    val: createDataloaderV1(valText, { ...windows, shuffle: false, dropLast: false }),
  };
}
