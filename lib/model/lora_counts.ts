/**
 * LoRA parameter counts from the config alone (exercise 7.4, appendix E), so that gpt2-medium
 * need not be built to know how many parameters its adapter has.
 * @module
 */
import { type GPTConfig, linearLayerShapes, parameterShapes, type ShapeOptions } from "./config.ts";
import { UserError } from "../util/errors.ts";
import { type LoraTargets, selectTargets } from "./lora.ts";

/** What `countLoraParams` returns. */
export interface LoraParamCounts {
  /** Parameters of the base model (all trainable before freezing). */
  baseParams: number;
  /** Parameters the LoRA layers add (the only trainable ones after freeze + replace). */
  loraParams: number;
  /** Number of wrapped layers. */
  layers: number;
}

/**
 * The book's parameter counts of exercise 7.4 / appendix E from the config alone, so that
 * gpt2-medium (1.6 GB of float32) need not be built: each wrapped Linear(in, out) adds
 * rank * (in + out) parameters.
 */
export function countLoraParams(
  config: GPTConfig,
  opts: ShapeOptions & { rank: number; targets?: LoraTargets },
): LoraParamCounts {
  if (!Number.isInteger(opts.rank) || opts.rank <= 0) {
    throw new UserError(`LoRA rank must be a positive integer (got ${opts.rank})`);
  }
  const shapes = parameterShapes(config, opts);
  let baseParams = 0;
  for (const s of shapes.values()) baseParams += s.reduce((a, b) => a * b, 1);
  const layers = linearLayerShapes(config, opts);
  const picked = selectTargets([...layers.keys()], opts.targets ?? "all");
  let loraParams = 0;
  for (const name of picked) {
    const l = layers.get(name)!;
    loraParams += opts.rank * (l.inDim + l.outDim);
  }
  return { baseParams, loraParams, layers: picked.length };
}
