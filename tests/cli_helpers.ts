/** Running `deno task llm ...` from tests: in this process (fast) or as a subprocess (real exit). */
import { main } from "../lib/cli.ts";

/** What a CLI run printed, and its exit code. */
export interface CliResult {
  code: number;
  out: string;
  err: string;
}

/** Runs the CLI in this process, capturing console.log / console.error. */
export async function cli(...argv: string[]): Promise<CliResult> {
  const out: string[] = [], err: string[] = [];
  const { log, error } = console;
  console.log = (...a: unknown[]) => void out.push(a.join(" "));
  console.error = (...a: unknown[]) => void err.push(a.join(" "));
  try {
    const code = await main(argv);
    return { code, out: out.join("\n"), err: err.join("\n") };
  } finally {
    console.log = log;
    console.error = error;
  }
}

/** Runs `fn` with a fresh temporary folder, removed afterwards. */
export async function withTempDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir();
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** Runs `fn` with `server` and a fresh temporary folder; afterwards both are gone. */
export async function withServer<S extends { close(): Promise<void> }>(
  server: S,
  fn: (server: S, dir: string) => Promise<void>,
): Promise<void> {
  try {
    await withTempDir((dir) => fn(server, dir));
  } finally {
    await server.close();
  }
}

/** Runs `deno ARGS` as a child, SIGKILLed after `timeoutMs` so that no test can hang. */
export async function denoChild(
  args: string[],
  timeoutMs = 60_000,
): Promise<Deno.CommandOutput & { stdoutText: string; stderrText: string }> {
  const child = new Deno.Command(Deno.execPath(), { args, stdout: "piped", stderr: "piped" })
    .spawn();
  const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
  try {
    const out = await child.output();
    const dec = new TextDecoder();
    return Object.assign(out, {
      stdoutText: dec.decode(out.stdout),
      stderrText: dec.decode(out.stderr),
    });
  } finally {
    clearTimeout(timer);
  }
}
