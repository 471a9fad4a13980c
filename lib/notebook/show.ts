/**
 * Notebook display helpers: whether code runs in a Deno Jupyter kernel, and `show(value)`, which
 * puts a value in the cell's output (or prints it outside Jupyter).
 *
 * Cells end with `await show(x)` rather than a bare `x`: the Deno kernel sometimes reports a cell
 * idle before its last-expression result, and nbconvert then drops that result.
 */
import * as tf from "@tensorflow/tfjs";
import { UserError } from "../util/errors.ts";

/** `Deno.jupyter` inside a Jupyter kernel; undefined elsewhere (reading it throws there). */
export function jupyterKernel(): typeof Deno.jupyter | undefined {
  try {
    return Deno.jupyter;
  } catch {
    return undefined;
  }
}

/** True inside a Deno Jupyter kernel. */
export function inJupyter(): boolean {
  return jupyterKernel() !== undefined;
}

/**
 * Text for a value: strings as they are, tensors in tfjs' print layout (`verbose`: with dtype,
 * rank and shape; the default), the rest inspected. A tensor is first read with `await data()`:
 * GPU backends keep that copy on the CPU, so the synchronous read inside tfjs' `toString` is
 * served from it (WebGPU under Deno has no other; a bare `toString()` fails there).
 */
export async function formatValue(value: unknown, { verbose = true } = {}): Promise<string> {
  if (typeof value === "string") return value;
  if (value instanceof tf.Tensor) {
    await value.data();
    return value.toString(verbose);
  }
  return Deno.inspect(value, { colors: false, depth: 6, iterableLimit: 200 });
}

/**
 * Shows a value as plain text in the notebook output; prints it when not in Jupyter.
 *
 * @example
 * ```ts
 * await show(tf.tensor([[1, 2], [3, 4]]));
 * ```
 */
export async function show(value: unknown): Promise<void> {
  const kernel = jupyterKernel();
  const text = await formatValue(value);
  if (!kernel) {
    console.log(text);
    return;
  }
  await kernel.display({ "text/plain": text }, { raw: true });
}

/** The notebooks' run sizes (the settings of each live in lib/profiles.ts). */
export const PROFILE_NAMES = ["quick", "full", "smoke"] as const;
/** A run size. */
export type ProfileName = typeof PROFILE_NAMES[number];

/**
 * The run size the notebooks use, from `LLM_PROFILE`: `quick` (default: small, minutes on 2
 * cores), `full` (the book's) or `smoke` (a step or two, to check that every cell runs on a slow
 * device such as a software GPU).
 */
export function profile(): ProfileName {
  return parseProfile(Deno.env.get("LLM_PROFILE"));
}

/** `LLM_PROFILE`'s value checked; unset or empty means quick. */
export function parseProfile(value: string | undefined): ProfileName {
  if (!value) return "quick";
  if (!(PROFILE_NAMES as readonly string[]).includes(value)) {
    throw new UserError(`LLM_PROFILE must be quick, full or smoke (got "${value}")`);
  }
  return value as ProfileName;
}

/**
 * The values of a tensor as a plain array, read with `await data()` (GPU backends have no
 * synchronous read); the tensor is disposed. For cells that compute inside `tf.tidy` and show the
 * result: `await readValues(tf.tidy(() => tf.max(diff)))`.
 */
export async function readValues(t: tf.Tensor): Promise<number[]> {
  const values = Array.from(await t.data() as Float32Array | Int32Array);
  t.dispose();
  return values;
}
