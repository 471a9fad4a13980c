/**
 * Scoring a finetuned model's responses (chapter 7.7): the book's LLM judge (Llama 3 served by
 * Ollama, asked for an integer score 0-100 per test entry), and an offline reference metric that
 * needs no judge: ROUGE-L F1 and exact match against the dataset's `output`.
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
import { UserError } from "./util/errors.ts";
import { readUtf8File } from "./util/utf8.ts";
import { formatInput, type InstructionEntry, parseInstructionData } from "./data/instruction.ts";

/** The book's Ollama chat endpoint. */
export const OLLAMA_CHAT_URL = "http://localhost:11434/api/chat";

/** An instruction entry with the model's response beside the reference `output`. */
export type ResponseEntry = InstructionEntry & Record<string, unknown>;

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

/** Options of `queryOllama`, with the book's defaults. */
export interface OllamaOptions {
  /** Chat endpoint (default `http://localhost:11434/api/chat`). */
  url?: string;
  /** Model name (default "llama3", the 8B instruct model). */
  model?: string;
  /** Sampling seed (book: 123). */
  seed?: number;
  /** Temperature (book: 0, greedy). */
  temperature?: number;
  /** Context window in tokens (book: 2048). */
  numCtx?: number;
  /** Give up after this many milliseconds (default 120,000). */
  timeoutMs?: number;
  /** The fetch to use (tests pass their own). */
  fetch?: typeof fetch;
}

/**
 * Sends one user message to Ollama's chat API and returns the whole reply, read from the stream
 * of JSON lines (`{"message": {"content": "..."}, "done": false}` ...) that Ollama sends, as the
 * book's `query_model` does. Options: seed 123, temperature 0, num_ctx 2048.
 */
export async function queryOllama(prompt: string, options: OllamaOptions = {}): Promise<string> {
  const {
    url = OLLAMA_CHAT_URL,
    model = "llama3",
    seed = 123,
    temperature = 0,
    numCtx = 2048,
    timeoutMs = 120_000,
    fetch: fetchFn = fetch,
  } = options;
  const body = {
    model,
    messages: [{ role: "user", content: prompt }],
    // Settings the book uses for deterministic replies.
    options: { seed, temperature, num_ctx: numCtx },
  };
  const signal = AbortSignal.timeout(timeoutMs);
  const timedOut = (while_: string) =>
    new UserError(
      `Ollama at ${url} did not answer within ${timeoutMs / 1000} s (timed out ${while_}); ` +
        "is the model still loading? Try again, or raise the timeout",
    );
  let response: Response;
  try {
    response = await fetchFn(url, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
      signal,
    });
  } catch (err) {
    if (signal.aborted) throw timedOut("waiting for the reply to start");
    throw new UserError(
      `cannot reach Ollama at ${url} (${(err as Error).message}); start it with \`ollama serve\``,
    );
  }
  if (!response.ok) {
    const text = (await response.text().catch(() => "")).trim();
    throw new UserError(`Ollama at ${url} answered HTTP ${response.status}: ${text.slice(0, 200)}`);
  }
  if (response.body === null) throw new UserError(`Ollama at ${url} sent an empty response`);
  try {
    return await readReply(response.body, url);
  } catch (err) {
    if (err instanceof UserError) throw err;
    if (signal.aborted) throw timedOut("while streaming the reply");
    throw new UserError(
      `the connection to Ollama at ${url} broke mid-reply (${(err as Error).message})`,
    );
  }
}

/** One streamed JSON line of Ollama's reply: its text (or a UserError for anything else). */
function replyPiece(line: string, url: string): string {
  let chunk: unknown;
  try {
    chunk = JSON.parse(line);
  } catch {
    throw new UserError(`Ollama at ${url} sent a line that is not JSON: ${line.slice(0, 200)}`);
  }
  if (chunk === null || typeof chunk !== "object" || Array.isArray(chunk)) {
    throw new UserError(
      `Ollama at ${url} sent a line that is not an object: ${line.slice(0, 200)}`,
    );
  }
  const c = chunk as { message?: { content?: unknown }; error?: unknown };
  if (c.error) throw new UserError(`Ollama at ${url}: ${String(c.error).slice(0, 200)}`);
  const content = c.message?.content ?? "";
  if (typeof content !== "string") {
    throw new UserError(
      `Ollama at ${url} sent a message whose content is not text: ${line.slice(0, 200)}`,
    );
  }
  return content;
}

/** Joins the streamed JSON lines (a line may arrive split across network chunks). */
async function readReply(body: ReadableStream<BufferSource>, url: string): Promise<string> {
  let reply = "", buffer = "";
  const add = (line: string) => {
    if (line.trim() !== "") reply += replyPiece(line, url);
  };
  for await (const piece of body.pipeThrough(new TextDecoderStream())) {
    buffer += piece;
    let newline: number;
    while ((newline = buffer.indexOf("\n")) >= 0) {
      add(buffer.slice(0, newline));
      buffer = buffer.slice(newline + 1);
    }
  }
  add(buffer);
  return reply;
}

/**
 * True when an Ollama server answers at the URL's host (its `/api/tags` model list), within
 * `timeoutMs` (default 2,000). Replaces the book's `check_if_running("ollama")` process check.
 */
export async function isOllamaReachable(
  url: string = OLLAMA_CHAT_URL,
  { timeoutMs = 2000, fetch: fetchFn = fetch }: { timeoutMs?: number; fetch?: typeof fetch } = {},
): Promise<boolean> {
  try {
    const response = await fetchFn(new URL("/api/tags", url), {
      signal: AbortSignal.timeout(timeoutMs),
    });
    await response.body?.cancel();
    return response.ok;
  } catch {
    return false;
  }
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

function responseOf(entry: ResponseEntry, key: string, index: number): string {
  const value = entry[key];
  if (value === undefined) throw new UserError(`entry ${index}: "${key}" is missing`);
  if (typeof value !== "string") {
    throw new UserError(
      `entry ${index}: "${key}" must be a string (got ${value === null ? "null" : typeof value})`,
    );
  }
  return value;
}

/**
 * Reads a JSON file of entries with responses (like `instruction-data-with-response.json`) and
 * checks that every entry has a string `responseKey` (default "model_response").
 */
export async function loadResponseFile(
  path: string,
  { responseKey = "model_response" }: { responseKey?: string } = {},
): Promise<ResponseEntry[]> {
  const text = await readUtf8File(path, "response file");
  const entries = parseInstructionData<ResponseEntry>(text, path);
  entries.forEach((entry, i) => {
    try {
      responseOf(entry, responseKey, i);
    } catch (err) {
      throw new UserError(`${path}: ${(err as Error).message}`);
    }
  });
  return entries;
}

// ---------------------------------------------------------------------------------------------
// Offline reference metric (not the book's judge): ROUGE-L F1 and exact match.

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

/** "ROUGE-L F1 31.05, exact match 0.91%". */
export function formatOffline(s: Pick<OfflineScores, "rougeL" | "exactMatch">): string {
  return `ROUGE-L F1 ${s.rougeL.toFixed(2)}, exact match ${s.exactMatch.toFixed(2)}%`;
}
