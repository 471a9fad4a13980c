/**
 * `deno task llm <command> [--flags]`: the library's command-line face, and its error boundary.
 * Bad input and faults of the environment (a full disk, a read-only folder, a missing file) print
 * one line (`error: ...`) on stderr and exit 1; a run stopped by SIGINT/SIGTERM exits 130/143; any
 * other error is a bug: one "internal error" line and exit 70, the stack only with LLM_DEBUG=1.
 */
import { type Command, parseFlags } from "./cli/args.ts";
import { describeFsError, ExitCode, UserError } from "./util/errors.ts";
import { modelInfo } from "./cli/model_info.ts";
import { generateCmd } from "./cli/generate.ts";
import { downloadCmd } from "./cli/download.ts";
import { evaluateCmd } from "./cli/evaluate.ts";
import { pretrainCmd } from "./cli/pretrain.ts";
import { finetuneCmd } from "./cli/finetune.ts";
import { exportCmd } from "./cli/export.ts";

export const COMMANDS: Command[] = [
  modelInfo,
  generateCmd,
  pretrainCmd,
  finetuneCmd,
  evaluateCmd,
  downloadCmd,
  exportCmd,
];

function usage(): string {
  const lines = [
    "usage: deno task llm <command> [--flags]   (each command has --help)",
    "",
    "commands:",
  ];
  for (const c of COMMANDS) lines.push(`  ${c.name.padEnd(12)}${c.summary}`);
  return lines.join("\n");
}

/** Runs the CLI; returns the exit code. */
export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === "--help" || name === "-h" || name === "help") {
    console.log(usage());
    return name ? 0 : 1;
  }
  const cmd = COMMANDS.find((c) => c.name === name);
  try {
    if (!cmd) {
      throw new UserError(
        `unknown command "${name}"; commands: ${COMMANDS.map((c) => c.name).join(", ")}`,
      );
    }
    const flags = parseFlags(cmd, rest);
    if (flags) await cmd.run(flags);
    return 0;
  } catch (err) {
    return reportError(err);
  }
}

/** V8's words for an allocation it could not make: the machine's limit, not a bug. */
const OUT_OF_MEMORY =
  /Array buffer allocation failed|Invalid typed array length|Invalid array length/;

/** Exit code of an error that is a bug (BSD's EX_SOFTWARE). */
export const INTERNAL_ERROR_EXIT = 70;

/** Prints an error the way the CLI promises and returns the exit code. */
export function reportError(err: unknown): number {
  if (err instanceof ExitCode) return err.code;
  const user = describeFsError(err, "file system");
  if (user instanceof UserError) {
    console.error(`error: ${user.message}`);
    return 1;
  }
  const e = err instanceof Error ? err : new Error(String(err));
  if (e instanceof RangeError && OUT_OF_MEMORY.test(e.message)) {
    console.error(
      `error: out of memory (${e.message.split("\n")[0]}): the model, batch or context is too ` +
        "large for this machine; lower --batch-size, --context-length or the model size",
    );
    return 1;
  }
  if (Deno.env.get("LLM_DEBUG") === "1") {
    console.error(e.stack ?? String(e));
  } else {
    console.error(
      `error: internal error: ${e.name}: ${e.message.split("\n")[0]} ` +
        "(a bug; run again with LLM_DEBUG=1 for the stack trace, and please report it)",
    );
  }
  return INTERNAL_ERROR_EXIT;
}

if (import.meta.main) {
  // An error that escapes every await (a stray promise, a timer) gets the same one line.
  globalThis.addEventListener("unhandledrejection", (e) => {
    e.preventDefault();
    Deno.exit(reportError(e.reason));
  });
  globalThis.addEventListener("error", (e) => {
    e.preventDefault();
    Deno.exit(reportError(e.error));
  });
  Deno.exit(await main(Deno.args));
}
