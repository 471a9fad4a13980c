/**
 * Training options beyond the book that `pretrain` and `finetune` share, each off by default so
 * that the book's runs stay exact: gradient accumulation, nanoGPT's weight-decay groups, the
 * best checkpoint, early stopping and per-step metrics rows.
 */
import { join } from "node:path";
import type { GPTModel } from "../model/gpt.ts";
import { loraLayers } from "../model/lora.ts";
import { saveAdapter } from "../io/adapter.ts";
import { paramsToTensors, saveCheckpoint } from "../io/weights.ts";
import { UserError } from "../util/errors.ts";
import { type AdamWOptions, decayMatricesOnly } from "./adamw.ts";
import type { TrainOptions } from "./train.ts";

/** The folder of the best checkpoint in a run folder. */
export const BEST_DIR = "best";

/** The shared options (library names; the CLI flags are in brackets). */
export interface TrainingExtras {
  /** Micro-batches per optimizer step (`--grad-accum`, default 1). */
  gradAccum?: number;
  /** Decay only rank >= 2 tensors, nanoGPT's rule (`--no-decay-bias-norm`, default false). */
  noDecayBiasNorm?: boolean;
  /** Keep the weights of the lowest validation loss in `best/` (`--save-best`). */
  saveBest?: boolean;
  /** Stop after N evaluations without a lower validation loss (`--early-stop-patience`). */
  earlyStopPatience?: number;
  /** A metrics.jsonl row every N optimizer steps (`--log-every`, default 0: none). */
  logEvery?: number;
}

/** One clear line for values out of range. */
export function checkExtras(x: TrainingExtras, command: string): void {
  const int = (v: number | undefined, min: number, flag: string) => {
    if (v !== undefined && !(Number.isInteger(v) && v >= min)) {
      throw new UserError(`${command}: ${flag} must be an integer >= ${min} (got ${v})`);
    }
  };
  int(x.gradAccum, 1, "--grad-accum");
  int(x.earlyStopPatience, 1, "--early-stop-patience");
  int(x.logEvery, 0, "--log-every");
}

/** The result-changing ones, for the run's settings (compared on resume). */
export function extrasSettings(
  x: TrainingExtras,
): { gradAccum: number; noDecayBiasNorm: boolean; earlyStopPatience: number | null } {
  return {
    gradAccum: x.gradAccum ?? 1,
    noDecayBiasNorm: x.noDecayBiasNorm ?? false,
    earlyStopPatience: x.earlyStopPatience ?? null,
  };
}

/** AdamW's decay option. */
export function decayOption(x: TrainingExtras): Pick<AdamWOptions, "decay"> {
  return x.noDecayBiasNorm ? { decay: decayMatricesOnly } : {};
}

/** The trainModel (and finetuneModel) options the extras set. */
export type LoopExtras = Pick<
  TrainOptions,
  "gradientAccumulationSteps" | "logEvery" | "earlyStopPatience" | "onBest"
>;

/**
 * trainModel's options for the extras: accumulation, logging, patience, and with `saveBest` an
 * `onBest` that writes `<dir>/best/`: the model in the HF layout, or for a LoRA model its adapter.
 */
export function loopExtras(
  x: TrainingExtras,
  model: GPTModel,
  dir: string,
  baseModel: string,
): LoopExtras {
  const out: LoopExtras = {
    gradientAccumulationSteps: x.gradAccum ?? 1,
    logEvery: x.logEvery ?? 0,
    earlyStopPatience: x.earlyStopPatience,
  };
  if (x.saveBest) {
    out.onBest = async () => {
      const best = join(dir, BEST_DIR);
      if (loraLayers(model).size > 0) await saveAdapter(best, model, { baseModel });
      else await saveCheckpoint(best, model.config, await paramsToTensors(model));
    };
  }
  return out;
}

/** The closing line about the best checkpoint and early stopping, or null. */
export function extrasSummary(
  x: TrainingExtras,
  state: { best?: { step: number; valLoss: number }; earlyStopped?: boolean },
  dir: string,
): string | null {
  const parts: string[] = [];
  if (state.earlyStopped) parts.push("stopped early");
  if (x.saveBest && state.best) {
    parts.push(
      `best validation loss ${state.best.valLoss.toFixed(3)} at step ${state.best.step} in ` +
        join(dir, BEST_DIR),
    );
  }
  return parts.length ? parts.join("; ") : null;
}
