/**
 * `deno task check`: formatting, lint and type checks of the library, tests and benchmarks, and of
 * the notebooks' code (extracted to build/check/NAME.ts), plus a check that committed notebooks
 * carry no outputs. Runs every step, then exits 1 if any failed.
 */
import { join } from "node:path";
import { UserError } from "../util/errors.ts";
import { writeTextAtomic } from "../util/fs.ts";
import { run } from "./proc.ts";
import { parseArgv } from "../cli/args.ts";
import { findSyncReads } from "./sync_reads.ts";
import { findLayerProblems, MAX_LINES } from "./layers.ts";
import {
  cellOfLine,
  cellSource,
  type CellSpan,
  committedOutputs,
  extractCode,
  listNotebooks,
  readNotebook,
} from "./ipynb.ts";

const HELP = `Check formatting, lint and types of lib/, tests/, bench/ and the notebooks.

Usage: deno task check [--help]

Steps (all run; exit 1 if any fails):
  fmt         deno fmt --check lib tests bench; each notebook (code and markdown cells) must
              be as deno fmt writes it
  lint        deno lint lib tests bench
  types       deno check lib tests bench
  sync-reads  no dataSync()/arraySync()/bufferSync() in lib, tests, bench or notebook cells
              (WebGPU under Deno has no synchronous read: use await t.data())
  layers      lib/ imports go from higher layers to lower ones only (util <- model <- io <-
              data <- train <- cli, lib/tools/layers.ts), and no lib file over ${MAX_LINES} lines
  notebooks   no committed outputs or execution counts, Deno kernelspec, no code cell over
              20 lines; code cells of each
              notebook concatenated into build/check/NAME.ts, then deno check + deno lint on them
              (errors name the notebook cell). Strip outputs with:
              deno run -A lib/tools/strip_notebooks.ts`;

const CODE_DIRS = ["lib", "tests", "bench"];
const CHECK_DIR = join("build", "check");

/** Folders (or files) that exist and hold at least one file with one of the extensions. */
function withFiles(paths: string[], exts: string[]): string[] {
  const has = (p: string): boolean => {
    try {
      const st = Deno.statSync(p);
      if (st.isFile) return exts.some((e) => p.endsWith(e));
      for (const e of Deno.readDirSync(p)) if (has(join(p, e.name))) return true;
    } catch {
      // Missing folder: nothing to check there.
    }
    return false;
  };
  return paths.filter(has);
}

/** Notebook code, extracted: the module path and its cell spans, per notebook. */
interface Extracted {
  notebook: string;
  module: string;
  spans: CellSpan[];
}

/** Adds "[notebooks/X.ipynb cell C, line L]" after each build/check/X.ts:LINE location. */
function annotate(output: string, extracted: Extracted[]): string {
  return output.replace(/(build\/check\/[^/\s:]+\.ts):(\d+)(:\d+)?/g, (m, module, line) => {
    const e = extracted.find((x) => x.module === module);
    const at = e && cellOfLine(e.spans, Number(line));
    return at ? `${m} [${e.notebook} cell ${at.cell}, line ${at.line}]` : m;
  });
}

/** Longest code cell a notebook may hold: prose, then a short cell calling the library. */
export const MAX_CELL_LINES = 20;

/** "cell N has M lines" for each code cell over {@link MAX_CELL_LINES} (cells count from 1). */
export function longCells(cells: Parameters<typeof cellSource>[0][]): string[] {
  return cells.flatMap((c, i) => {
    if (c.cell_type !== "code") return [];
    const lines = cellSource(c).trimEnd().split("\n").length;
    return lines > MAX_CELL_LINES
      ? [`cell ${i + 1} has ${lines} lines of code (at most ${MAX_CELL_LINES}: move logic to lib/)`]
      : [];
  });
}

/** Extracts every notebook's code and runs deno check + lint on it; returns problems found. */
async function checkNotebooks(): Promise<boolean> {
  const notebooks = await listNotebooks();
  if (notebooks.length === 0) {
    console.log("no notebooks");
    return true;
  }
  let ok = true;
  await Deno.remove(CHECK_DIR, { recursive: true }).catch(() => {});
  const extracted: Extracted[] = [];
  for (const path of notebooks) {
    const nb = await readNotebook(path);
    for (const p of committedOutputs(nb)) {
      console.error(`${path}: ${p} (commit notebooks stripped)`);
      ok = false;
    }
    for (const problem of longCells(nb.cells)) {
      console.error(`${path}: ${problem}`);
      ok = false;
    }
    if (nb.metadata.kernelspec?.name !== "deno") {
      console.error(
        `${path}: kernelspec.name is "${nb.metadata.kernelspec?.name}", expected "deno"`,
      );
      ok = false;
    }
    const name = path.replace(/^.*\//, "").replace(/\.ipynb$/, "");
    const module = join(CHECK_DIR, `${name}.ts`);
    const { code, spans } = extractCode(nb, path, module);
    await writeTextAtomic(module, code);
    extracted.push({ notebook: path, module, spans });
  }
  const modules = extracted.map((e) => e.module);
  // build/ is excluded from lint in deno.json, so lint these with the project's rules only.
  const config = JSON.parse(await Deno.readTextFile("deno.json"));
  const lintConfig = join(CHECK_DIR, "lint.json");
  await writeTextAtomic(lintConfig, JSON.stringify({ lint: { rules: config.lint?.rules ?? {} } }));
  for (
    const cmd of [["deno", "check", ...modules], [
      "deno",
      "lint",
      "--config",
      lintConfig,
      ...modules,
    ]]
  ) {
    const r = await run(cmd, { capture: true, env: { NO_COLOR: "1" } });
    if (!r.ok) {
      console.error(annotate(r.stdout + r.stderr, extracted).trimEnd());
      ok = false;
    }
  }
  if (ok) console.log(`${notebooks.length} notebook(s): clean, code checks and lints`);
  return ok;
}

/**
 * Whether each notebook is exactly what `deno fmt` would write (code and markdown cells).
 * Not `deno fmt --check`: Deno 2.9 reports every notebook whose cells lack a final newline (as
 * Jupyter saves them) even when formatting changes nothing, so the text is compared instead.
 */
async function fmtNotebooks(): Promise<boolean> {
  let ok = true;
  for (const path of await listNotebooks()) {
    const text = await Deno.readTextFile(path);
    const child = new Deno.Command(Deno.execPath(), {
      args: ["fmt", "--ext", "ipynb", "-"],
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const writer = child.stdin.getWriter();
    await writer.write(new TextEncoder().encode(text));
    await writer.close();
    const out = await child.output();
    if (!out.success || new TextDecoder().decode(out.stdout) !== text) {
      console.error(`${path}: not formatted; run: deno fmt ${path}`);
      ok = false;
    }
  }
  return ok;
}

/** Lists every synchronous tensor read; true when there is none. */
async function checkSyncReads(): Promise<boolean> {
  const found = await findSyncReads(CODE_DIRS);
  for (const f of found) {
    console.error(`${f.where}: synchronous read (use await t.data()): ${f.text}`);
  }
  if (found.length === 0) console.log("no synchronous tensor reads");
  return found.length === 0;
}

/** Lists every upward import and oversized lib file; true when there is none. */
async function checkLayers(): Promise<boolean> {
  const found = await findLayerProblems("lib");
  for (const p of found) console.error(`${p.where}: ${p.message}`);
  if (found.length === 0) console.log("lib/ imports go one way; no file over the limit");
  return found.length === 0;
}

/** Runs every step and prints a summary; returns the number of failed steps. */
export async function check(): Promise<number> {
  const dirs = withFiles(CODE_DIRS, [".ts"]);
  const steps: [string, () => Promise<boolean>][] = [
    ["fmt", async () => {
      const code = (await run(["deno", "fmt", "--check", ...dirs])).ok;
      return (await fmtNotebooks()) && code;
    }],
    ["lint", async () => (await run(["deno", "lint", ...dirs])).ok],
    ["types", async () => (await run(["deno", "check", ...dirs])).ok],
    ["sync-reads", checkSyncReads],
    ["layers", checkLayers],
    ["notebooks", checkNotebooks],
  ];
  const failed: string[] = [];
  for (const [name, step] of steps) {
    console.log(`== check: ${name}`);
    if (!(await step())) failed.push(name);
  }
  console.log(
    failed.length === 0
      ? `check: all ${steps.length} steps passed`
      : `check: ${failed.length} of ${steps.length} steps failed: ${failed.join(", ")}`,
  );
  return failed.length;
}

if (import.meta.main) {
  try {
    if (parseArgv({}, Deno.args).help) {
      console.log(HELP);
      Deno.exit(0);
    }
    Deno.exit((await check()) === 0 ? 0 : 1);
  } catch (err) {
    if (!(err instanceof UserError)) throw err;
    console.error(`error: ${err.message}`);
    Deno.exit(1);
  }
}
