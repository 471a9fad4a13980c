/**
 * Training checkpoints: the model in the Hugging Face GPT-2 layout (config.json +
 * model.safetensors, loadable by other tools), and beside it the optimizer's moments
 * (optimizer.safetensors) and the trainer's state (trainer_state.json: step, epoch, shuffle and
 * dropout state, history, run settings). The folder is written whole as DIR.partial (each file
 * fsynced, trainer_state.json last: its presence marks a complete checkpoint), then swapped in
 * (DIR -> DIR.old, DIR.partial -> DIR, drop DIR.old). A kill at any point leaves at least one
 * complete checkpoint among DIR, DIR.partial and DIR.old; `recoverCheckpoint` puts the newest
 * back as DIR.
 */
import { basename, dirname, join } from "node:path";
import type { GPTConfig } from "../model/config.ts";
import { UserError } from "../util/errors.ts";
import { exists, syncDir, writeTextAtomic } from "../util/fs.ts";
import type { GPTModel } from "../model/gpt.ts";
import { readSafetensors, type TensorMap, writeSafetensors } from "../io/safetensors.ts";
import { loadCheckpoint, loadWeightsInto, paramsToTensors, saveCheckpoint } from "../io/weights.ts";
import type { AdamW, AdamWStateDict } from "./adamw.ts";
import type { TrainerState } from "./train.ts";
import { chatTemplate } from "../data/chat_template.ts";
import { baseParamName, isLoraParam } from "../model/lora.ts";

export const OPTIMIZER_FILE = "optimizer.safetensors";
export const STATE_FILE = "trainer_state.json";
/** Parameters that are not in the GPT-2 layout (LoRA runs) are kept under our own names here. */
export const EXTRA_PARAMS_FILE = "extra_params.safetensors";

/** What trainer_state.json holds. */
export interface TrainerStateFile {
  version: 1;
  config: GPTConfig;
  trainer: TrainerState;
  optimizer: Omit<AdamWStateDict, "state"> & { steps: Record<string, number> };
  /** The run's settings (epochs, LRs, data...), checked on resume. */
  settings: Record<string, unknown>;
}

/** Saves model, optimizer and trainer state into `dir` (replacing an older checkpoint there). */
export async function saveTrainingCheckpoint(
  dir: string,
  model: GPTModel,
  optimizer: AdamW,
  trainer: TrainerState,
  settings: Record<string, unknown> = {},
): Promise<void> {
  const partial = `${dir}.partial`;
  await Deno.remove(partial, { recursive: true }).catch(() => {});
  try {
    await writeCheckpointFiles(partial, model, optimizer, trainer, settings);
  } catch (err) {
    // A full disk or a kill must not leave a large half-written folder behind.
    await Deno.remove(partial, { recursive: true }).catch(() => {});
    throw err;
  }
  // Swap the finished folder in: old -> .old, partial -> dir, drop .old.
  const old = `${dir}.old`;
  await Deno.remove(old, { recursive: true }).catch(() => {});
  if (await exists(dir)) await Deno.rename(dir, old);
  await Deno.rename(partial, dir);
  await syncDir(dirname(dir));
  await Deno.remove(old, { recursive: true }).catch(() => {});
}

async function writeCheckpointFiles(
  partial: string,
  model: GPTModel,
  optimizer: AdamW,
  trainer: TrainerState,
  settings: Record<string, unknown>,
): Promise<void> {
  const all = await paramsToTensors(model);
  // A LoRA-wrapped linear keeps its frozen weight under `X.linear.weight`: store it as `X.weight`.
  const plain = new Map(
    [...all].filter(([n]) => !isLoraParam(n)).map(([n, t]) => [baseParamName(n), t]),
  );
  const extra = new Map([...all].filter(([n]) => isLoraParam(n)));
  // A finetuning run's prompt format goes into tokenizer_config.json as its chat template.
  const template = settings.template;
  const chat = template === "alpaca" || template === "phi3" ? chatTemplate(template) : undefined;
  await saveCheckpoint(partial, model.config, plain, { chatTemplate: chat });
  if (extra.size) await writeSafetensors(join(partial, EXTRA_PARAMS_FILE), extra);
  const sd = await optimizer.stateDict();
  const moments: TensorMap = new Map();
  const steps: Record<string, number> = {};
  for (const [name, s] of Object.entries(sd.state)) {
    moments.set(`m.${name}`, { shape: s.shape, data: s.m });
    moments.set(`v.${name}`, { shape: s.shape, data: s.v });
    steps[name] = s.step;
  }
  await writeSafetensors(join(partial, OPTIMIZER_FILE), moments);
  const { state: _, ...hyper } = sd;
  const file: TrainerStateFile = {
    version: 1,
    config: model.config,
    trainer,
    optimizer: { ...hyper, steps },
    settings,
  };
  // Last: its presence marks the folder complete.
  await writeTextAtomic(join(partial, STATE_FILE), JSON.stringify(file) + "\n");
}

/** A complete checkpoint found on disk. */
export interface FoundCheckpoint {
  path: string;
  /** Optimizer steps it holds. */
  step: number;
}

/** The step of a complete checkpoint folder, or null when it is missing or incomplete. */
async function completeStep(path: string): Promise<number | null> {
  for (const f of ["config.json", "model.safetensors", OPTIMIZER_FILE]) {
    if (!(await exists(join(path, f)))) return null;
  }
  try {
    const step = JSON.parse(await Deno.readTextFile(join(path, STATE_FILE)))?.trainer?.step;
    return typeof step === "number" ? step : null;
  } catch {
    return null;
  }
}

/**
 * The newest complete checkpoint among `dir`, `dir.partial` and `dir.old` (what a kill during a
 * save can leave), or null. Reads only.
 */
export async function findCheckpoint(dir: string): Promise<FoundCheckpoint | null> {
  let best: FoundCheckpoint | null = null;
  for (const path of [dir, `${dir}.partial`, `${dir}.old`]) {
    const step = await completeStep(path);
    if (step !== null && (best === null || step > best.step)) best = { path, step };
  }
  return best;
}

/**
 * Puts the newest complete checkpoint back as `dir` and removes the other copies (incomplete
 * ones, e.g. a `.partial` cut short by a full disk, included). Returns it, with `recoveredFrom`
 * naming the copy it came from when that was not `dir`; null when there is none.
 */
export async function recoverCheckpoint(
  dir: string,
): Promise<(FoundCheckpoint & { recoveredFrom?: string }) | null> {
  const found = await findCheckpoint(dir);
  if (found && found.path !== dir) {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
    await Deno.rename(found.path, dir);
    await syncDir(dirname(dir));
  }
  for (const other of [`${dir}.partial`, `${dir}.old`]) {
    await Deno.remove(other, { recursive: true }).catch(() => {});
  }
  if (!found) return null;
  return found.path === dir
    ? { path: dir, step: found.step }
    : { path: dir, step: found.step, recoveredFrom: basename(found.path) };
}

/** Reads a checkpoint's trainer_state.json, with a clear error when it is not one. */
export async function readTrainerState(dir: string): Promise<TrainerStateFile> {
  const path = join(dir, STATE_FILE);
  if (!(await exists(path))) {
    throw new UserError(
      `${dir} is not a training checkpoint (no ${STATE_FILE}); cannot resume from it`,
    );
  }
  try {
    return JSON.parse(await Deno.readTextFile(path)) as TrainerStateFile;
  } catch (err) {
    throw new UserError(
      `${path}: not valid JSON (${(err as Error).message}); cannot resume from it`,
    );
  }
}

/**
 * Restores model weights and optimizer moments from a checkpoint written by
 * saveTrainingCheckpoint, after checking that the model has the checkpoint's config.
 */
export async function loadTrainingCheckpoint(
  dir: string,
  model: GPTModel,
  optimizer: AdamW,
): Promise<TrainerStateFile> {
  const file = await readTrainerState(dir);
  const a = JSON.stringify(file.config), b = JSON.stringify(model.config);
  if (a !== b) {
    throw new UserError(
      `resume folder ${dir} holds a model with config ${a}, but this run builds ${b}`,
    );
  }
  const { tensors } = await loadCheckpoint(dir);
  const extraPath = join(dir, EXTRA_PARAMS_FILE);
  if (await exists(extraPath)) {
    for (const [n, t] of (await readSafetensors(extraPath)).tensors) tensors.set(n, t);
  }
  const named = new Map<string, TensorMap extends Map<string, infer T> ? T : never>();
  for (const name of model.namedParameters().keys()) {
    const t = tensors.get(name) ?? tensors.get(baseParamName(name));
    if (t) named.set(name, t);
  }
  loadWeightsInto(model, named);
  const moments = (await readSafetensors(join(dir, OPTIMIZER_FILE))).tensors;
  const state: AdamWStateDict["state"] = {};
  for (const [name, step] of Object.entries(file.optimizer.steps)) {
    const m = moments.get(`m.${name}`), v = moments.get(`v.${name}`);
    if (!m || !v) throw new UserError(`${dir}/${OPTIMIZER_FILE}: no moments for "${name}"`);
    state[name] = { step, shape: m.shape, m: m.data, v: v.data };
  }
  optimizer.loadStateDict({ ...file.optimizer, state });
  return file;
}
