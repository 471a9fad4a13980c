/**
 * `deno task llm <command> [--flags]`: the library's command-line face. Failures print one line
 * (`error: ...`) on stderr and exit 1.
 */
import { type Command, parseFlags } from "./cli/args.ts";
import { UserError } from "./util/errors.ts";
import { modelInfo } from "./cli/model_info.ts";
import { generateCmd } from "./cli/generate.ts";
import { downloadCmd } from "./cli/download.ts";
import { evaluateCmd } from "./cli/evaluate.ts";
import { pretrainCmd } from "./cli/pretrain.ts";
import { finetuneCmd } from "./cli/finetune.ts";

export const COMMANDS: Command[] = [
  modelInfo,
  generateCmd,
  pretrainCmd,
  finetuneCmd,
  evaluateCmd,
  downloadCmd,
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
    if (err instanceof UserError) {
      console.error(`error: ${err.message}`);
      return 1;
    }
    throw err;
  }
}

if (import.meta.main) Deno.exit(await main(Deno.args));
