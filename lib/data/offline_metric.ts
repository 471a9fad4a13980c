/**
 * An offline reference metric for chapter 7.8's responses (not the book's judge): ROUGE-L F1 and
 * exact match against the dataset's `output`, over lower-cased word tokens. Cheap and
 * deterministic, but it rewards word overlap, not correctness.
 * @module
 */
import { type ResponseEntry, responseOf } from "./response_file.ts";

/** Lower-cased word tokens: runs of letters and digits; whitespace and punctuation separate. */
export function metricTokens(text: string): string[] {
  return text.toLowerCase().match(/[\p{L}\p{N}]+/gu) ?? [];
}

/** Length of the longest common subsequence of two token lists (dynamic programming, O(n*m)). */
export function lcsLength(a: readonly string[], b: readonly string[]): number {
  let prev = new Array<number>(b.length + 1).fill(0);
  let curr = new Array<number>(b.length + 1).fill(0);
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      curr[j] = a[i - 1] === b[j - 1] ? prev[j - 1] + 1 : Math.max(prev[j], curr[j - 1]);
    }
    [prev, curr] = [curr, prev];
  }
  return prev[b.length];
}

/** ROUGE-L of a candidate against a reference (0 when either has no tokens). */
export interface RougeL {
  precision: number;
  recall: number;
  f1: number;
}

/**
 * ROUGE-L: precision = LCS / candidate tokens, recall = LCS / reference tokens, F1 their harmonic
 * mean, over `metricTokens` (lower-cased, punctuation dropped).
 */
export function rougeL(candidate: string, reference: string): RougeL {
  const c = metricTokens(candidate);
  const r = metricTokens(reference);
  const lcs = lcsLength(c, r);
  if (c.length === 0 || r.length === 0 || lcs === 0) return { precision: 0, recall: 0, f1: 0 };
  const precision = lcs / c.length;
  const recall = lcs / r.length;
  return { precision, recall, f1: (2 * precision * recall) / (precision + recall) };
}

/** Exact match after normalization: the same `metricTokens` (case and punctuation ignored). */
export function exactMatch(candidate: string, reference: string): boolean {
  const c = metricTokens(candidate);
  const r = metricTokens(reference);
  return c.length === r.length && c.every((t, i) => t === r[i]);
}

/** Result of `offlineScores`. */
export interface OfflineScores {
  /** Mean ROUGE-L F1 over the entries, times 100 (0-100 like the judge's scale). */
  rougeL: number;
  /** Percentage of entries whose response matches the output exactly (normalized). */
  exactMatch: number;
  /** Per entry ROUGE-L F1 (0-1). */
  perEntry: number[];
}

/**
 * The offline reference metric: mean ROUGE-L F1 (x100) and exact-match rate of each entry's
 * response against its `output`. Cheap and deterministic, but it rewards word overlap, not
 * correctness: it is not comparable to the Llama 3 judge's score.
 */
export function offlineScores(
  entries: readonly ResponseEntry[],
  { responseKey = "model_response" }: { responseKey?: string } = {},
): OfflineScores {
  if (entries.length === 0) return { rougeL: 0, exactMatch: 0, perEntry: [] };
  let matches = 0;
  const perEntry = entries.map((entry, i) => {
    const response = responseOf(entry, responseKey, i);
    if (exactMatch(response, entry.output)) matches++;
    return rougeL(response, entry.output).f1;
  });
  return {
    rougeL: (100 * perEntry.reduce((a, b) => a + b, 0)) / entries.length,
    exactMatch: (100 * matches) / entries.length,
    perEntry,
  };
}

/** "ROUGE-L F1 31.05, exact match 0.91%". */
export function formatOffline(s: Pick<OfflineScores, "rougeL" | "exactMatch">): string {
  return `ROUGE-L F1 ${s.rougeL.toFixed(2)}, exact match ${s.exactMatch.toFixed(2)}%`;
}
