/**
 * A run folder (`--out DIR`): metrics.jsonl (one JSON object per evaluation), lr.svg, loss.svg,
 * and the training checkpoint in DIR/checkpoint. Shared by `pretrain` and `finetune`.
 */
import { join } from "node:path";
import { UserError } from "../util/errors.ts";
import { exists, writeTextAtomic } from "../util/fs.ts";
import { type LossHistory, lossPlot, lrPlot, saveSvg } from "../notebook/plot.ts";
import type { EvalRecord, TrainHistory } from "./train.ts";

export const CHECKPOINT_DIR = "checkpoint";

/** The loss plot's series: epochs seen as the fraction of epochs done at each evaluation. */
export function lossHistory(h: TrainHistory, batchesPerEpoch: number): LossHistory {
  return {
    epochsSeen: h.evals.map((e) => (e.step + 1) / batchesPerEpoch),
    tokensSeen: h.evals.map((e) => e.tokensSeen),
    trainLosses: h.evals.map((e) => e.trainLoss),
    valLosses: h.evals.map((e) => e.valLoss),
  };
}

/** Rewrites metrics.jsonl from all evaluations so far (atomic, so a crash keeps the old file). */
export function writeMetrics(dir: string, evals: EvalRecord[]): Promise<void> {
  return writeTextAtomic(
    join(dir, "metrics.jsonl"),
    evals.map((e) => JSON.stringify(e) + "\n").join(""),
  );
}

/** Writes lr.svg and loss.svg. */
export async function writePlots(
  dir: string,
  h: TrainHistory,
  batchesPerEpoch: number,
): Promise<void> {
  if (h.trackLrs.length) await saveSvg(join(dir, "lr.svg"), lrPlot(h.trackLrs));
  if (h.evals.length) {
    await saveSvg(join(dir, "loss.svg"), lossPlot(lossHistory(h, batchesPerEpoch)));
  }
}

/** Refuses to start a fresh run over an existing one (nothing is overwritten). */
export async function assertFreshRunDir(dir: string): Promise<void> {
  if (await exists(join(dir, CHECKPOINT_DIR)) || await exists(join(dir, "metrics.jsonl"))) {
    throw new UserError(
      `--out ${dir} already holds a run; continue it with --resume ${dir} or choose another --out`,
    );
  }
}

/** Accepts a run folder or its checkpoint folder. */
export async function resolveResumeDir(dir: string): Promise<string> {
  if (await exists(join(dir, CHECKPOINT_DIR, "trainer_state.json"))) {
    return join(dir, CHECKPOINT_DIR);
  }
  if (await exists(join(dir, "trainer_state.json"))) return dir;
  throw new UserError(
    `--resume ${dir}: no training checkpoint there (expected ${dir}/${CHECKPOINT_DIR}/trainer_state.json)`,
  );
}

/** An AbortSignal fired by Ctrl-C (SIGINT), and a function that removes the handler. */
export function interruptSignal(
  log: (s: string) => void = console.error,
): { signal: AbortSignal; release(): void } {
  const ctrl = new AbortController();
  const handler = () => {
    if (ctrl.signal.aborted) Deno.exit(130); // a second Ctrl-C: leave now
    log(
      "\ninterrupted: finishing this step and saving a checkpoint (Ctrl-C again to quit at once)",
    );
    ctrl.abort();
  };
  try {
    Deno.addSignalListener("SIGINT", handler);
  } catch {
    // Not supported (e.g. Windows without a console): training simply runs to the end.
  }
  return {
    signal: ctrl.signal,
    release: () => {
      try {
        Deno.removeSignalListener("SIGINT", handler);
      } catch { /* never added */ }
    },
  };
}
