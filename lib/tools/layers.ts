/**
 * The layering check of `deno task check`: `lib/` is in folders by layer (docs/ARCHITECTURE.md)
 * and a file may import only from its own layer or a lower one, so `model/` never reaches up to
 * `train/` or `cli/`. Also refuses a lib file over MAX_LINES lines.
 */
import { dirname, join, relative, resolve } from "node:path";

/** Layers of lib/, lowest first (folder or top-level file -> rank). */
export const LAYERS: Readonly<Record<string, number>> = {
  util: 0,
  kernels: 1,
  webgpu: 1,
  "backend.ts": 1,
  model: 2,
  io: 3,
  // Plots, show(), the progress display and Stop: they import only util, and the downloads in
  // io/ report their progress through notebook/progress.ts.
  notebook: 1,
  data: 4,
  train: 5,
  "judge.ts": 5,
  "export.ts": 5,
  appendix_a: 6,
  "profiles.ts": 6,
  "notebook_setup.ts": 6,
  cli: 7,
  "cli.ts": 7,
  tools: 7,
};

/** A lib file may have at most this many lines (the style asks for ~400). */
export const MAX_LINES = 450;

/** Files allowed over MAX_LINES for now, each with the reason (keep this list short). */
export const OVERSIZE_ALLOWED: Readonly<Record<string, string>> = {
  "lib/kernels/simd.ts": "hand-written WebAssembly SIMD module; its split belongs to issue 12",
};

/** One refused import or file. */
export interface LayerProblem {
  /** `lib/model/gpt.ts:12` */
  where: string;
  message: string;
}

/** The layer of a path inside lib/ (`lib/model/gpt.ts` -> "model"), or null outside lib/. */
export function layerOf(path: string): string | null {
  const parts = path.split("/");
  if (parts[0] !== "lib" || parts.length < 2) return null;
  return parts[1];
}

const IMPORT = /(?:\bfrom\s+|\bimport\s*\(\s*|^\s*import\s+)["'](\.{1,2}\/[^"']+)["']/;

/**
 * The problems of one lib file (`path` relative to the repository root): imports that go up a
 * layer, an unknown layer, or too many lines.
 */
export function layerProblems(path: string, source: string): LayerProblem[] {
  const out: LayerProblem[] = [];
  const own = layerOf(path);
  if (own === null) return out;
  const rank = LAYERS[own];
  if (rank === undefined) {
    return [{ where: path, message: `"lib/${own}" has no layer in lib/tools/layers.ts LAYERS` }];
  }
  const lines = source.split("\n");
  if (lines.length > MAX_LINES && !(path in OVERSIZE_ALLOWED)) {
    out.push({ where: path, message: `${lines.length} lines (at most ${MAX_LINES}): split it` });
  }
  lines.forEach((line, i) => {
    const code = line.trimStart();
    if (code.startsWith("*") || code.startsWith("//")) return; // comments and JSDoc examples
    const m = IMPORT.exec(code);
    if (!m) return;
    const target = relative(".", resolve(dirname(path), m[1]));
    const layer = layerOf(target);
    if (layer === null || layer === own) return;
    const to = LAYERS[layer];
    if (to === undefined || to > rank) {
      out.push({
        where: `${path}:${i + 1}`,
        message: `lib/${own} (layer ${rank}) imports lib/${layer} (layer ${to ?? "unknown"}): ` +
          `imports go from higher layers to lower ones only`,
      });
    }
  });
  return out;
}

async function* libFiles(dir: string): AsyncGenerator<string> {
  for await (const e of Deno.readDir(dir)) {
    const path = join(dir, e.name);
    if (e.isDirectory) yield* libFiles(path);
    else if (e.name.endsWith(".ts")) yield path;
  }
}

/** Every problem under `lib` (a path relative to the repository root), sorted by place. */
export async function findLayerProblems(lib = "lib"): Promise<LayerProblem[]> {
  const out: LayerProblem[] = [];
  for await (const path of libFiles(lib)) {
    out.push(...layerProblems(path, await Deno.readTextFile(path)));
  }
  return out.sort((a, b) => (a.where < b.where ? -1 : a.where > b.where ? 1 : 0));
}
