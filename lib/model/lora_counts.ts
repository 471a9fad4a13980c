/**
 * LoRA parameter counts from the config alone (exercise 7.4, appendix E), so that gpt2-medium
 * need not be built to know how many parameters its adapter has.
 * @module
 */
import { type GPTConfig, parameterShapes } from "./config.ts";
import { UserError } from "../util/errors.ts";
import { type LoraTargets, selectTargets } from "./lora.ts";

/** A linear layer's shape. */
export interface LinearShape {
  inDim: number;
  outDim: number;
  bias: boolean;
}

/** Options of the shape-only counts. */
export interface ShapeCountOptions {
  /** Chapter 6: the head is Linear(embDim, numClasses) with bias instead of [embDim, vocab]. */
  numClasses?: number;
}

/** Every linear layer of GPTModel(config) by name, from the config alone (nothing allocated). */
export function linearLayerShapes(
  config: GPTConfig,
  { numClasses }: ShapeCountOptions = {},
): Map<string, LinearShape> {
  const e = config.embDim, out = new Map<string, LinearShape>();
  for (let i = 0; i < config.nLayers; i++) {
    const p = `trf_blocks.${i}.`;
    for (const w of ["W_query", "W_key", "W_value"]) {
      out.set(`${p}att.${w}`, { inDim: e, outDim: e, bias: config.qkvBias });
    }
    out.set(`${p}att.out_proj`, { inDim: e, outDim: e, bias: true });
    out.set(`${p}ff.layers.0`, { inDim: e, outDim: 4 * e, bias: true });
    out.set(`${p}ff.layers.2`, { inDim: 4 * e, outDim: e, bias: true });
  }
  out.set(
    "out_head",
    numClasses === undefined
      ? { inDim: e, outDim: config.vocabSize, bias: false }
      : { inDim: e, outDim: numClasses, bias: true },
  );
  return out;
}

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
  opts: ShapeCountOptions & { rank: number; targets?: LoraTargets },
): LoraParamCounts {
  if (!Number.isInteger(opts.rank) || opts.rank <= 0) {
    throw new UserError(`LoRA rank must be a positive integer (got ${opts.rank})`);
  }
  const shapes = parameterShapes(config);
  if (opts.numClasses !== undefined) {
    shapes.set("out_head.weight", [config.embDim, opts.numClasses]);
    shapes.set("out_head.bias", [opts.numClasses]);
  }
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
