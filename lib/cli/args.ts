/**
 * Flag parsing for `deno task llm <command>`: typed flags with defaults, `--help`, and one clear
 * error line for unknown flags or bad values.
 */
import { parseArgs } from "node:util";
import { UserError } from "../util/errors.ts";

/** One flag: its kind, default, and the help line. */
export interface FlagSpec {
  type: "string" | "int" | "number" | "boolean";
  help: string;
  default?: string | number | boolean;
  /** Must be > 0 (numbers) */
  positive?: boolean;
  /** Allowed values (strings). */
  choices?: string[];
  required?: boolean;
}

/** A subcommand of the CLI. */
export interface Command {
  name: string;
  summary: string;
  usage: string;
  flags: Record<string, FlagSpec>;
  run(flags: Flags): Promise<void>;
}

export type Flags = Record<string, string | number | boolean | undefined>;

/** The help text of a command, made from its flag specs. */
export function helpText(cmd: Command): string {
  const lines = [`deno task llm ${cmd.usage}`, "", cmd.summary, "", "Flags:"];
  const width = Math.max(...Object.keys(cmd.flags).map((k) => k.length)) + 4;
  for (const [name, spec] of Object.entries(cmd.flags)) {
    const def = spec.default !== undefined
      ? ` (default ${spec.default})`
      : spec.required
      ? " (required)"
      : "";
    const choices = spec.choices ? ` [${spec.choices.join("|")}]` : "";
    lines.push(`  --${name.padEnd(width)}${spec.help}${choices}${def}`);
  }
  lines.push(`  --${"help".padEnd(width)}show this help`);
  return lines.join("\n");
}

/** Parses argv against the specs; returns null when --help was asked for (help printed). */
export function parseFlags(cmd: Command, argv: string[]): Flags | null {
  const options: Record<string, { type: "string" | "boolean" }> = { help: { type: "boolean" } };
  for (const [name, spec] of Object.entries(cmd.flags)) {
    options[name] = { type: spec.type === "boolean" ? "boolean" : "string" };
  }
  let values: Record<string, string | boolean | undefined>;
  try {
    ({ values } = parseArgs({ args: argv, options, strict: true, allowPositionals: false }));
  } catch (err) {
    throw new UserError(`${cmd.name}: ${(err as Error).message.split("\n")[0]} (see --help)`);
  }
  if (values.help) {
    console.log(helpText(cmd));
    return null;
  }
  const out: Flags = {};
  for (const [name, spec] of Object.entries(cmd.flags)) {
    const raw = values[name];
    if (raw === undefined) {
      if (spec.required) throw new UserError(`${cmd.name}: --${name} is required (see --help)`);
      out[name] = spec.default;
      continue;
    }
    out[name] = convert(cmd.name, name, spec, raw);
  }
  return out;
}

function convert(
  cmd: string,
  name: string,
  spec: FlagSpec,
  raw: string | boolean,
): string | number | boolean {
  if (spec.type === "boolean") return raw as boolean;
  const text = String(raw);
  if (spec.type === "string") {
    if (spec.choices && !spec.choices.includes(text)) {
      throw new UserError(
        `${cmd}: --${name} must be one of ${spec.choices.join(", ")} (got "${text}")`,
      );
    }
    return text;
  }
  const value = Number(text);
  const isInt = spec.type === "int";
  if (text.trim() === "" || !Number.isFinite(value) || (isInt && !Number.isInteger(value))) {
    throw new UserError(
      `${cmd}: --${name} must be ${isInt ? "an integer" : "a number"} (got "${text}")`,
    );
  }
  if (spec.positive && !(value > 0)) {
    throw new UserError(`${cmd}: --${name} must be > 0 (got ${text})`);
  }
  return value;
}
