/**
 * The run folder (`--out DIR`) that `pretrain`, `finetune` and the notebooks share: run.json (the
 * settings), metrics.jsonl (one JSON object per evaluation), lr.svg, loss.svg, and the training
 * checkpoint in DIR/checkpoint. `RunFolder.open` takes an exclusive lock, refuses to start over
 * a run that can be continued, recovers whatever a kill left (a save cut short, no checkpoint
 * yet), checks the free space, and turns SIGINT/SIGTERM into a clean stop with a checkpoint.
 *
 * @example
 * ```ts
 * const run = await RunFolder.open({ dir: "runs/a", settings, resume: undefined });
 * try {
 *   const resumeFrom = await run.restore(model, optimizer);
 *   const result = await trainModel(model, { ...opts, resumeFrom, ...run.hooks(model, optimizer) });
 *   await run.finish(result, trainLoader.length);
 * } finally {
 *   await run.close();
 * }
 * ```
 */
import { basename, dirname, join, resolve } from "node:path";
import { describeFsError, UserError } from "../util/errors.ts";
import { exists, writeTextAtomic } from "../util/fs.ts";
import { type FolderLock, lockFolder } from "../util/lock.ts";
import { type Interrupt, interruptSignal, STOP_SIGNALS } from "../util/interrupt.ts";
import { type LossHistory, lossPlot, lrPlot, saveSvg } from "../notebook/plot.ts";
import type { GPTModel } from "../model/gpt.ts";
import type { AdamW } from "./adamw.ts";
import {
  findCheckpoint,
  type FoundCheckpoint,
  loadTrainingCheckpoint,
  readTrainerState,
  recoverCheckpoint,
  saveTrainingCheckpoint,
} from "./checkpoint.ts";
import { assertSameSettings, type RunSettings } from "./settings.ts";
import type { EvalRecord, StepRecord, TrainerState, TrainHistory, TrainOptions } from "./train.ts";

export const CHECKPOINT_DIR = "checkpoint";
export const METRICS_FILE = "metrics.jsonl";
export const RUN_FILE = "run.json";

/** The loss plot's series: epochs seen as the fraction of epochs done at each evaluation. */
export function lossHistory(h: TrainHistory, batchesPerEpoch: number): LossHistory {
  return {
    epochsSeen: h.evals.map((e) => (e.step + 1) / batchesPerEpoch),
    tokensSeen: h.evals.map((e) => e.tokensSeen),
    trainLosses: h.evals.map((e) => e.trainLoss),
    valLosses: h.evals.map((e) => e.valLoss),
  };
}

/**
 * Rewrites metrics.jsonl from all evaluations so far (atomic, so a crash keeps the old file),
 * with the per-step rows (`"kind": "step"`, from `--log-every`) in step order, each after the
 * evaluation of the same step.
 */
export function writeMetrics(
  dir: string,
  evals: EvalRecord[],
  steps: StepRecord[] = [],
): Promise<void> {
  const rows: { step: number; row: object }[] = [
    ...evals.map((row) => ({ step: row.step, row })),
    ...steps.map((row) => ({ step: row.step + 0.5, row })),
  ].sort((a, b) => a.step - b.step);
  return writeTextAtomic(
    join(dir, METRICS_FILE),
    rows.map((r) => JSON.stringify(r.row) + "\n").join(""),
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

/** Options of `RunFolder.open`. */
export interface RunFolderOptions {
  /** The run folder (`--out`); default: the folder `resume` names. */
  dir?: string;
  /** Continue the run saved here: a run folder or its checkpoint folder (`--resume`). */
  resume?: string;
  /** The settings that change the result (see settings.ts); compared on resume. */
  settings: RunSettings;
  /** Stop on SIGINT/SIGTERM, saving a checkpoint (the CLI: true; notebooks: false). */
  handleSignals?: boolean;
  /** The caller's own stop signal (a notebook's). */
  signal?: AbortSignal;
  /** Where one-line notes go (default console.error). */
  log?: (line: string) => void;
  /** Free bytes on the folder's disk (default: `df`; null when unknown). Tests inject one. */
  freeBytes?: (dir: string) => Promise<number | null>;
}

/** The callbacks `trainModel` takes from a run folder. */
export type RunHooks = Required<Pick<TrainOptions, "signal" | "onEval" | "onCheckpoint">>;

/** Bytes of one training checkpoint: all weights, plus AdamW's two moments of the trainable ones. */
export function checkpointBytes(model: GPTModel): number {
  return 4 * model.numParams() + 8 * model.numParams({ trainableOnly: true });
}

async function dfFreeBytes(dir: string): Promise<number | null> {
  try {
    const out = await new Deno.Command("df", {
      args: ["-Pk", dir],
      stdout: "piped",
      stderr: "null",
    })
      .output();
    const kb = Number(new TextDecoder().decode(out.stdout).trim().split("\n")[1]?.split(/\s+/)[3]);
    return out.success && Number.isFinite(kb) ? kb * 1024 : null;
  } catch {
    return null;
  }
}

/** Where `--resume X` points: the run folder and the checkpoint folder inside it. */
function resumeTarget(resume: string): { runDir: string; ckptDir: string } {
  const isCkpt = basename(resume) === CHECKPOINT_DIR;
  return isCkpt
    ? { runDir: dirname(resume), ckptDir: resume }
    : { runDir: resume, ckptDir: join(resume, CHECKPOINT_DIR) };
}

/** A run folder, locked for this process. See the module's example. */
export class RunFolder {
  /** The checkpoint the run continues from (null: it starts at step 0). */
  resumeFrom: FoundCheckpoint | null = null;
  #note = "";
  #saved: number | null = null;
  #closed = false;

  private constructor(
    readonly dir: string,
    readonly settings: RunSettings,
    private readonly lock: FolderLock,
    private readonly interrupt: Interrupt,
    private readonly log: (line: string) => void,
    private readonly freeBytes: (dir: string) => Promise<number | null>,
  ) {}

  /** DIR/checkpoint. */
  get checkpointDir(): string {
    return join(this.dir, CHECKPOINT_DIR);
  }

  /** Stops the training loop: SIGINT/SIGTERM (with handleSignals) or the caller's signal. */
  get signal(): AbortSignal {
    return this.interrupt.signal;
  }

  /** 0 for a run that was not stopped by an OS signal, else 130 (SIGINT) or 143 (SIGTERM). */
  get exitCode(): number {
    return this.interrupt.by ? STOP_SIGNALS[this.interrupt.by] : 0;
  }

  /**
   * Locks the folder and checks it: a fresh run refuses a folder holding a checkpoint; a resumed
   * one finds the newest complete checkpoint (recovering a save cut short). Writes run.json.
   */
  static async open(o: RunFolderOptions): Promise<RunFolder> {
    const log = o.log ?? console.error;
    const target = o.resume ? resumeTarget(o.resume) : null;
    const dir = o.dir ?? target?.runDir;
    if (!dir) throw new UserError("a run needs --out DIR (or --resume DIR)");
    if (target) {
      const stat = await Deno.stat(target.runDir).catch(() => null);
      if (!stat) throw new UserError(`--resume ${o.resume}: no such folder`);
      if (!stat.isDirectory) throw new UserError(`--resume ${o.resume}: not a folder`);
    }
    const lock = await lockFolder(dir, { log, what: "run folder" }).catch((err) => {
      throw describeFsError(err, `cannot create the run folder ${dir}`);
    });
    const interrupt = interruptSignal({ log, os: o.handleSignals ?? false, parent: o.signal });
    const run = new RunFolder(dir, o.settings, lock, interrupt, log, o.freeBytes ?? dfFreeBytes);
    try {
      await run.#probeWritable();
      const sameFolder = target !== null && resolve(target.runDir) === resolve(dir);
      if (!sameFolder) await run.#claimFresh();
      if (target) await run.#findResume(o.resume!, target, sameFolder);
      await writeTextAtomic(
        join(dir, RUN_FILE),
        JSON.stringify({ settings: o.settings, started: new Date().toISOString() }, null, 2) + "\n",
      );
    } catch (err) {
      await run.close();
      throw err;
    }
    return run;
  }

  /** A read-only folder or a full disk is found now, not after hours of training. */
  async #probeWritable(): Promise<void> {
    const probe = join(this.dir, `.probe.${Deno.pid}`);
    try {
      await writeTextAtomic(probe, "ok\n");
      await Deno.remove(probe);
    } catch (err) {
      throw describeFsError(err, `cannot write in the run folder ${this.dir}`);
    }
  }

  /** A fresh run: refuse a folder holding a run that can be continued; clear one that cannot. */
  async #claimFresh(): Promise<void> {
    const found = await recoverCheckpoint(this.checkpointDir);
    if (found) {
      throw new UserError(
        `--out ${this.dir} already holds a run (checkpoint at step ${found.step}); continue it ` +
          `with --resume ${this.dir} or choose another --out`,
      );
    }
    if (await exists(join(this.dir, METRICS_FILE)) || await exists(join(this.dir, RUN_FILE))) {
      this.log(
        `note: ${this.dir} holds a run that stopped before its first checkpoint; ` +
          "nothing there can be continued, so this run starts afresh over it",
      );
      for (const f of [METRICS_FILE, "lr.svg", "loss.svg"]) {
        await Deno.remove(join(this.dir, f)).catch(() => {});
      }
    }
  }

  async #findResume(
    resume: string,
    target: { runDir: string; ckptDir: string },
    sameFolder: boolean,
  ): Promise<void> {
    // Only the owner of a folder may repair it; another run's folder is only read.
    const found = sameFolder
      ? await recoverCheckpoint(target.ckptDir)
      : await findCheckpoint(target.ckptDir);
    if (found) {
      // Refuse a changed setting now, before the backend starts and the weights load.
      assertSameSettings((await readTrainerState(found.path)).settings, this.settings, resume);
      this.resumeFrom = found;
      if ("recoveredFrom" in found && found.recoveredFrom) {
        this.#note = ` (recovered from ${found.recoveredFrom}: the newest complete checkpoint)`;
      }
      return;
    }
    const runFile = join(target.runDir, RUN_FILE);
    if (!(await exists(runFile)) && !(await exists(join(target.runDir, METRICS_FILE)))) {
      throw new UserError(
        `--resume ${resume}: no training checkpoint there (expected ${target.ckptDir}/trainer_state.json)`,
      );
    }
    if (await exists(runFile)) {
      const saved = JSON.parse(await Deno.readTextFile(runFile)).settings ?? {};
      assertSameSettings(saved, this.settings, resume);
    }
    this.log(
      `note: ${resume} holds no checkpoint yet (its run stopped before the first save); ` +
        "starting from step 0",
    );
  }

  /**
   * Loads the resumed checkpoint into the model and optimizer (built with the same config) and
   * returns the trainer state, after checking every result-changing setting; undefined for a
   * fresh run. Prints the one line saying where the run continues.
   */
  async restore(
    model: GPTModel,
    optimizer: AdamW,
    totalSteps?: number,
  ): Promise<TrainerState | undefined> {
    if (!this.resumeFrom) return undefined;
    const { path } = this.resumeFrom;
    const file = await loadTrainingCheckpoint(path, model, optimizer);
    assertSameSettings(file.settings, this.settings, path);
    this.#saved = file.trainer.step;
    const of = totalSteps !== undefined ? `/${totalSteps}` : "";
    this.log(`resuming at step ${file.trainer.step}${of} from ${path}${this.#note}`);
    return file.trainer;
  }

  /** Saves a training checkpoint; a full disk or a read-only folder is one clear error. */
  async save(model: GPTModel, optimizer: AdamW, state: TrainerState): Promise<void> {
    try {
      await saveTrainingCheckpoint(this.checkpointDir, model, optimizer, state, this.settings);
    } catch (err) {
      const kept = this.#saved !== null ? `the checkpoint of step ${this.#saved} is intact; ` : "";
      throw describeFsError(
        err,
        `cannot save the checkpoint of step ${state.step} in ${this.checkpointDir} ` +
          `(the partial copy was removed; ${kept}free space, then --resume ${this.dir})`,
      );
    }
    this.#saved = state.step;
  }

  /**
   * Refuses to start when the disk cannot hold the checkpoints (two during the swap), so a full
   * disk is found before training, not at the end.
   */
  async checkSpace(model: GPTModel): Promise<void> {
    const need = 2 * checkpointBytes(model);
    const free = await this.freeBytes(this.dir);
    if (free === null || free >= need) return;
    const gb = (b: number) => `${(b / 1e9).toFixed(2)} GB`;
    throw new UserError(
      `not enough space for checkpoints in ${this.dir}: ${gb(free)} free, ${gb(need)} needed ` +
        "(two checkpoints during a save); free space or choose another --out",
    );
  }

  /** `trainModel`'s signal, metrics-on-eval and checkpoint callbacks, for this folder. */
  hooks(model: GPTModel, optimizer: AdamW, extra: Partial<RunHooks> = {}): RunHooks {
    return {
      signal: this.signal,
      onEval: async (record, h) => {
        await writeMetrics(this.dir, h.evals, h.steps);
        await extra.onEval?.(record, h);
      },
      onCheckpoint: async (state) => {
        await this.save(model, optimizer, state);
        await extra.onCheckpoint?.(state);
      },
    };
  }

  /** Writes metrics.jsonl and the plots after the loop (finished or stopped); ends signal handling. */
  async finish(h: TrainHistory, batchesPerEpoch: number): Promise<void> {
    // Training is over and saved: from here (test responses, exports) a signal simply ends the
    // process as usual, rather than asking a loop that no longer runs to stop.
    this.interrupt.release();
    await writeMetrics(this.dir, h.evals, h.steps);
    await writePlots(this.dir, h, batchesPerEpoch);
  }

  /** Releases the lock and the signal handlers (idempotent). */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.interrupt.release();
    await this.lock.release();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}
