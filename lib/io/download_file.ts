/**
 * One HTTP download with resume: streams into `<dest>.part`; an interrupted transfer resumes with
 * a Range request (a server that answers 200 instead of 206 starts over); connect, idle and total
 * timeouts; the size is checked against Content-Length and the file is renamed into place only
 * when complete.
 * @module
 */
import { dirname } from "node:path";
import { UserError } from "../util/errors.ts";
import { syncDir } from "../util/fs.ts";
import { Progress } from "../notebook/progress.ts";

/** Progress of one transfer. */
export interface DownloadProgress {
  /** Bytes of the file on disk so far (including a resumed part). */
  received: number;
  /** The file's full size, when the server said it. */
  total?: number;
  /** Speed of this transfer. */
  bytesPerSec: number;
  /** Estimated seconds left, when the total is known. */
  etaSec?: number;
}

/** Options for {@link downloadFile}. */
export interface DownloadOptions {
  /** The size the file must have; a server reporting another size is an error. */
  expectedSize?: number;
  /** Called with the progress (every 0.2 s, and once at the end). */
  onProgress?: (p: DownloadProgress) => void;
  /** Name shown in the progress line and errors (default: the URL's last path segment). */
  label?: string;
  signal?: AbortSignal;
  /** How many times an interrupted transfer is resumed before giving up (default 3). */
  retries?: number;
  /** Pause before each resume, in milliseconds (default 1000). */
  retryDelayMs?: number;
  /** No progress display. */
  quiet?: boolean;
  /** Extra request headers (e.g. the Hub token's Authorization). */
  headers?: Record<string, string>;
  /** Give up on a try when the server sends no response headers within this (default 30 s). */
  connectTimeoutMs?: number;
  /** Give up on a try when no byte arrives for this long (default 60 s); the next try resumes. */
  idleTimeoutMs?: number;
  /** Stop the whole download after this long (default: no limit); `.part` is kept. */
  totalTimeoutMs?: number;
}

/**
 * Aborts a transfer that hangs: a timer re-armed as bytes arrive (connect, then idle), a total
 * deadline, and the caller's signal, all feeding one AbortSignal for fetch.
 */
class Watchdog {
  readonly ctrl = new AbortController();
  /** Why the watchdog fired (null: it did not). */
  reason: string | null = null;
  totalFired = false;
  #timer?: ReturnType<typeof setTimeout>;
  #total?: ReturnType<typeof setTimeout>;
  #onUser = () => this.ctrl.abort(this.user?.reason);

  constructor(readonly user: AbortSignal | undefined, totalLeftMs: number) {
    user?.addEventListener("abort", this.#onUser, { once: true });
    if (Number.isFinite(totalLeftMs)) {
      this.#total = setTimeout(() => {
        this.totalFired = true;
        this.#fire("the total time limit was reached");
      }, Math.max(0, totalLeftMs));
    }
  }

  #fire(reason: string): void {
    this.reason ??= reason;
    this.ctrl.abort(new Error(reason));
  }

  /** (Re)starts the stall timer. */
  arm(ms: number, reason: string): void {
    clearTimeout(this.#timer);
    this.#timer = setTimeout(() => this.#fire(reason), ms);
  }

  stop(): void {
    clearTimeout(this.#timer);
    clearTimeout(this.#total);
    this.user?.removeEventListener("abort", this.#onUser);
  }
}

const seconds = (ms: number) => `${+(ms / 1000).toFixed(3)} s`;

/**
 * One transfer's progress: the callback every 0.2 s and at the end, and the shared progress
 * display (a bar in notebooks, a redrawn line on terminals, a line every 5 s in logs).
 */
class TransferProgress {
  readonly #start = performance.now();
  readonly #bar: Progress;
  #lastCallback = 0;
  constructor(
    label: string,
    readonly startBytes: number,
    readonly total: number | undefined,
    quiet: boolean,
    readonly onProgress?: (p: DownloadProgress) => void,
  ) {
    this.#bar = new Progress({
      label,
      total,
      unit: "bytes",
      start: startBytes,
      face: quiet ? "none" : undefined,
      logEveryMs: 5000,
    });
  }

  #progress(received: number): DownloadProgress {
    const seconds = (performance.now() - this.#start) / 1000;
    const bytesPerSec = seconds > 0 ? (received - this.startBytes) / seconds : 0;
    const etaSec = this.total !== undefined && bytesPerSec > 0
      ? (this.total - received) / bytesPerSec
      : undefined;
    return { received, total: this.total, bytesPerSec, etaSec };
  }

  update(received: number): void {
    this.#bar.update(received);
    const now = performance.now();
    if (now - this.#lastCallback < 200) return;
    this.#lastCallback = now;
    this.onProgress?.(this.#progress(received));
  }

  async finish(received: number): Promise<void> {
    this.onProgress?.(this.#progress(received));
    this.#bar.update(received);
    await this.#bar.finish();
  }

  /** Ends the display before an error message (or a retry). */
  async abort(): Promise<void> {
    await this.#bar.finish({ stopped: true });
  }
}

/** Size of a file in bytes; 0 when it is missing. */
export async function fileSize(path: string): Promise<number> {
  try {
    return (await Deno.stat(path)).size;
  } catch {
    return 0;
  }
}

function oneLine(err: unknown): string {
  const e = err as Error & { cause?: unknown };
  const msg = [
    e?.message ?? String(err),
    e?.cause ? String((e.cause as Error).message ?? e.cause) : "",
  ]
    .filter(Boolean).join(": ");
  return msg.replace(/\s+/g, " ").trim();
}

/** The useful end of fetch's connection error ("tcp connect error: Connection refused ..."). */
function connectReason(err: unknown): string {
  const msg = oneLine(err);
  const m = /error sending request for url \(.*?\): (?:client error \(\w+\): )?(.*)$/.exec(msg);
  return m ? m[1] : msg;
}

/** `bytes a-b/total` -> {start: a, total} (total undefined for `*`). */
function parseContentRange(value: string | null): { start?: number; total?: number } {
  const m = /^bytes\s+(?:(\d+)-\d+|\*)\/(\d+|\*)$/i.exec(value?.trim() ?? "");
  if (!m) return {};
  return {
    start: m[1] !== undefined ? Number(m[1]) : undefined,
    total: m[2] !== "*" ? Number(m[2]) : undefined,
  };
}

/** An interrupted body: worth resuming. */
class Interrupted extends Error {}

/**
 * Downloads `url` to `dest`: streams into `dest.part`, resumes a partial `.part` with a Range
 * request, checks the size, then renames into place. Errors are one-line UserErrors (an abort via
 * `signal` is rethrown as is); an interrupted transfer keeps `.part` for the next try.
 */
export async function downloadFile(
  url: string,
  dest: string,
  options: DownloadOptions = {},
): Promise<void> {
  const { connectTimeoutMs = 30_000, idleTimeoutMs = 60_000, totalTimeoutMs } = options;
  const deadline = performance.now() + (totalTimeoutMs ?? Infinity);
  const label = options.label ?? (new URL(url).pathname.split("/").pop() || url);
  const part = `${dest}.part`;
  await Deno.mkdir(dirname(dest), { recursive: true });
  const tooLong = async () => {
    const have = await fileSize(part);
    return new UserError(
      `download of ${label} from ${url} took longer than the ${seconds(totalTimeoutMs!)} limit` +
        (have > 0 ? `; ${have} bytes are kept in ${part}: run again to resume` : ""),
    );
  };
  let lastError = "";
  for (let attempt = 0; attempt <= (options.retries ?? 3); attempt++) {
    const dog = new Watchdog(options.signal, deadline - performance.now());
    try {
      const r = await tryDownload(url, dest, part, label, options, dog, {
        connectTimeoutMs,
        idleTimeoutMs,
      }, attempt);
      if (r === "done") return;
      lastError = r;
    } catch (err) {
      if (dog.totalFired && !options.signal?.aborted) throw await tooLong();
      throw err;
    } finally {
      dog.stop();
    }
    if (performance.now() >= deadline) throw await tooLong();
  }
  const kept = (await fileSize(part)) > 0 ? `; run again to resume from ${part}` : "";
  throw new UserError(`download of ${label} from ${url} was interrupted (${lastError})${kept}`);
}

/** One try: "done", or why it was interrupted (worth resuming). */
async function tryDownload(
  url: string,
  dest: string,
  part: string,
  label: string,
  options: DownloadOptions,
  dog: Watchdog,
  { connectTimeoutMs, idleTimeoutMs }: { connectTimeoutMs: number; idleTimeoutMs: number },
  attempt: number,
): Promise<"done" | string> {
  const { expectedSize, signal, retryDelayMs = 1000, quiet = false } = options;
  if (attempt > 0 && retryDelayMs > 0) await new Promise((r) => setTimeout(r, retryDelayMs));
  let have = await fileSize(part);
  if (expectedSize !== undefined && have > expectedSize) {
    await Deno.remove(part);
    have = 0;
  }
  const headers: Record<string, string> = {
    ...options.headers,
    "Accept-Encoding": "identity",
  };
  if (have > 0) headers.Range = `bytes=${have}-`;
  let res: Response;
  dog.arm(connectTimeoutMs, `no response within ${seconds(connectTimeoutMs)}`);
  try {
    res = await fetch(url, { headers, signal: dog.ctrl.signal });
  } catch (err) {
    if (signal?.aborted || dog.totalFired) throw err;
    if (dog.reason) return dog.reason;
    const host = new URL(url).host;
    throw new UserError(
      `cannot reach ${host} to download ${label}: ${connectReason(err)} (offline?)`,
    );
  }

  if (res.status === 416 && have > 0) {
    // Nothing left to send: the part is complete if it has the server's size, else start over.
    await res.body?.cancel();
    const { total } = parseContentRange(res.headers.get("content-range"));
    if (total === have && (expectedSize === undefined || expectedSize === have)) {
      await Deno.rename(part, dest);
      return "done";
    }
    await Deno.remove(part);
    return `server refused to resume at byte ${have}`;
  }
  if (!res.ok) {
    await res.body?.cancel();
    throw new UserError(
      `download of ${label} failed: HTTP ${res.status}${
        res.statusText ? " " + res.statusText : ""
      } from ${url}`,
    );
  }

  let start = 0;
  let total: number | undefined;
  if (res.status === 206) {
    const range = parseContentRange(res.headers.get("content-range"));
    if (range.start !== have) {
      // A range we did not ask for: discard and start over.
      await res.body?.cancel();
      await Deno.remove(part).catch(() => {});
      return `server sent an unexpected range (${res.headers.get("content-range")})`;
    }
    start = have;
    total = range.total;
  } else {
    // 200: the server ignored Range (or there was none): the whole file follows.
    const length = res.headers.get("content-length");
    total = length !== null && /^\d+$/.test(length) ? Number(length) : undefined;
  }
  if (expectedSize !== undefined && total !== undefined && total !== expectedSize) {
    await res.body?.cancel();
    await Deno.remove(part).catch(() => {});
    throw new UserError(
      `download of ${label}: the server reports ${total} bytes but ${expectedSize} were expected (${url})`,
    );
  }
  total ??= expectedSize;

  const progress = new TransferProgress(label, start, total, quiet, options.onProgress);
  let received = start;
  try {
    {
      using file = await Deno.open(part, {
        write: true,
        create: true,
        truncate: start === 0,
        append: start > 0,
      });
      if (!res.body) throw new Interrupted("empty response body");
      const stalled = `no data for ${seconds(idleTimeoutMs)}`;
      try {
        dog.arm(idleTimeoutMs, stalled);
        for await (const chunk of res.body) {
          dog.arm(idleTimeoutMs, stalled);
          let done = 0;
          while (done < chunk.length) done += await file.write(chunk.subarray(done));
          received += chunk.length;
          if (total !== undefined && received > total) break;
          progress.update(received);
        }
      } catch (err) {
        if (signal?.aborted || dog.totalFired) throw err;
        throw new Interrupted(dog.reason ?? oneLine(err));
      }
      await file.sync();
    }
    if (total !== undefined && received > total) {
      await Deno.remove(part);
      throw new UserError(
        `download of ${label}: received more than the ${total} bytes announced (${url})`,
      );
    }
    if (total !== undefined && received < total) {
      throw new Interrupted(`connection closed after ${received} of ${total} bytes`);
    }
  } catch (err) {
    await progress.abort();
    if (err instanceof Interrupted) return err.message;
    throw err;
  }
  await Deno.rename(part, dest);
  await syncDir(dirname(dest));
  await progress.finish(received);
  return "done";
}
