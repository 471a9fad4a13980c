/**
 * One torch-like DataLoader (`torch.utils.data.DataLoader(dataset, batch_size, shuffle, drop_last,
 * collate_fn)`) that the text windows, the instruction data and appendix A's toy data all use.
 *
 * Each epoch draws its order from the loader's own seeded generator (mulberry32: reproducible,
 * though not PyTorch's order). `state` saved before an epoch replays that epoch's order, so a run
 * resumes mid-epoch exactly: set `state` back and call `epoch(skip)` with the batches already done.
 * `peek(n)` gives the next epoch's first batches without moving the state (evaluation on the
 * training loader, or a look at a batch in a notebook).
 *
 * @example
 * ```ts
 * import { DataLoader } from "./loader.ts";
 * const loader = new DataLoader([1, 2, 3, 4, 5], {
 *   batchSize: 2, shuffle: true, dropLast: true, collate: (xs) => xs,
 * });
 * loader.length;         // 2
 * [...loader.peek(1)];   // the first batch of the next epoch, e.g. [[4, 1]]
 * [...loader.epoch()];   // that epoch: [[4, 1], [5, 3]]
 * ```
 * @module
 */
import { UserError } from "../util/errors.ts";
import { makeRng, type Rng, shuffleInPlace } from "../util/random.ts";

/** A map-style dataset: an array, or anything with `length` and `get(i)`. */
export type Dataset<T> = readonly T[] | { readonly length: number; get(i: number): T };

/** Options of a DataLoader, with PyTorch's defaults. */
export interface DataLoaderOptions<T, B> {
  /** Items per batch (default 1). */
  batchSize?: number;
  /** Draw a new order every epoch (default false: dataset order). */
  shuffle?: boolean;
  /** Drop the last batch when it is smaller than batchSize (default false). */
  dropLast?: boolean;
  /** Seed of the shuffling generator (default 123, the book's `torch.manual_seed(123)`). */
  seed?: number;
  /** Turns one batch's items into what the loader yields (PyTorch's `collate_fn`). */
  collate: (items: T[]) => B;
}

/** What a checkpoint saves to replay the loader's order. */
export interface LoaderState {
  /** The shuffle generator's state before the next epoch's order is drawn. */
  rngState: number;
}

/** Batches of a dataset; every `for...of` (or `epoch()`) is one epoch. */
export class DataLoader<T, B> implements Iterable<B> {
  readonly batchSize: number;
  readonly shuffle: boolean;
  readonly dropLast: boolean;
  readonly #collate: (items: T[]) => B;
  readonly #rng: Rng;

  constructor(readonly dataset: Dataset<T>, opts: DataLoaderOptions<T, B>) {
    const { batchSize = 1, shuffle = false, dropLast = false, seed = 123, collate } = opts;
    if (!(Number.isInteger(batchSize) && batchSize > 0)) {
      throw new UserError(`batchSize must be a positive integer (got ${batchSize})`);
    }
    this.batchSize = batchSize;
    this.shuffle = shuffle;
    this.dropLast = dropLast;
    this.#collate = collate;
    this.#rng = makeRng(seed);
  }

  /** Batches per epoch (`len(loader)`). */
  get length(): number {
    const n = this.dataset.length / this.batchSize;
    return this.dropLast ? Math.floor(n) : Math.ceil(n);
  }

  /** The shuffle state; set it back to replay an epoch's order. */
  get state(): LoaderState {
    return { rngState: this.#rng.state };
  }
  set state(s: LoaderState) {
    this.#rng.state = s.rngState;
  }

  /** Item `i` of the dataset. */
  item(i: number): T {
    const d = this.dataset;
    return isArray(d) ? d[i] : d.get(i);
  }

  /**
   * Draws the next epoch's order (advances the generator when shuffling): item indices grouped by
   * batch, the last group shorter or dropped as `dropLast` says.
   */
  nextEpochOrder(): number[][] {
    const order = Array.from({ length: this.dataset.length }, (_, i) => i);
    if (this.shuffle) shuffleInPlace(order, this.#rng);
    return Array.from(
      { length: this.length },
      (_, b) => order.slice(b * this.batchSize, (b + 1) * this.batchSize),
    );
  }

  /** The batch of the given item indices. */
  batch(indices: readonly number[]): B {
    return this.#collate(indices.map((i) => this.item(i)));
  }

  /**
   * One epoch of batches, starting at batch `skip` (to resume mid-epoch). The order is drawn when
   * `epoch()` is called; each batch is collated when it is reached.
   */
  epoch(skip = 0): Generator<B> {
    return this.#batches(this.nextEpochOrder(), skip, Infinity);
  }

  /**
   * The first `n` batches (all by default) of the next epoch, leaving the state as it was: the
   * epoch after a peek is the one the peek showed.
   */
  peek(n = this.length): Generator<B> {
    const saved = this.state;
    const groups = this.nextEpochOrder();
    this.state = saved;
    return this.#batches(groups, 0, n);
  }

  *#batches(groups: number[][], skip: number, n: number): Generator<B> {
    for (let i = skip; i < Math.min(groups.length, skip + n); i++) yield this.batch(groups[i]);
  }

  [Symbol.iterator](): Iterator<B> {
    return this.epoch();
  }
}

function isArray<T>(d: Dataset<T>): d is readonly T[] {
  return Array.isArray(d);
}
