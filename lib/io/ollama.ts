/**
 * The Ollama client of chapter 7.8's judge: one chat request to a local Ollama server (the
 * book's `query_model`, streamed JSON lines joined into one reply) and a reachability check.
 * Every failure (not running, timed out, a broken stream, an error reply) is one clear line.
 * @module
 */
import { UserError } from "../util/errors.ts";

/** The book's Ollama chat endpoint. */
export const OLLAMA_CHAT_URL = "http://localhost:11434/api/chat";

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
