/**
 * The project's Deno kernelspec, made findable. `.jupyter/kernels/deno/kernel.json` starts the
 * kernel as plain `deno`, which fails when Deno is not on the Jupyter server's PATH (a `deno`
 * installed by npm or in ~/.deno/bin often is not). Before running Jupyter, the tools write a copy
 * to `build/jupyter/kernels/deno/` whose first argument is the absolute path of the running Deno,
 * and point JUPYTER_PATH there.
 */
import { delimiter, join, resolve } from "node:path";
import { writeTextAtomic } from "../util/fs.ts";

/** The committed kernelspec, relative to the repository root. */
export const KERNELSPEC = join(".jupyter", "kernels", "deno", "kernel.json");

/** Where the resolved copy goes (a folder for JUPYTER_PATH). */
export const KERNEL_DIR = join("build", "jupyter");

/** The kernelspec with `deno` replaced by this Deno's absolute path (other arguments kept). */
export function resolveKernelspec(spec: { argv: string[] }, deno = Deno.execPath()) {
  const [exe, ...rest] = spec.argv;
  return { ...spec, argv: [exe === "deno" ? deno : exe, ...rest] };
}

/** Writes the resolved kernelspec under `root/build/jupyter`; returns that folder (absolute). */
export async function writeKernelspec(root = "."): Promise<string> {
  const spec = JSON.parse(await Deno.readTextFile(join(root, KERNELSPEC)));
  const dir = resolve(root, KERNEL_DIR);
  const file = join(dir, "kernels", "deno", "kernel.json");
  await Deno.mkdir(join(dir, "kernels", "deno"), { recursive: true });
  await writeTextAtomic(file, JSON.stringify(resolveKernelspec(spec), null, 2) + "\n");
  return dir;
}

/**
 * Environment for a Jupyter process that runs the project's notebooks: JUPYTER_PATH with the
 * resolved kernelspec first, and the kernels' connection files in `runtimeDir` (HOME may be
 * read-only in CI).
 */
export async function kernelEnv(
  { root = ".", runtimeDir = join(root, "build", "jupyter-runtime") } = {},
): Promise<Record<string, string>> {
  const paths = [await writeKernelspec(root), Deno.env.get("JUPYTER_PATH")].filter(Boolean);
  return { JUPYTER_PATH: paths.join(delimiter), JUPYTER_RUNTIME_DIR: resolve(runtimeDir) };
}
