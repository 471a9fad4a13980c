/** Running a command from the project's tools. */

/** Outcome of a command: success, and its output when captured. */
export interface RunResult {
  ok: boolean;
  /** Captured stdout (empty when inherited). */
  stdout: string;
  /** Captured stderr, or why the program could not start. */
  stderr: string;
}

/** Options of run: capture output instead of passing it through, and extra environment. */
export interface RunOptions {
  capture?: boolean;
  env?: Record<string, string>;
}

/**
 * Runs `cmd` (no stdin); "deno" means this very Deno executable. A program that is not installed
 * gives `ok: false` rather than an exception.
 */
export async function run(
  cmd: string[],
  { capture = false, env }: RunOptions = {},
): Promise<RunResult> {
  const program = cmd[0] === "deno" ? Deno.execPath() : cmd[0];
  try {
    const out = await new Deno.Command(program, {
      args: cmd.slice(1),
      stdin: "null",
      stdout: capture ? "piped" : "inherit",
      stderr: capture ? "piped" : "inherit",
      env,
    }).output();
    if (!capture) return { ok: out.success, stdout: "", stderr: "" };
    const dec = new TextDecoder();
    return { ok: out.success, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
    return { ok: false, stdout: "", stderr: `${cmd[0]}: not found` };
  }
}
