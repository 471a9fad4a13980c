/**
 * `deno run -A lib/tools/strip_notebooks.ts [NOTEBOOK ...]`: removes outputs and execution counts
 * from notebooks in place (all of notebooks/ by default), so they can be committed clean.
 * A plain JSON edit: Jupyter is not needed.
 */
import { parseArgv } from "../cli/args.ts";
import { UserError } from "../util/errors.ts";
import { writeTextAtomic } from "../util/fs.ts";
import { formatNotebook, listNotebooks, readNotebook, stripNotebook } from "./ipynb.ts";

const HELP = `Strip outputs and execution counts from notebooks, in place.

Usage: deno run -A lib/tools/strip_notebooks.ts [NOTEBOOK ...]

NOTEBOOK is a path or a name in notebooks/ (with or without .ipynb); default: every notebooks/*.ipynb.
Files that are already clean are not rewritten.`;

/** Strips each notebook; returns the paths that changed. */
export async function stripNotebooks(names: string[]): Promise<string[]> {
  const changed: string[] = [];
  for (const path of await listNotebooks(names)) {
    const nb = await readNotebook(path);
    if (stripNotebook(nb)) {
      await writeTextAtomic(path, formatNotebook(nb));
      changed.push(path);
    }
  }
  return changed;
}

if (import.meta.main) {
  try {
    const { positionals, help } = parseArgv({}, Deno.args, { positionals: true });
    if (help) {
      console.log(HELP);
      Deno.exit(0);
    }
    const changed = await stripNotebooks(positionals);
    for (const p of changed) console.log(`stripped ${p}`);
    console.log(changed.length === 0 ? "notebooks already clean" : `${changed.length} stripped`);
  } catch (err) {
    if (!(err instanceof UserError)) throw err;
    console.error(`error: ${err.message}`);
    Deno.exit(1);
  }
}
