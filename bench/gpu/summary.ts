/**
 * One markdown line per `deno task bench --json` result: what ran, ours and PyTorch per step, the
 * ratio, tokens/s, and for gpt2-medium-sft the whole finetune in minutes (extrapolated).
 * Usage: deno run -A bench/gpu/summary.ts RESULT.json... (bench/gpu/run.sh writes summary.md).
 */
import type { BenchJson } from "../bench.ts";

const fmt = (x: number | null | undefined, d = 1) => x == null ? "-" : x.toFixed(d);

/** The summary line of one result. */
export function summaryLine(j: BenchJson): string {
  const what = j.mode === "generate"
    ? `generate ${j.newTokens} tokens (gpt2-small shape)`
    : `train ${j.config} (batch ${j.batch} x ${j.seqLen})`;
  const unit = j.mode === "generate" ? "ms/generation" : "ms/step";
  let line = `- ${what}: ours ${fmt(j.oursMsPerStep)} ${unit}, PyTorch (${j.device}) ` +
    `${fmt(j.torchMsPerStep)}; ours/PyTorch ${fmt(j.ratio, 2)}x time; tokens/s ours ` +
    `${fmt(j.oursTokensPerSec)}, PyTorch ${fmt(j.torchTokensPerSec)}`;
  if (j.sft) {
    line += `; whole chapter-7 finetune (${j.sft.ours.steps} steps, extrapolated): ours ` +
      `${fmt(j.sft.ours.minutes, 2)} min, PyTorch ${fmt(j.sft.torch?.minutes, 2)} min`;
  }
  return line;
}

if (import.meta.main) {
  for (const path of Deno.args) {
    for (const text of (await Deno.readTextFile(path)).split("\n").filter((l) => l.trim())) {
      console.log(summaryLine(JSON.parse(text) as BenchJson));
    }
  }
}
