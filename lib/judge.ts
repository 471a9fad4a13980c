/**
 * Scoring a finetuned model's responses (chapter 7.7): the book's LLM judge (Llama 3 served by
 * Ollama, asked for an integer score 0-100 per test entry), and an offline reference metric that
 * needs no judge: ROUGE-L F1 and exact match against the dataset's `output`. The Ollama client
 * is io/ollama.ts, the response files data/response_file.ts, the metric data/offline_metric.ts;
 * this file holds the judge and re-exports them.
 *
 * @example
 * ```ts
 * import { isOllamaReachable, offlineScores, queryOllama, scoreResponses } from "./judge.ts";
 * const entries = [{ instruction: "Name a color.", input: "", output: "Blue.", model_response: "Blue." }];
 * if (await isOllamaReachable()) {
 *   const result = await scoreResponses(entries, { judge: (prompt) => queryOllama(prompt) });
 *   console.log(result.average);
 * }
 * console.log(offlineScores(entries).rougeL); // 100
 * ```
 * @module
 */
import { Progress } from "./notebook/progress.ts";
import { formatInput, type InstructionEntry } from "./data/instruction.ts";
import { type ResponseEntry, responseOf } from "./data/response_file.ts";
import { type OfflineScores, offlineScores } from "./data/offline_metric.ts";
import {
  isOllamaReachable,
  OLLAMA_CHAT_URL,
  type OllamaOptions,
  queryOllama,
} from "./io/ollama.ts";

// What the notebooks and `llm evaluate` import from here, wherever it lives.
export * from "./io/ollama.ts";
export * from "./data/response_file.ts";
export * from "./data/offline_metric.ts";

/**
 * The book's judge prompt: "Given the input `{format_input(entry)}` and correct output
 * `{output}`, score the model response `{response}` on a scale from 0 to 100, where 100 is the
 * best score. Respond with the integer number only."
 */
export function formatJudgePrompt(entry: InstructionEntry, response: string): string {
  return `Given the input \`${formatInput(entry)}\` ` +
    `and correct output \`${entry.output}\`, ` +
    `score the model response \`${response}\`` +
    ` on a scale from 0 to 100, where 100 is the best score. ` +
    `Respond with the integer number only.`;
}

/**
 * The book's score parsing: Python's `int(reply)`, i.e. an optionally signed integer with
 * surrounding whitespace, and within the 0-100 the prompt asks for. Anything else ("Score: 85",
 * "85.0", "150", "-3") gives null, so it is counted as unparseable and never averaged in.
 */
export function parseScore(reply: string): number | null {
  const trimmed = reply.trim();
  if (!/^[+-]?\d+$/.test(trimmed)) return null;
  // The prompt asks for 0-100: anything else is a judge that did not follow it, not a score.
  const score = Number.parseInt(trimmed, 10);
  return score >= 0 && score <= 100 ? score : null;
}

/** Options of `scoreResponses`. */
export interface ScoreOptions {
  /** Asks the judge one prompt and returns its reply (e.g. `(p) => queryOllama(p)`). */
  judge: (prompt: string) => Promise<string>;
  /** Key of the model's response in each entry (default "model_response"). */
  responseKey?: string;
  /** Turns a reply into a score, or null when it cannot (default `parseScore`). */
  parse?: (reply: string) => number | null;
  /** Called after each entry. */
  onProgress?: (done: number, total: number) => void;
  /** Stop after the current entry; the result covers the entries scored so far. */
  signal?: AbortSignal;
  /** Show the shared progress display (default true). */
  progress?: boolean;
}

/** Result of `scoreResponses`. */
export interface ScoreResult {
  /** Mean of the parsed scores (null when none parsed). */
  average: number | null;
  /** Entries with a score. */
  scored: number;
  /** Entries whose reply could not be parsed (left out of the average, as in the book). */
  unparseable: number;
  /** Per entry: the score, or null when unparseable. */
  scores: (number | null)[];
  /** Per entry: the judge's raw reply ("" when it was not asked). */
  replies: string[];
  /** True when the signal ended the scoring before the last entry. */
  stopped: boolean;
}

/**
 * The book's `generate_model_scores`: asks the judge to score each entry's response and averages
 * the integer replies. Replies that are not an integer are counted in `unparseable` and left out
 * of the average. An empty response scores 0 without asking (as the book's `ollama_evaluate.py`).
 */
export async function scoreResponses(
  entries: readonly ResponseEntry[],
  {
    judge,
    responseKey = "model_response",
    parse = parseScore,
    onProgress,
    signal,
    progress = true,
  }: ScoreOptions,
): Promise<ScoreResult> {
  const scores: (number | null)[] = [];
  const replies: string[] = [];
  const bar = new Progress({
    label: "judging",
    total: entries.length,
    unit: "entries",
    face: progress ? undefined : "none",
  });
  for (let i = 0; i < entries.length && !signal?.aborted; i++) {
    const response = responseOf(entries[i], responseKey, i);
    if (response === "") {
      scores.push(0);
      replies.push("");
    } else {
      const reply = await judge(formatJudgePrompt(entries[i], response));
      replies.push(reply);
      scores.push(parse(reply));
    }
    bar.update(i + 1);
    onProgress?.(i + 1, entries.length);
  }
  const stopped = scores.length < entries.length;
  await bar.finish({ stopped });
  const valid = scores.filter((s): s is number => s !== null);
  return {
    average: valid.length > 0 ? valid.reduce((a, b) => a + b, 0) / valid.length : null,
    scored: valid.length,
    unparseable: scores.length - valid.length,
    scores,
    replies,
    stopped,
  };
}

/** Options of {@link evaluateResponses}. */
export interface EvaluateOptions extends Pick<OllamaOptions, "url" | "model" | "fetch"> {
  /** Key of the model's response in each entry (default "model_response"). */
  responseKey?: string;
  /** Stop judging after the current entry. */
  signal?: AbortSignal;
}

/** The judge's scores (when Ollama answered) and the offline metric. */
export interface Evaluation {
  /** Whether Ollama answered at the URL. */
  reachable: boolean;
  judged?: ScoreResult;
  offline: OfflineScores;
}

/**
 * Chapter 7.8 in one call, shared by `llm evaluate` and the notebook: the Llama 3 judge's scores
 * when Ollama is reachable, and the offline reference metric in any case.
 */
export async function evaluateResponses(
  entries: readonly ResponseEntry[],
  { url = OLLAMA_CHAT_URL, model, fetch, responseKey, signal }: EvaluateOptions = {},
): Promise<Evaluation> {
  const reachable = await isOllamaReachable(url, { fetch });
  const judged = reachable
    ? await scoreResponses(entries, {
      responseKey,
      signal,
      judge: (prompt) => queryOllama(prompt, { url, model, fetch }),
    })
    : undefined;
  return { reachable, judged, offline: offlineScores(entries, { responseKey }) };
}

/** "average 61.20 (108 of 110 scored, 2 unparseable)". */
export function formatJudged(s: ScoreResult): string {
  const average = s.average === null ? "none" : s.average.toFixed(2);
  return `average ${average} (${s.scored} of ${s.scores.length} scored, ${s.unparseable} unparseable)`;
}
