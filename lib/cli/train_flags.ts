/** Flags beyond the book that `pretrain` and `finetune` share (see lib/train/run_extras.ts). */
import type { TrainingExtras } from "../train/run_extras.ts";
import { defineFlags, type Flags } from "./args.ts";

/** The flag specs, with the book's behaviour as every default. */
export const EXTRA_FLAGS = defineFlags({
  "grad-accum": {
    type: "int",
    positive: true,
    default: 1,
    help: "sum the gradients of N micro-batches per optimizer step (batch N x --batch-size)",
  },
  "no-decay-bias-norm": {
    type: "boolean",
    default: false,
    help: "nanoGPT's decay groups: weight decay on matrices only, not biases or LayerNorm",
  },
  "save-best": {
    type: "boolean",
    default: false,
    help: "keep the weights of the lowest validation loss in DIR/best/",
  },
  "early-stop-patience": {
    type: "int",
    positive: true,
    help: "stop after N evaluations without a lower validation loss",
  },
  "log-every": {
    type: "int",
    default: 0,
    help: 'also write a metrics.jsonl row ("kind": "step") every N optimizer steps; 0 = none',
  },
});

/** The parsed flags as TrainingExtras. */
export function extrasFromFlags(f: Flags<typeof EXTRA_FLAGS>): TrainingExtras {
  return {
    gradAccum: f["grad-accum"],
    noDecayBiasNorm: f["no-decay-bias-norm"],
    saveBest: f["save-best"],
    earlyStopPatience: f["early-stop-patience"],
    logEvery: f["log-every"],
  };
}
