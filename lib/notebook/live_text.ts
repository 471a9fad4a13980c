/**
 * Text that grows while a model generates it: in a notebook, one display updated in place (the
 * executed notebook keeps the final text); elsewhere the deltas go straight to stdout.
 *
 * @example
 * ```ts
 * const live = new LiveText("Every effort moves you");
 * await generateText(model, prompt, { maxNewTokens: 30, onText: (d) => live.append(d) });
 * await live.finish();
 * ```
 * @module
 */
import { jupyterKernel } from "./show.ts";
import type { DisplayFn } from "./progress.ts";

/** Options of {@link LiveText}. */
export interface LiveTextOptions {
  /** Least time between two redraws in a notebook (default 50 ms). */
  redrawEveryMs?: number;
  /** Where frames go (default Deno.jupyter.display inside a kernel; stdout elsewhere). */
  display?: DisplayFn;
  now?: () => number;
}

/** A growing text display (see the module comment). */
export class LiveText {
  readonly displayId = `live-text-${crypto.randomUUID()}`;
  /** Frames drawn (notebook only). */
  frames = 0;
  #text: string;
  #lastDraw = -Infinity;
  #chain: Promise<void> = Promise.resolve();
  readonly #display?: DisplayFn;
  readonly #every: number;
  readonly #now: () => number;

  constructor(start = "", options: LiveTextOptions = {}) {
    this.#text = start;
    this.#every = options.redrawEveryMs ?? 50;
    this.#now = options.now ?? (() => performance.now());
    const kernel = jupyterKernel();
    this.#display = options.display ?? (kernel ? (kernel.display as DisplayFn) : undefined);
    if (!this.#display && start) this.#write(start);
  }

  /** The text so far. */
  get text(): string {
    return this.#text;
  }

  /** Adds a delta; redraws when the last frame is old enough. */
  append(delta: string): Promise<void> {
    this.#text += delta;
    if (!this.#display) return this.#write(delta);
    if (this.#now() - this.#lastDraw >= this.#every) this.#draw();
    return this.#chain;
  }

  /** Starts over with a new text (the next answer, say) in the same display. */
  reset(start = ""): Promise<void> {
    this.#text = start;
    if (!this.#display) return this.#write(`\n${start}`);
    this.#draw();
    return this.#chain;
  }

  /** Draws the final text (`text` replaces what was generated, e.g. the extracted answer). */
  async finish(text?: string): Promise<void> {
    if (text !== undefined) this.#text = text;
    if (this.#display) this.#draw();
    else if (text === undefined) await this.#write("\n");
    await this.#chain;
  }

  #draw(): void {
    this.#lastDraw = this.#now();
    const update = this.frames++ > 0;
    const bundle = { "text/plain": this.#text };
    const display = this.#display!;
    this.#chain = this.#chain
      .then(() => display(bundle, { raw: true, display_id: this.displayId, update }))
      .catch(() => {});
  }

  #write(text: string): Promise<void> {
    const bytes = new TextEncoder().encode(text);
    this.#chain = this.#chain.then(async () => {
      for (let done = 0; done < bytes.length;) {
        done += await Deno.stdout.write(bytes.subarray(done));
      }
    });
    return this.#chain;
  }
}
