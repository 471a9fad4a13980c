/**
 * A small seeded pseudo-random number generator (mulberry32) for reproducible shuffling. Its whole
 * state is one 32-bit integer, so a checkpoint can save and restore it exactly.
 *
 * @example
 * ```ts
 * import { makeRng, shuffleInPlace } from "./random.ts";
 * const rng = makeRng(123);
 * const order = shuffleInPlace([0, 1, 2, 3, 4], rng);
 * const saved = rng.state; // later: rng.state = saved replays the same numbers
 * ```
 * @module
 */

/** A seeded generator of uniform numbers in [0, 1). */
export interface Rng {
  /** The next number in [0, 1). */
  next(): number;
  /** The next integer in [0, n). */
  nextInt(n: number): number;
  /** The generator's state (an unsigned 32-bit integer): save it and set it back to replay. */
  state: number;
}

/** Makes a mulberry32 generator from an integer seed (the same seed gives the same numbers). */
export function makeRng(seed: number): Rng {
  let s = seed >>> 0;
  const next = (): number => {
    // mulberry32 (Tommy Ettinger): one 32-bit add, then two multiply-xorshift rounds.
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return {
    next,
    nextInt: (n: number) => Math.floor(next() * n),
    get state() {
      return s;
    },
    set state(value: number) {
      s = value >>> 0;
    },
  };
}

/** Shuffles an array in place (Fisher-Yates) with the given generator and returns it. */
export function shuffleInPlace<T>(arr: T[], rng: Rng): T[] {
  for (let i = arr.length - 1; i > 0; i--) {
    const j = rng.nextInt(i + 1);
    const tmp = arr[i];
    arr[i] = arr[j];
    arr[j] = tmp;
  }
  return arr;
}
