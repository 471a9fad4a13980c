/**
 * Flags that `pretrain` and `finetune` share: the run folder's (evaluation, checkpoints, resume),
 * those beyond the book (see lib/train/run_extras.ts), and the dry run or the run they start.
 */
import type { TrainingExtras } from "../train/run_extras.ts";
import type { GPTModel } from "../model/gpt.ts";
import type { RunPlace } from "../train/run_steps.ts";
import { ExitCode, UserError } from "../util/errors.ts";
import { defineFlags, type Flags } from "./args.ts";

/** The run folder's flags, with a command's evaluation defaults. */
export function runFlags(d: { evalFreq: number; evalIter: number }) {
  return defineFlags({
    "eval-freq": {
      type: "int",
      positive: true,
      default: d.evalFreq,
      help: "evaluate every N steps",
    },
    "eval-iter": {
      type: "int",
      positive: true,
      default: d.evalIter,
      help: "batches per evaluation",
    },
    "checkpoint-every": {
      type: "int",
      positive: true,
      help: "also save a checkpoint every N steps",
    },
    resume: {
      type: "string",
      help: "continue the run saved in this folder (--out defaults to it)",
    },
  });
}

/** The parsed run folder flags as run options (signals stop the run with a checkpoint). */
export function runFromFlags(
  f: Flags<ReturnType<typeof runFlags>> & { out?: string },
): RunPlace & { evalFreq: number; evalIter: number } {
  return {
    out: f.out,
    resume: f.resume,
    evalFreq: f["eval-freq"],
    evalIter: f["eval-iter"],
    checkpointEvery: f["checkpoint-every"],
    handleSignals: true,
  };
}

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

/**
 * `--dry-run`: prints the plan as one JSON line; else the run, which needs `--out` (or
 * `--resume`) and exits with its code (130/143 when a signal stopped it).
 */
export async function planOrRun<O extends { out?: string; resume?: string }>(
  command: string,
  dryRun: boolean,
  options: O,
  plan: (o: O) => Promise<unknown>,
  run: (o: O) => Promise<{ model: GPTModel; exitCode: number }>,
): Promise<void> {
  if (dryRun) {
    console.log(JSON.stringify(await plan(options)));
    return;
  }
  if (!options.out && !options.resume) {
    throw new UserError(`${command}: --out DIR is required (or use --dry-run)`);
  }
  const r = await run(options);
  r.model.dispose();
  if (r.exitCode) throw new ExitCode(r.exitCode);
}
