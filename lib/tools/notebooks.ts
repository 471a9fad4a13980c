/**
 * `deno task notebooks [NAME ...]`: executes notebooks headless with Jupyter's nbconvert and the Deno
 * kernel, writing build/notebooks/NAME.ipynb (with outputs) and NAME.html. Sets itself up: Jupyter
 * (Debian packages, when root), the npm dependencies, and the project-local kernelspec.
 */
import { basename, join } from "node:path";
import { defineFlags, parseArgv } from "../cli/args.ts";
import { UserError } from "../util/errors.ts";
import { parseProfile } from "../notebook/show.ts";
import { cellSource, listNotebooks, readNotebook } from "./ipynb.ts";
import { kernelEnv, writeKernelspec } from "./kernelspec.ts";
import { run } from "./proc.ts";

const OUT_DIR = join("build", "notebooks");
const APT_PACKAGES = ["jupyter-nbconvert", "python3-nbclient", "jupyter-client", "jupyter-core"];
const APT_COMMAND = `apt-get update && apt-get install -y --no-install-recommends ${
  APT_PACKAGES.join(" ")
}`;

const HELP = `Execute notebooks headless and export them to HTML.

Usage: deno task notebooks [--timeout SECONDS] [--out DIR] [NAME ...]
       deno task notebooks --kernelspec

NAME            a notebook in notebooks/ (appendix-A or appendix-A.ipynb) or a path;
                default: every notebooks/*.ipynb, in name order
--timeout S     longest time one cell may run, in seconds (default 1800; 0 = no limit)
--out DIR       where the executed notebooks go (default build/notebooks)
--kernelspec    only write the Deno kernelspec (build/jupyter) and print how to start Jupyter
                with it, e.g. for jupyter lab when \`deno\` is not on Jupyter's PATH
-h, --help      this text

Writes DIR/NAME.ipynb (executed, with outputs) and DIR/NAME.html.
Fails (exit 1) naming the notebook and cell when a cell raises an error.

Environment:
  LLM_PROFILE   quick | full | smoke, passed to the notebooks (which read it to size their
                runs; smoke: a step or two, to check a slow device such as a software GPU)
  LLM_BACKEND   tensorflow | webgpu | wasm | cpu, the notebooks' backend (default: automatic)

Set-up done on each run: checks that \`jupyter\` exists (installs it with apt-get when run as
root, otherwise prints the command), runs \`deno install\`, and writes the project's Deno
kernelspec (.jupyter/) to build/jupyter/ with the absolute path of this Deno, for JUPYTER_PATH.`;

/** Makes sure `jupyter nbconvert` runs: installs the Debian packages when root, else explains. */
async function ensureJupyter(): Promise<void> {
  if ((await run(["jupyter", "nbconvert", "--version"], { capture: true })).ok) return;
  if (await canApt()) {
    console.log(`jupyter not found; installing: ${APT_COMMAND}`);
    if (!(await aptInstall(APT_PACKAGES))) {
      throw new UserError("installing Jupyter with apt-get failed");
    }
    return;
  }
  throw new UserError(
    `jupyter nbconvert is needed. Install it with: sudo ${APT_COMMAND}` +
      ` (or elsewhere: pip install nbconvert nbclient jupyter_client)`,
  );
}

/**
 * The fast cpu kernels need a BLAS (lib/kernels/overrides/blas.ts); without one the notebooks still run, but
 * training is many times slower. Install Debian's OpenBLAS when root, else say how.
 */
async function ensureBlas(): Promise<void> {
  const { loadBlas } = await import("../kernels/overrides/blas.ts");
  if (loadBlas() != null) return;
  if (await canApt()) {
    console.log("no BLAS found; installing: apt-get install -y libopenblas0-pthread");
    if (await aptInstall(["libopenblas0-pthread"])) return;
  }
  console.log(
    "warning: no BLAS found, so training runs on slow JS kernels; install one: " +
      "sudo apt-get install libopenblas0-pthread (macOS: built in)",
  );
}

/** True when running as root on a machine with apt-get. */
async function canApt(): Promise<boolean> {
  return Deno.uid() === 0 && (await run(["apt-get", "--version"], { capture: true })).ok;
}

/** apt-get update, then install the packages; true when both succeed. */
async function aptInstall(packages: string[]): Promise<boolean> {
  const env = { DEBIAN_FRONTEND: "noninteractive" };
  return (await run(["apt-get", "update"], { env })).ok &&
    (await run(["apt-get", "install", "-y", "--no-install-recommends", ...packages], { env })).ok;
}

/**
 * The failing cell of an nbconvert CellExecutionError, matched back to its notebook index.
 * `cellSources` holds each cell's source, undefined for cells that are not code.
 */
export function describeFailure(stderr: string, cellSources: (string | undefined)[]): string {
  const at = stderr.indexOf("An error occurred while executing the following cell:");
  if (at < 0) {
    // Not a cell error (kernel died, timeout, bad notebook): show the end of nbconvert's report.
    return stderr.trim().split("\n").slice(-15).join("\n");
  }
  const report = stderr.slice(at);
  const parts = report.split(/^-{18}$/m);
  const source = (parts[1] ?? "").trim();
  const index = cellSources.findIndex((s) => s?.trim() === source);
  const error = (parts[2] ?? "").trim().split("\n").slice(0, 20).join("\n");
  const where = index >= 0 ? `cell ${index + 1}` : "a cell";
  return `${where} failed:\n${indent(source)}\n${indent(error)}`;
}

function indent(text: string): string {
  return text.split("\n").map((l) => `    ${l}`).join("\n");
}

/** Result of one notebook run. */
interface NotebookResult {
  name: string;
  ok: boolean;
  seconds: number;
}

/** Executes one notebook to OUT/NAME.ipynb, then exports NAME.html. */
async function runNotebook(
  path: string,
  timeoutS: number,
  env: Record<string, string>,
  outDir: string,
): Promise<NotebookResult> {
  const name = basename(path, ".ipynb");
  const executed = join(outDir, `${name}.ipynb`);
  const html = join(outDir, `${name}.html`);
  // Old results would pass for new ones if this run fails.
  for (const f of [executed, html]) await Deno.remove(f).catch(() => {});
  const t0 = performance.now();
  const seconds = () => (performance.now() - t0) / 1000;
  // nbconvert writes NAME.partial.EXT; renaming it makes each file appear whole or not at all.
  const partial = `${name}.partial`;
  const execution = await run([
    "jupyter",
    "nbconvert",
    "--to",
    "notebook",
    "--execute",
    "--ExecutePreprocessor.kernel_name=deno",
    `--ExecutePreprocessor.timeout=${timeoutS > 0 ? timeoutS : -1}`,
    "--output-dir",
    outDir,
    "--output",
    partial,
    path,
  ], { capture: true, env });
  if (!execution.ok) {
    const { cells } = await readNotebook(path);
    const sources = cells.map((c) => c.cell_type === "code" ? cellSource(c) : undefined);
    console.error(`error: ${path}: ${describeFailure(execution.stderr, sources)}`);
    await Deno.remove(join(outDir, `${partial}.ipynb`)).catch(() => {});
    return { name, ok: false, seconds: seconds() };
  }
  await Deno.rename(join(outDir, `${partial}.ipynb`), executed);
  const exp = await run(
    [
      "jupyter",
      "nbconvert",
      "--to",
      "html",
      "--output-dir",
      outDir,
      "--output",
      partial,
      executed,
    ],
    { capture: true, env },
  );
  if (!exp.ok) {
    console.error(`error: ${path}: HTML export failed:\n${indent(exp.stderr.trim())}`);
    return { name, ok: false, seconds: seconds() };
  }
  await Deno.rename(join(outDir, `${partial}.html`), html);
  return { name, ok: true, seconds: seconds() };
}

/** Sets up, runs the notebooks and prints a line per notebook plus a summary; returns failures. */
export async function runNotebooks(
  names: string[],
  timeoutS: number,
  outDir = OUT_DIR,
): Promise<number> {
  const profile = Deno.env.get("LLM_PROFILE");
  parseProfile(profile); // a bad value fails here, not in every notebook's first cell
  const notebooks = await listNotebooks(names);
  if (notebooks.length === 0) throw new UserError("no notebooks to run in notebooks/");
  await ensureJupyter();
  await ensureBlas();
  if (!(await run([Deno.execPath(), "install", "--quiet"])).ok) {
    throw new UserError("deno install failed");
  }
  await Deno.mkdir(outDir, { recursive: true });
  // The kernelspec with this Deno's absolute path: Jupyter's PATH may lack `deno`.
  const env = await kernelEnv();
  console.log(
    `notebooks: ${notebooks.length} to run, LLM_PROFILE=${profile ?? "(unset)"}, ` +
      `LLM_BACKEND=${Deno.env.get("LLM_BACKEND") ?? "(unset)"}, ` +
      `cell timeout ${timeoutS > 0 ? `${timeoutS} s` : "none"}`,
  );
  const t0 = performance.now();
  const results: NotebookResult[] = [];
  for (const path of notebooks) {
    console.log(`running ${path} ...`);
    const r = await runNotebook(path, timeoutS, env, outDir);
    results.push(r);
    const where = r.ok ? ` -> ${join(outDir, `${r.name}.html`)}` : "";
    console.log(`${r.ok ? "ok    " : "FAILED"} ${r.name} (${r.seconds.toFixed(1)} s)${where}`);
  }
  const failed = results.filter((r) => !r.ok).length;
  const total = (performance.now() - t0) / 1000;
  console.log(
    `notebooks: ${results.length - failed} passed, ${failed} failed (${total.toFixed(1)} s)`,
  );
  return failed;
}

const FLAGS = defineFlags({
  timeout: { type: "number", min: 0, default: 1800, help: "seconds per notebook" },
  out: { type: "string", default: OUT_DIR, help: "folder of the executed notebooks" },
  kernelspec: { type: "boolean", default: false, help: "only write the kernelspec" },
});

if (import.meta.main) {
  try {
    const { flags, positionals, help } = parseArgv(FLAGS, Deno.args, { positionals: true });
    if (help) {
      console.log(HELP);
      Deno.exit(0);
    }
    if (flags.kernelspec) {
      const dir = await writeKernelspec();
      console.log(`wrote ${dir}/kernels/deno/kernel.json (Deno: ${Deno.execPath()})`);
      console.log(`start Jupyter with it: JUPYTER_PATH=${dir} jupyter lab`);
      Deno.exit(0);
    }
    Deno.exit((await runNotebooks(positionals, flags.timeout, flags.out)) === 0 ? 0 : 1);
  } catch (err) {
    if (!(err instanceof UserError)) throw err;
    console.error(`error: ${err.message}`);
    Deno.exit(1);
  }
}
