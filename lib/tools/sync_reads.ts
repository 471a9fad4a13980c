/**
 * The check that refuses synchronous tensor reads (`dataSync()`, `arraySync()`, `bufferSync()`)
 * in the library, the benchmarks, the tests and the notebooks: WebGPU under Deno has none (tfjs'
 * webgpu `readSync` needs an OffscreenCanvas), so code that calls them fails on the GPU path.
 * Reads are `await t.data()` / `await t.array()`.
 */
import { join } from "node:path";
import { cellSource, listNotebooks, readNotebook } from "./ipynb.ts";

/** A synchronous read found in a file or notebook cell. */
export interface SyncRead {
  /** `path:line` or `path cell N, line L`. */
  where: string;
  text: string;
}

const CALL = /\.(dataSync|arraySync|bufferSync)\s*\(/;

/**
 * Files allowed to read synchronously: the fast *cpu* kernels' own tests, which check the cpu
 * backend's storage (buffer pool, in-place updates) and never run on a GPU backend.
 */
const ALLOWED = /^tests\/kernels[^/]*\.ts$/;

/** Lines of `source` (1-based) that call a synchronous read, ignoring comments. */
export function syncReadLines(source: string): { line: number; text: string }[] {
  const out: { line: number; text: string }[] = [];
  source.split("\n").forEach((raw, i) => {
    const code = raw.trimStart();
    if (code.startsWith("*") || code.startsWith("/*")) return; // JSDoc / block comment lines
    if (CALL.test(code.replace(/\/\/.*$/, ""))) out.push({ line: i + 1, text: raw.trim() });
  });
  return out;
}

async function* tsFiles(dir: string): AsyncGenerator<string> {
  let entries: Deno.DirEntry[];
  try {
    entries = [...Deno.readDirSync(dir)];
  } catch {
    return; // a missing folder has nothing to check
  }
  for (const e of entries.sort((a, b) => a.name.localeCompare(b.name))) {
    const path = join(dir, e.name);
    if (e.isDirectory) yield* tsFiles(path);
    else if (e.isFile && path.endsWith(".ts")) yield path;
  }
}

/** Every synchronous read in `dirs` (.ts files) and in the notebooks' code cells. */
export async function findSyncReads(dirs: string[]): Promise<SyncRead[]> {
  const found: SyncRead[] = [];
  for (const dir of dirs) {
    for await (const path of tsFiles(dir)) {
      if (ALLOWED.test(path)) continue;
      for (const { line, text } of syncReadLines(await Deno.readTextFile(path))) {
        found.push({ where: `${path}:${line}`, text });
      }
    }
  }
  for (const path of await listNotebooks().catch(() => [])) {
    const nb = await readNotebook(path);
    nb.cells.forEach((cell, i) => {
      if (cell.cell_type !== "code") return;
      for (const { line, text } of syncReadLines(cellSource(cell))) {
        found.push({ where: `${path} cell ${i + 1}, line ${line}`, text });
      }
    });
  }
  return found;
}
