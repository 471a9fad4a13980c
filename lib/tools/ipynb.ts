/**
 * Jupyter notebook files (nbformat 4) as plain JSON: list them, strip outputs, find committed
 * outputs, and turn code cells into one TypeScript module that `deno check` and `deno lint` read.
 */
import { basename, dirname, join, relative, resolve } from "node:path";
import { UserError } from "../util/errors.ts";

/** One cell of an nbformat 4 notebook (only the fields these tools use are typed). */
export interface Cell {
  cell_type: "code" | "markdown" | "raw";
  source: string | string[];
  metadata: Record<string, unknown>;
  outputs?: unknown[];
  execution_count?: number | null;
  [key: string]: unknown;
}

/** An nbformat 4 notebook. */
export interface Notebook {
  cells: Cell[];
  metadata: {
    kernelspec?: { name?: string; display_name?: string; language?: string };
    language_info?: { name?: string };
    [key: string]: unknown;
  };
  nbformat: number;
  nbformat_minor: number;
}

/** The project's notebook folder, relative to the repository root. */
export const NOTEBOOK_DIR = "notebooks";

/**
 * Notebook paths to work on: every `notebooks/*.ipynb` (sorted) when `names` is empty, otherwise
 * each name resolved as a path, or as `notebooks/NAME(.ipynb)`.
 */
export async function listNotebooks(names: string[] = []): Promise<string[]> {
  if (names.length === 0) {
    const out: string[] = [];
    for await (const e of Deno.readDir(NOTEBOOK_DIR)) {
      if (e.isFile && e.name.endsWith(".ipynb")) out.push(join(NOTEBOOK_DIR, e.name));
    }
    return out.sort();
  }
  const out: string[] = [];
  for (const name of names) {
    const file = name.endsWith(".ipynb") ? name : `${name}.ipynb`;
    const found = [file, join(NOTEBOOK_DIR, basename(file))].find(isFile);
    if (!found) {
      throw new UserError(`no notebook "${name}" (looked for ${file} and in ${NOTEBOOK_DIR}/)`);
    }
    out.push(found);
  }
  return out;
}

function isFile(path: string): boolean {
  try {
    return Deno.statSync(path).isFile;
  } catch {
    return false;
  }
}

/** Reads and parses a notebook, with a clear error for a file that is not one. */
export async function readNotebook(path: string): Promise<Notebook> {
  let nb: Notebook;
  try {
    nb = JSON.parse(await Deno.readTextFile(path));
  } catch (err) {
    throw new UserError(`${path}: not a readable notebook (${(err as Error).message})`);
  }
  if (!Array.isArray(nb?.cells) || nb.nbformat !== 4) {
    throw new UserError(`${path}: not an nbformat 4 notebook`);
  }
  return nb;
}

/** Serialises like Jupyter does (sorted keys, one-space indent, final newline): small diffs. */
export function formatNotebook(nb: Notebook): string {
  return JSON.stringify(sortKeys(nb), null, 1) + "\n";
}

function sortKeys(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(sortKeys);
  if (value && typeof value === "object") {
    const obj = value as Record<string, unknown>;
    return Object.fromEntries(Object.keys(obj).sort().map((k) => [k, sortKeys(obj[k])]));
  }
  return value;
}

/** A cell's source as one string. */
export function cellSource(cell: Cell): string {
  return Array.isArray(cell.source) ? cell.source.join("") : cell.source;
}

/**
 * Removes what running a notebook adds: code cells' outputs and execution counts, and the
 * per-cell `execution` timing metadata JupyterLab records. Returns whether anything changed.
 */
export function stripNotebook(nb: Notebook): boolean {
  let changed = false;
  for (const cell of nb.cells) {
    if (cell.cell_type !== "code") continue;
    if ((cell.outputs?.length ?? 0) > 0 || !("outputs" in cell)) {
      cell.outputs = [];
      changed = true;
    }
    if (cell.execution_count !== null) {
      cell.execution_count = null;
      changed = true;
    }
    if ("execution" in cell.metadata) {
      delete cell.metadata.execution;
      changed = true;
    }
  }
  return changed;
}

/** One line per code cell that carries outputs or an execution count (cells counted from 1). */
export function committedOutputs(nb: Notebook): string[] {
  const problems: string[] = [];
  nb.cells.forEach((cell, i) => {
    if (cell.cell_type !== "code") return;
    const what = [
      (cell.outputs?.length ?? 0) > 0 ? "outputs" : "",
      cell.execution_count != null ? `execution count ${cell.execution_count}` : "",
    ].filter(Boolean);
    if (what.length > 0) problems.push(`cell ${i + 1} has ${what.join(" and ")}`);
  });
  return problems;
}

/** Where each cell's code starts in the extracted module (1-based lines). */
export interface CellSpan {
  /** Cell number in the notebook, counted from 1 over all cells (as Jupyter shows them). */
  cell: number;
  firstLine: number;
  lastLine: number;
}

/** The code cells of a notebook as one module, and which lines came from which cell. */
export interface ExtractedModule {
  code: string;
  spans: CellSpan[];
}

/**
 * Concatenates a notebook's code cells, in order, into one TypeScript module for `deno check` and
 * `deno lint` (a notebook runs like a module with top-level await). Relative import specifiers
 * are rewritten so they resolve from `outPath` exactly as they did from the notebook.
 */
export function extractCode(nb: Notebook, notebookPath: string, outPath: string): ExtractedModule {
  const header = [
    `// Code cells of ${notebookPath}, extracted by lib/tools/check.ts. Do not edit.`,
    "",
  ];
  const lines = [...header];
  const spans: CellSpan[] = [];
  nb.cells.forEach((cell, i) => {
    if (cell.cell_type !== "code") return;
    const src = rewriteRelativeImports(cellSource(cell), dirname(notebookPath), dirname(outPath));
    lines.push(`// --- cell ${i + 1} ---`);
    const body = src.replace(/\n$/, "").split("\n");
    spans.push({ cell: i + 1, firstLine: lines.length + 1, lastLine: lines.length + body.length });
    lines.push(...body, "");
  });
  return { code: lines.join("\n"), spans };
}

/** Rewrites "./x" and "../x" specifiers in import/export statements and import() calls. */
export function rewriteRelativeImports(src: string, fromDir: string, toDir: string): string {
  const re = /(\bfrom\s*|\bimport\s*\(\s*|\bimport\s+)(["'])(\.\.?\/[^"']*)\2/g;
  return src.replace(re, (_m, lead: string, quote: string, spec: string) => {
    let rel = relative(resolve(toDir), resolve(fromDir, spec)).replaceAll("\\", "/");
    if (!rel.startsWith(".")) rel = `./${rel}`;
    return `${lead}${quote}${rel}${quote}`;
  });
}

/** Maps a line of the extracted module back to its notebook cell and line within the cell. */
export function cellOfLine(
  spans: CellSpan[],
  line: number,
): { cell: number; line: number } | undefined {
  const s = spans.find((s) => line >= s.firstLine && line <= s.lastLine);
  return s && { cell: s.cell, line: line - s.firstLine + 1 };
}
