/**
 * The one list of settings that change a training run's result, shared by `pretrain` and
 * `finetune`. A run saves them in every checkpoint (and in run.json); `--resume` continues only
 * when the command gives the same values, and otherwise names the first setting that differs.
 */
import { UserError } from "../util/errors.ts";

/** Each result-changing setting, with the flag that sets it (for the refusal message). */
export const RESULT_SETTINGS = {
  command: "the command (pretrain or finetune)",
  dataHash: "--data (the file's contents: SHA-256)",
  limit: "--limit",
  template: "--template",
  maskInstruction: "--mask-instruction",
  allowedMaxLength: "--allowed-max-length",
  model: "--model / --context-length / --weights (the model's config)",
  weights: "--weights",
  epochs: "--epochs",
  batchSize: "--batch-size",
  seed: "--seed",
  initialLr: "--initial-lr",
  peakLr: "--peak-lr / --lr",
  minLr: "--min-lr",
  warmupFraction: "--warmup-fraction",
  maxGradNorm: "--max-grad-norm",
  weightDecay: "--weight-decay",
  evalFreq: "--eval-freq",
  evalIter: "--eval-iter",
  loraRank: "--lora-rank",
  loraAlpha: "--lora-alpha",
  loraScaling: "--lora-scaling / --use-rslora",
  loraTargets: "--lora-targets",
  loraDropout: "--lora-dropout",
  gradAccum: "--grad-accum",
  noDecayBiasNorm: "--no-decay-bias-norm",
  earlyStopPatience: "--early-stop-patience",
  initFrom: "--init-from",
} as const;

/** A setting's name. */
export type ResultSetting = keyof typeof RESULT_SETTINGS;

/**
 * A run's settings: every key of RESULT_SETTINGS (null where the command has no such setting),
 * plus informative extras (e.g. the data's path) that are saved but not compared.
 */
export type RunSettings = Record<ResultSetting, unknown> & Record<string, unknown>;

/** SHA-256 of the bytes (or UTF-8 text) a run trains on, as hex. */
export async function dataHash(data: string | Uint8Array): Promise<string> {
  const bytes = typeof data === "string" ? new TextEncoder().encode(data) : data;
  const digest = await crypto.subtle.digest("SHA-256", bytes as Uint8Array<ArrayBuffer>);
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

function show(v: unknown): string {
  const s = v === undefined ? "(unset)" : JSON.stringify(v);
  return s.length > 80 ? s.slice(0, 77) + "..." : s;
}

/** The first place two JSON values differ, e.g. `model.embDim` 128 vs 768 (null: equal). */
function firstDifference(
  path: string,
  was: unknown,
  is: unknown,
): { path: string; was: unknown; is: unknown } | null {
  if (JSON.stringify(was) === JSON.stringify(is)) return null;
  const isObject = (v: unknown) => v !== null && typeof v === "object" && !Array.isArray(v);
  if (isObject(was) && isObject(is)) {
    const a = was as Record<string, unknown>, b = is as Record<string, unknown>;
    for (const k of new Set([...Object.keys(a), ...Object.keys(b)])) {
      const d = firstDifference(`${path}.${k}`, a[k], b[k]);
      if (d) return d;
    }
  }
  return { path, was, is };
}

/**
 * Throws a UserError naming the first result-changing setting whose saved value differs from
 * this command's. Settings an older checkpoint did not record are not compared.
 */
export function assertSameSettings(
  saved: Record<string, unknown>,
  now: RunSettings,
  where: string,
): void {
  for (const key of Object.keys(RESULT_SETTINGS) as ResultSetting[]) {
    if (!(key in saved)) continue;
    const diff = firstDifference(key, saved[key] ?? null, now[key] ?? null);
    if (!diff) continue;
    throw new UserError(
      `--resume ${where}: the run used ${diff.path} ${show(diff.was)}, this command gives ` +
        `${show(diff.is)} (${RESULT_SETTINGS[key]}); resuming would change the run, so pass ` +
        "the same value or start a new --out",
    );
  }
}
