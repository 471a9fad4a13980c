/**
 * The one progress display of the project (the book's tqdm): training and finetuning steps,
 * downloads, test-response generation, judging and the benches all report through it.
 *
 * It has three faces, chosen automatically (env `LLM_PROGRESS` overrides):
 * - `notebook`: inside a Deno Jupyter kernel, an HTML `<progress>` bar updated in place
 *   (`Deno.jupyter.display(..., {display_id, update: true})`); the executed notebook keeps its
 *   final state. Plain `stdout`/`stderr` writes never reach a cell, so nothing else would show.
 * - `terminal`: on a terminal, one line on stderr redrawn with `\r`.
 * - `log`: in CI or a pipe, a plain line every `logEveryMs` (10 s) and one at the end.
 *
 * @example
 * ```ts
 * const bar = new Progress({ label: "training", total: 120, unit: "steps" });
 * for (let step = 1; step <= 120; step++) { ...; bar.update(step, { tokens, loss }); }
 * await bar.finish();
 * ```
 * @module
 */
import { jupyterKernel } from "./show.ts";

/** How the progress is shown. */
export type ProgressFace = "notebook" | "terminal" | "log" | "none";
const FACES: readonly ProgressFace[] = ["notebook", "terminal", "log", "none"];

/** Shows one display bundle; Deno.jupyter.display's signature. */
export type DisplayFn = (
  bundle: Record<string, string>,
  options: { raw: true; display_id: string; update: boolean },
) => Promise<void>;

/** Options of {@link Progress}. */
export interface ProgressOptions {
  /** What is counted, shown first ("training", "gpt2/model.safetensors"). */
  label: string;
  /** The count at which the work is complete, when known. */
  total?: number;
  /** Plural noun of the count; `bytes` shows MB and MB/s. Default "steps". */
  unit?: string;
  /** The count already done when this display starts (a resumed run); not part of the rates. */
  start?: number;
  /** Default: {@link progressFace}(). */
  face?: ProgressFace;
  /** Least time between two plain log lines (log face). Default 10,000 ms. */
  logEveryMs?: number;
  /** Least time between two redraws (notebook and terminal faces). Default 250 ms. */
  redrawEveryMs?: number;
  /** Where log lines go (log face). Default console.error. */
  write?: (line: string) => void;
  /** Where notebook frames go. Default Deno.jupyter.display. */
  display?: DisplayFn;
  /** Clock in milliseconds (tests pass a fake one). */
  now?: () => number;
}

/** Extra numbers shown with the count. */
export interface ProgressFields {
  /** Tokens processed since this display started: shows tokens/s. */
  tokens?: number;
  /** The last loss. */
  loss?: number;
}

/** The face for this process: env LLM_PROGRESS, else notebook / terminal / log as detected. */
export function progressFace(): ProgressFace {
  const env = Deno.env.get("LLM_PROGRESS")?.trim();
  if (env && (FACES as readonly string[]).includes(env)) return env as ProgressFace;
  if (jupyterKernel() !== undefined) return "notebook";
  try {
    if (Deno.stderr.isTerminal() && !Deno.env.get("CI")) return "terminal";
  } catch { /* no stderr */ }
  return "log";
}

/** 75 -> "1m15s", 3700 -> "1h01m". */
export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds)) return "?";
  const s = Math.max(0, Math.round(seconds));
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;
  return h
    ? `${h}h${String(m).padStart(2, "0")}m`
    : m
    ? `${m}m${String(r).padStart(2, "0")}s`
    : `${r}s`;
}

const MB = 1e6;

function escapeHtml(text: string): string {
  return text.replace(
    /[&<>"]/g,
    (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[c]!,
  );
}

/** A progress display (see the module comment); `update` is cheap and throttled. */
export class Progress {
  readonly face: ProgressFace;
  readonly displayId = `progress-${crypto.randomUUID()}`;
  /** Notebook frames or terminal/log lines drawn so far. */
  frames = 0;
  readonly #o: ProgressOptions;
  readonly #now: () => number;
  readonly #t0: number;
  readonly #start: number;
  #done: number;
  #fields: ProgressFields = {};
  #lastDraw = -Infinity;
  #finished = false;
  #chain: Promise<void> = Promise.resolve();

  constructor(options: ProgressOptions) {
    this.#o = options;
    this.#now = options.now ?? (() => performance.now());
    this.#t0 = this.#now();
    this.#start = this.#done = options.start ?? 0;
    let face = options.face ?? progressFace();
    if (face === "notebook" && !options.display && jupyterKernel() === undefined) face = "log";
    this.face = face;
    // Logs: the first line after one interval, so short work prints only its summary.
    if (face === "log") this.#lastDraw = this.#t0;
  }

  /** The count done so far. */
  get done(): number {
    return this.#done;
  }

  /** Records the count done (and the extra numbers); redraws when the last frame is old enough. */
  update(done: number, fields: ProgressFields = {}): void {
    this.#done = done;
    this.#fields = { ...this.#fields, ...fields };
    if (this.#finished || this.face === "none") return;
    const now = this.#now();
    const every = this.face === "log" ? this.#o.logEveryMs ?? 10_000 : this.#o.redrawEveryMs ?? 250;
    if (now - this.#lastDraw < every) return;
    this.#lastDraw = now;
    this.#draw(false);
  }

  /** Before printing other lines on a terminal: clears the redrawn line (the next update redraws). */
  clearLine(): void {
    if (this.face === "terminal" && this.frames > 0 && !this.#finished) writeStderr("\r\x1b[K");
  }

  /** Draws the final state (with the total time); `stopped` says the work ended early. */
  async finish({ stopped = false }: { stopped?: boolean } = {}): Promise<void> {
    if (this.#finished) return await this.#chain;
    this.#finished = true;
    if (this.face !== "none") this.#draw(true, stopped);
    await this.#chain;
  }

  /** The text of the current state, e.g. "training: 37/120 steps (31%) | 812 tokens/s | ETA 1m05s". */
  text(final = false, stopped = false): string {
    const o = this.#o, done = this.#done, total = o.total;
    const secs = (this.#now() - this.#t0) / 1000;
    const bytes = o.unit === "bytes";
    const count = (n: number) => bytes ? (n / MB).toFixed(1) : n.toLocaleString("en-US");
    const unit = bytes ? "MB" : o.unit ?? "steps";
    const parts = [
      `${o.label}: ${count(done)}${total !== undefined ? `/${count(total)}` : ""} ${unit}` +
      (total ? ` (${Math.floor((100 * done) / total)}%)` : ""),
    ];
    const ran = done - this.#start;
    if (secs > 0 && ran > 0) {
      if (bytes) parts.push(`${(ran / MB / secs).toFixed(1)} MB/s`);
      else if (this.#fields.tokens) {
        parts.push(`${Math.round(this.#fields.tokens / secs)} tokens/s`);
      }
      if (!bytes) {
        parts.push(
          secs / ran >= 1
            ? `${(secs / ran).toFixed(2)} s/${singular(unit)}`
            : `${(ran / secs).toFixed(1)} ${unit}/s`,
        );
      }
    }
    if (this.#fields.loss !== undefined) parts.push(`loss ${this.#fields.loss.toFixed(3)}`);
    if (final) parts.push(`${stopped ? "stopped after" : "done in"} ${formatDuration(secs)}`);
    else if (total !== undefined && ran > 0) {
      parts.push(`ETA ${formatDuration(((total - done) * secs) / ran)}`);
    }
    return parts.join(" | ");
  }

  #draw(final: boolean, stopped = false): void {
    const line = this.text(final, stopped);
    this.frames++;
    if (this.face === "log") (this.#o.write ?? console.error)(line);
    else if (this.face === "terminal") writeStderr(`\r\x1b[K${line}${final ? "\n" : ""}`);
    else if (this.face === "notebook") {
      const bundle = { "text/html": this.#html(line, stopped), "text/plain": line };
      const update = this.frames > 1;
      const display = this.#o.display ?? (jupyterKernel()!.display as DisplayFn);
      this.#chain = this.#chain
        .then(() => display(bundle, { raw: true, display_id: this.displayId, update }))
        .catch(() => {}); // a lost frame must not stop the work
    }
  }

  #html(line: string, stopped: boolean): string {
    const { total } = this.#o;
    const value = total ? ` value="${Math.min(this.#done, total)}" max="${total}"` : "";
    const colour = stopped ? "accent-color: #d9822b;" : "";
    return `<div class="llm-progress" style="font-family: monospace; font-size: 13px">` +
      `<progress${value} style="width: 200px; vertical-align: middle; ${colour}"></progress> ` +
      `<span>${escapeHtml(line)}</span></div>`;
  }
}

function singular(unit: string): string {
  return unit.endsWith("ies") ? `${unit.slice(0, -3)}y` : unit.replace(/s$/, "");
}

function writeStderr(text: string): void {
  try {
    Deno.stderr.writeSync(new TextEncoder().encode(text));
  } catch { /* stderr closed */ }
}
