/**
 * Charts for notebooks and the CLI: Observable Plot rendered to standalone SVG strings with a
 * linkedom `document` (no browser), shown inline in Jupyter or written to `.svg` files.
 *
 * Every chart is a plain SVG (title and legend are drawn inside it), so the same string works as a
 * file, as `image/svg+xml`, and inline in `text/html`.
 */
import * as Plot from "@observablehq/plot";
import { parseHTML } from "linkedom";
import { UserError } from "../util/errors.ts";
import { writeTextAtomic } from "../util/fs.ts";
import { inJupyter, jupyterKernel } from "./show.ts";

const SVG_NS = "http://www.w3.org/2000/svg";
/** Observable Plot's "observable10" scheme: the default categorical colours. */
const COLORS = [
  "#4269d0",
  "#efb118",
  "#ff725c",
  "#6cc5b0",
  "#3ca951",
  "#ff8ab7",
  "#a463f2",
  "#97bbf5",
  "#9c6b4e",
  "#9498a0",
];
/** Vertical room added above the chart for a title. */
const TITLE_HEIGHT = 26;

let sharedDocument: Document | undefined;
/** One linkedom document for every chart: Plot only creates detached elements in it. */
function plotDocument(): Document {
  sharedDocument ??= parseHTML("<!DOCTYPE html><html><body></body></html>").document;
  return sharedDocument;
}

/** Plot.plot's options, with the title drawn inside the SVG instead of an HTML figure. */
export interface ChartOptions
  extends Omit<Plot.PlotOptions, "document" | "title" | "subtitle" | "caption"> {
  /** Bold line above the chart. */
  title?: string;
}

/**
 * Renders Observable Plot options to a standalone SVG string (with `xmlns`).
 *
 * @example
 * ```ts
 * const svg = renderSvg({ marks: [Plot.lineY([1, 4, 9])], title: "Squares" });
 * ```
 */
export function renderSvg({ title, ...options }: ChartOptions): string {
  const document = plotDocument();
  const el = Plot.plot({ ...options, document });
  if (el.tagName.toLowerCase() !== "svg") {
    // A figure wraps HTML legends; a file or image/svg+xml cannot hold those.
    throw new UserError("renderSvg needs options that give a plain SVG (use an SVG legend)");
  }
  const svg = el as unknown as SVGSVGElement;
  if (title) {
    // A negative viewBox origin makes room above the chart without moving any mark.
    const width = Number(svg.getAttribute("width"));
    const height = Number(svg.getAttribute("height")) + TITLE_HEIGHT;
    svg.setAttribute("height", String(height));
    svg.setAttribute("viewBox", `0 ${-TITLE_HEIGHT} ${width} ${height}`);
    const text = document.createElementNS(SVG_NS, "text");
    text.setAttribute("x", "8");
    text.setAttribute("y", String(-TITLE_HEIGHT / 2 + 2));
    text.setAttribute("text-anchor", "start");
    text.setAttribute("font-size", "14");
    text.setAttribute("font-weight", "bold");
    text.textContent = title;
    svg.insertBefore(text, svg.firstChild);
  }
  return withXmlns(svg.outerHTML);
}

/** Adds the SVG namespace to a root `<svg>` that lacks it (needed for a standalone file). */
export function withXmlns(svg: string): string {
  const head = svg.slice(0, svg.indexOf(">") + 1);
  if (!head.startsWith("<svg") || head.includes("xmlns=")) return svg;
  return `<svg xmlns="${SVG_NS}"${svg.slice(4)}`;
}

/** One line of a line chart. */
export interface LineSeries {
  /** Legend text. */
  name: string;
  x: readonly number[];
  y: readonly number[];
  /** SVG dash pattern, e.g. "6,3" (the book's validation curves are dash-dot). */
  dash?: string;
}

/** Options of linePlot: axis labels, size, scales and any extra Plot marks. */
export interface LinePlotOptions {
  title?: string;
  xLabel?: string;
  yLabel?: string;
  width?: number;
  height?: number;
  /** y scale type; "log" suits losses that fall by orders of magnitude. */
  yType?: "linear" | "log";
  /** Extra marks drawn over the lines (e.g. a second axis). */
  marks?: Plot.Markish[];
  /** Top margin in pixels (raise it when a mark draws above the frame). */
  marginTop?: number;
}

/**
 * A line chart of one or more series, with an SVG legend at the top right when there are several.
 *
 * @example
 * ```ts
 * const svg = linePlot([{ name: "loss", x: [0, 1, 2], y: [3, 2, 1.5] }], { yLabel: "Loss" });
 * ```
 */
export function linePlot(series: readonly LineSeries[], options: LinePlotOptions = {}): string {
  const { title, xLabel, yLabel, width = 640, height = 360, yType = "linear", marginTop } = options;
  const marks: Plot.Markish[] = [Plot.gridY({ strokeOpacity: 0.08 })];
  series.forEach((s, i) => {
    if (s.x.length !== s.y.length) {
      throw new UserError(`series "${s.name}": ${s.x.length} x values but ${s.y.length} y values`);
    }
    const color = COLORS[i % COLORS.length];
    marks.push(
      Plot.line(s.y, {
        x: s.x as number[],
        y: (d: number) => d,
        stroke: color,
        strokeWidth: 1.8,
        strokeDasharray: s.dash,
      }),
    );
    if (series.length > 1) {
      marks.push(Plot.text([s.name], {
        frameAnchor: "top-right",
        dx: -6,
        dy: 6 + 15 * i,
        textAnchor: "end",
        fill: color,
        fontSize: 11,
        text: (d: string) => `${s.dash ? "- - -" : "———"} ${d}`,
      }));
    }
  });
  marks.push(...(options.marks ?? []));
  return renderSvg({
    title,
    width,
    height,
    marginTop,
    marginLeft: 56,
    x: { label: xLabel ?? null, labelAnchor: "center", labelArrow: "none" },
    y: { label: yLabel ?? null, type: yType, nice: true, labelArrow: "none" },
    style: { background: "white", color: "black" },
    marks,
  });
}

/** Learning rate against optimizer step (appendix D's warmup and cosine-decay figures). */
export function lrPlot(lrs: readonly number[], { title }: { title?: string } = {}): string {
  return linePlot([{ name: "learning rate", x: lrs.map((_, i) => i), y: lrs }], {
    title,
    xLabel: "Step",
    yLabel: "Learning rate",
  });
}

/** The book's plot_losses inputs: one entry per evaluation. */
export interface LossHistory {
  epochsSeen: readonly number[];
  tokensSeen: readonly number[];
  trainLosses: readonly number[];
  valLosses: readonly number[];
}

/**
 * The book's `plot_losses`: training and validation loss against epochs, with tokens seen on a
 * second x axis along the top.
 *
 * Plot has no twin axes. The top axis is drawn on the epoch scale: "nice" token counts are chosen,
 * each is placed at the epoch where training had seen that many tokens (linear interpolation
 * between evaluations), and labelled with the token count. This is exactly matplotlib's `twiny()`
 * reading when tokens grow steadily with epochs, and stays truthful when they do not.
 */
export function lossPlot(history: LossHistory, { title }: { title?: string } = {}): string {
  const { epochsSeen, tokensSeen, trainLosses, valLosses } = history;
  const n = epochsSeen.length;
  for (const [name, a] of Object.entries({ tokensSeen, trainLosses, valLosses })) {
    if (a.length !== n) {
      throw new UserError(`lossPlot: ${name} has ${a.length} values, epochsSeen has ${n}`);
    }
  }
  const ticks = tokenTicks(epochsSeen, tokensSeen);
  const marks: Plot.Markish[] = [];
  if (ticks.length > 0) {
    const label = new Map(ticks.map((t) => [t.epoch, formatCount(t.tokens)]));
    marks.push(
      Plot.axisX({ anchor: "bottom", label: "Epochs", labelAnchor: "center", labelArrow: "none" }),
      Plot.axisX(ticks.map((t) => t.epoch), {
        anchor: "top",
        label: "Tokens seen",
        labelAnchor: "center",
        labelArrow: "none",
        tickFormat: (d: number) => label.get(d) ?? "",
      }),
    );
  }
  return linePlot(
    [
      { name: "Training loss", x: epochsSeen, y: trainLosses },
      { name: "Validation loss", x: epochsSeen, y: valLosses, dash: "7,3,1.5,3" },
    ],
    { title, xLabel: "Epochs", yLabel: "Loss", marks, marginTop: ticks.length > 0 ? 44 : 20 },
  );
}

/** A top-axis tick: a round token count and the epoch at which it was reached. */
export interface TokenTick {
  tokens: number;
  epoch: number;
}

/**
 * Round token counts within the seen range, each placed at its (interpolated) epoch.
 * Empty when tokens do not grow (nothing to show on a second axis).
 */
export function tokenTicks(
  epochs: readonly number[],
  tokens: readonly number[],
  count = 5,
): TokenTick[] {
  if (epochs.length < 2) return [];
  const lo = Math.min(...tokens);
  const hi = Math.max(...tokens);
  if (!(hi > lo)) return [];
  const out: TokenTick[] = [];
  for (const t of niceTicks(lo, hi, count)) {
    // First segment whose token range holds t (tokens are non-decreasing in a real history).
    for (let i = 1; i < tokens.length; i++) {
      const [t0, t1] = [tokens[i - 1], tokens[i]];
      if (t0 <= t && t <= t1 && t1 > t0) {
        out.push({
          tokens: t,
          epoch: epochs[i - 1] + (epochs[i] - epochs[i - 1]) * (t - t0) / (t1 - t0),
        });
        break;
      }
    }
  }
  return out;
}

/** About `count` round numbers (1, 2 or 5 times a power of ten apart) within [lo, hi], as d3.ticks. */
export function niceTicks(lo: number, hi: number, count: number): number[] {
  if (!(hi > lo)) return hi === lo ? [lo] : [];
  const raw = (hi - lo) / Math.max(1, count);
  const power = 10 ** Math.floor(Math.log10(raw));
  const ratio = raw / power;
  // Round the step to the nearest of 1, 2, 5, 10 in log space (d3's thresholds).
  const step = power *
    (ratio >= Math.sqrt(50) ? 10 : ratio >= Math.sqrt(10) ? 5 : ratio >= Math.SQRT2 ? 2 : 1);
  // Dividing by the integer 1/step keeps ticks like 0.6 exact where k * 0.2 would not.
  const at = step >= 1 ? (k: number) => k * step : (k: number) => k / Math.round(1 / step);
  const out: number[] = [];
  for (let k = Math.ceil(lo / step); at(k) <= hi; k++) out.push(at(k));
  return out;
}

const compact = new Intl.NumberFormat("en-US", { notation: "compact", maximumFractionDigits: 2 });
/** 12,000 -> "12K", 1,500,000 -> "1.5M". */
function formatCount(n: number): string {
  return compact.format(n);
}

/** Writes an SVG string to a file atomically (adding `xmlns` when missing). */
export async function saveSvg(path: string, svg: string): Promise<void> {
  await writeTextAtomic(path, withXmlns(svg) + "\n");
}

/** Where a display goes: the id of an existing output to replace, or a new one. */
export interface DisplayPlotOptions {
  /** Jupyter display id: a later display with `update: true` and the same id replaces it. */
  displayId?: string;
  /** Replace the output shown earlier under `displayId` instead of adding a new one. */
  update?: boolean;
}

let noted = false;
function noteNoKernel(): void {
  if (noted) return;
  noted = true;
  console.log("(plot not displayed: not running in a Jupyter kernel; saveSvg() writes a file)");
}

/**
 * Shows a chart in the notebook. The bundle carries the SVG both as `image/svg+xml` and inline in
 * `text/html`, because nbconvert 6.5's HTML export empties `image/svg+xml` outputs.
 * Outside Jupyter it prints one short note (once per process). Resolves to nothing, so that a
 * cell ending with `await displayPlot(...)` shows the chart and no stray value.
 */
export async function displayPlot(
  svgOrFigure: string | { outerHTML: string },
  { displayId, update = false }: DisplayPlotOptions = {},
): Promise<void> {
  const kernel = jupyterKernel();
  if (!kernel) {
    noteNoKernel();
    return;
  }
  const svg = withXmlns(typeof svgOrFigure === "string" ? svgOrFigure : svgOrFigure.outerHTML);
  await kernel.display({ "text/html": svg, "image/svg+xml": svg }, {
    raw: true,
    display_id: displayId,
    update,
  });
}

/** Options of LivePlot. */
export interface LivePlotOptions {
  /** Least time between two frames, in milliseconds. */
  intervalMs?: number;
  /** Display id of the chart (a random one by default). */
  displayId?: string;
  /** Clock in milliseconds (tests pass a fake one). */
  now?: () => number;
  /** Where frames go; defaults to displayPlot inside Jupyter, nowhere elsewhere. */
  show?: (svg: string, options: DisplayPlotOptions) => Promise<unknown>;
}

/**
 * A chart that is shown once and then redrawn in place while a loop runs.
 * `update(data)` draws at most once per `intervalMs` (rendering costs tens of milliseconds);
 * `finish()` draws the last data if it was not drawn yet, so the notebook keeps the final frame.
 *
 * @example
 * ```ts
 * const live = new LivePlot((h: LossHistory) => lossPlot(h));
 * for (...) { ...; await live.update(history); }
 * await live.finish();
 * ```
 */
export class LivePlot<T> {
  readonly displayId: string;
  /** Frames drawn so far. */
  frames = 0;
  readonly #render: (data: T) => string;
  readonly #intervalMs: number;
  readonly #now: () => number;
  readonly #show?: (svg: string, options: DisplayPlotOptions) => Promise<unknown>;
  #pending: { data: T } | undefined;
  #lastFrameAt = -Infinity;

  constructor(render: (data: T) => string, options: LivePlotOptions = {}) {
    this.#render = render;
    this.#intervalMs = options.intervalMs ?? 500;
    this.#now = options.now ?? (() => performance.now());
    this.displayId = options.displayId ?? `live-plot-${crypto.randomUUID()}`;
    this.#show = options.show ?? (inJupyter() ? displayPlot : undefined);
    if (!this.#show) noteNoKernel();
  }

  /** Records the latest data; draws it if the last frame is at least `intervalMs` old. */
  async update(data: T): Promise<boolean> {
    this.#pending = { data };
    if (this.#now() - this.#lastFrameAt < this.#intervalMs) return false;
    return await this.#draw();
  }

  /** Draws the latest data if it has not been drawn yet. */
  async finish(): Promise<boolean> {
    return await this.#draw();
  }

  async #draw(): Promise<boolean> {
    if (!this.#pending || !this.#show) return false;
    const { data } = this.#pending;
    this.#pending = undefined;
    this.#lastFrameAt = this.#now();
    const svg = this.#render(data);
    await this.#show(svg, { displayId: this.displayId, update: this.frames > 0 });
    this.frames++;
    return true;
  }
}
