/**
 * Batching instruction data (chapter 7.3): the book's `custom_collate_fn` (pad, shift by one,
 * replace all but the first padding target by -100, optionally mask the instruction, truncate) and
 * an `InstructionLoader` that shuffles with a seeded generator and yields collated batches.
 *
 * @example
 * ```ts
 * import { customCollate } from "./collate.ts";
 * const { inputs, targets } = customCollate([[0, 1, 2, 3, 4], [5, 6], [7, 8, 9]]);
 * // inputs  [[0,1,2,3,4], [5,6,50256,50256,50256], [7,8,9,50256,50256]]
 * // targets [[1,2,3,4,50256], [6,50256,-100,-100,-100], [8,9,50256,-100,-100]]
 * inputs.dispose();
 * targets.dispose();
 * ```
 * @module
 */
import * as tf from "@tensorflow/tfjs";
import { DataLoader, type Dataset } from "./loader.ts";
import { END_OF_TEXT } from "./tokenizer.ts";
import type { InstructionItem } from "./instruction_dataset.ts";

/** A batch element: plain token ids, or ids with the prompt length (for instruction masking). */
export type CollateItem = readonly number[] | InstructionItem;

/** Options of `customCollate`, with the book's defaults. */
export interface CollateOptions {
  /** Token used to pad, and appended once as end-of-text (book: 50256). */
  padTokenId?: number;
  /** Target value the loss ignores (book: -100, PyTorch's cross_entropy default). */
  ignoreIndex?: number;
  /** Truncate inputs and targets to this many positions (book: none; 1024 in the chapter). */
  allowedMaxLength?: number | null;
  /** Exercise 7.2: also set the targets of the prompt part to `ignoreIndex` (default false). */
  maskInstruction?: boolean;
}

/** A collated batch as plain arrays (what `customCollate` turns into tensors). */
export interface CollatedArrays {
  /** [batch][time] input ids. */
  inputs: number[][];
  /** [batch][time] target ids (inputs shifted by one; ignored positions hold `ignoreIndex`). */
  targets: number[][];
  /** Items whose tokens did not all fit in `allowedMaxLength` (their ends were cut). */
  truncated: number;
  /** Target positions that count in the loss (not `ignoreIndex`). */
  targetTokens: number;
}

/** A collated batch: int32 tensors [batch, time] plus the same data as arrays. */
export interface CollatedBatch {
  /** Input ids, int32 [batch, time]. The caller disposes it. */
  inputs: tf.Tensor2D;
  /** Target ids, int32 [batch, time] (-100 where ignored). The caller disposes it. */
  targets: tf.Tensor2D;
  /** `inputs` as arrays. */
  inputRows: number[][];
  /** `targets` as arrays. */
  targetRows: number[][];
  /** Items whose tokens did not all fit in `allowedMaxLength` (their ends were cut). */
  truncated: number;
  /** Target positions that count in the loss (not `ignoreIndex`). */
  targetTokens: number;
}

function idsOf(item: CollateItem): readonly number[] {
  return Array.isArray(item) ? item : (item as InstructionItem).ids;
}

/** The book's collate function on plain arrays (no tensors); see `customCollate`. */
export function customCollateArrays(
  batch: readonly CollateItem[],
  {
    padTokenId = END_OF_TEXT,
    ignoreIndex = -100,
    allowedMaxLength = null,
    maskInstruction = false,
  }: CollateOptions = {},
): CollatedArrays {
  if (batch.length === 0) throw new RangeError("customCollate(): the batch is empty");
  if (allowedMaxLength !== null && !(Number.isInteger(allowedMaxLength) && allowedMaxLength > 0)) {
    throw new RangeError(
      `customCollate(): allowedMaxLength must be a positive integer (got ${allowedMaxLength})`,
    );
  }
  // Longest sequence + 1, for the end-of-text token appended to each item.
  let batchMaxLength = 0;
  for (const item of batch) batchMaxLength = Math.max(batchMaxLength, idsOf(item).length + 1);

  const inputs: number[][] = [];
  const targets: number[][] = [];
  let truncated = 0;
  let targetTokens = 0;
  for (const item of batch) {
    const ids = idsOf(item);
    // Append one end-of-text token, then pad to the batch's longest + 1.
    const padded = [...ids, padTokenId];
    while (padded.length < batchMaxLength) padded.push(padTokenId);
    let input = padded.slice(0, -1);
    let target = padded.slice(1);

    // Keep the first padding token in the targets (the model learns to stop) and ignore the rest.
    // Like the book's `targets == pad_token_id`, this matches the pad id anywhere in the row.
    let seenPad = false;
    for (let t = 0; t < target.length; t++) {
      if (target[t] !== padTokenId) continue;
      if (seenPad) target[t] = ignoreIndex;
      seenPad = true;
    }

    // Exercise 7.2: ignore the prompt's targets, `targets[:instruction_length-1] = -100`. (For a
    // length of 0, Python's `[:-1]` would mask all but the last; we mask nothing.)
    if (maskInstruction) {
      if (Array.isArray(item)) {
        throw new TypeError("customCollate(): maskInstruction needs items with instructionLength");
      }
      const instructionLength = (item as InstructionItem).instructionLength;
      const end = Math.min(Math.max(instructionLength - 1, 0), target.length);
      for (let t = 0; t < end; t++) target[t] = ignoreIndex;
    }

    if (allowedMaxLength !== null) {
      if (ids.length > allowedMaxLength) truncated++;
      input = input.slice(0, allowedMaxLength);
      target = target.slice(0, allowedMaxLength);
    }
    for (const t of target) if (t !== ignoreIndex) targetTokens++;
    inputs.push(input);
    targets.push(target);
  }
  return { inputs, targets, truncated, targetTokens };
}

function toInt32Tensor(rows: number[][]): tf.Tensor2D {
  const width = rows[0].length;
  const flat = new Int32Array(rows.length * width);
  rows.forEach((row, i) => flat.set(row, i * width));
  return tf.tensor2d(flat, [rows.length, width], "int32");
}

/**
 * The book's `custom_collate_fn`: append one end-of-text token to each item, pad to the batch's
 * longest + 1 with `padTokenId`, inputs = padded[:-1], targets = padded[1:]; in the targets keep
 * the first padding token and set later ones to `ignoreIndex`; with `maskInstruction`, set
 * `targets[:instructionLength-1]` to `ignoreIndex`; truncate both to `allowedMaxLength`. Returns
 * int32 tensors [batch, time] (dispose them) and the arrays.
 */
export function customCollate(
  batch: readonly CollateItem[],
  options: CollateOptions = {},
): CollatedBatch {
  const { inputs, targets, truncated, targetTokens } = customCollateArrays(batch, options);
  return {
    inputs: toInt32Tensor(inputs),
    targets: toInt32Tensor(targets),
    inputRows: inputs,
    targetRows: targets,
    truncated,
    targetTokens,
  };
}

/** Something indexable that holds items (an `InstructionDataset`, or a plain array). */
export type ItemSource = Dataset<CollateItem>;

/** Options of `InstructionLoader` (PyTorch DataLoader's, with the chapter's defaults). */
export interface InstructionLoaderOptions extends CollateOptions {
  /** Items per batch (book: 8). */
  batchSize?: number;
  /** Draw a new order every epoch (book: true for training, false for validation/test). */
  shuffle?: boolean;
  /** Drop the last, smaller batch (book: true for training). */
  dropLast?: boolean;
  /** Seed of the shuffling generator (default 123, the book's `torch.manual_seed(123)`). */
  seed?: number;
}

/**
 * The book's `DataLoader(dataset, batch_size, shuffle, drop_last, collate_fn=custom_collate_fn)`:
 * the shared DataLoader (./loader.ts) with `customCollate`. For an exact resume, save `state`
 * before an epoch starts; to continue, set it back and call `epoch(skip)`.
 */
export class InstructionLoader extends DataLoader<CollateItem, CollatedBatch> {
  readonly collateOptions: CollateOptions;
  /** Entries longer than `allowedMaxLength` tokens: they lose their ends in every epoch. */
  readonly truncatedEntries: number;

  constructor(
    source: ItemSource,
    {
      batchSize = 8,
      shuffle = false,
      dropLast = false,
      seed = 123,
      ...collateOptions
    }: InstructionLoaderOptions = {},
  ) {
    super(source, {
      batchSize,
      shuffle,
      dropLast,
      seed,
      collate: (items) => customCollate(items, collateOptions),
    });
    this.collateOptions = collateOptions;
    const max = collateOptions.allowedMaxLength ?? null;
    let truncated = 0;
    if (max !== null) {
      for (let i = 0; i < source.length; i++) if (idsOf(this.item(i)).length > max) truncated++;
    }
    this.truncatedEntries = truncated;
  }

  /** Number of items in the dataset. */
  get numItems(): number {
    return this.dataset.length;
  }

  /** Batches per epoch (`len(loader)`): 935 items, batch 8, dropLast -> 116. */
  get numBatches(): number {
    return this.length;
  }

  /** State of the shuffling generator (`state.rngState`). */
  get rngState(): number {
    return this.state.rngState;
  }
  set rngState(value: number) {
    this.state = { rngState: value };
  }
}
