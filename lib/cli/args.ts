/**
 * Flag parsing for `deno task llm <command>` (and bench/, lib/tools/): a flag spec whose parsed
 * values are typed (`defineCommand({ flags: { steps: { type: "int", min: 1 } }, run(f) { f.steps
 * } })` gives `f.steps: number`), range checks written once in the spec, `--help`, and one clear
 * error line for unknown flags or bad values. `--flag value` and `--flag=value` both work, also for
 * negative numbers (`--temperature -1` reaches the range check instead of being mistaken for a
 * flag).
 */
import { UserError } from "../util/errors.ts";

interface FlagBase {
  help: string;
  required?: boolean;
}

/** A text flag, optionally one of `choices`; `repeatable`: every occurrence, in order. */
export interface StringFlag extends FlagBase {
  type: "string";
  default?: string;
  choices?: readonly string[];
  /** `--stop A --stop B` gives ["A", "B"] (none given: []). */
  repeatable?: boolean;
}

/** A number flag (`int`: an integer) with its range. */
export interface NumberFlag extends FlagBase {
  type: "int" | "number";
  default?: number;
  /** Must be > 0. */
  positive?: boolean;
  /** Must be >= min. */
  min?: number;
  /** Must be <= max. */
  max?: number;
}

/** A switch: present is true, absent is its default (false unless given). */
export interface BooleanFlag extends FlagBase {
  type: "boolean";
  default?: boolean;
}

/** One flag: its kind, default, range or choices, and the help line. */
export type FlagSpec = StringFlag | NumberFlag | BooleanFlag;

/** Flag specs by name (without the leading `--`). */
export type FlagSpecs = Record<string, FlagSpec>;

type ValueOf<S> = S extends { repeatable: true } ? string[]
  : S extends { type: "boolean" } ? boolean
  : S extends { type: "int" | "number" } ? number
  : S extends { choices: readonly (infer C extends string)[] } ? C
  : string;

type AlwaysSet<S> = S extends { required: true } ? true
  : S extends { default: unknown } ? true
  : S extends { repeatable: true } ? true
  : S extends { type: "boolean" } ? true
  : false;

/** The parsed values of flag specs `F`: typed, and `undefined` only for optional flags. */
export type Flags<F extends FlagSpecs = FlagSpecs> = {
  -readonly [K in keyof F]: AlwaysSet<F[K]> extends true ? ValueOf<F[K]>
    : ValueOf<F[K]> | undefined;
};

/** A subcommand of the CLI. */
export interface Command<F extends FlagSpecs = FlagSpecs> {
  name: string;
  summary: string;
  usage: string;
  flags: F;
  run(flags: Flags<F>): Promise<void>;
}

/** A command whose `run` receives its flags typed from the specs (no casts). */
export function defineCommand<const F extends FlagSpecs>(cmd: Command<F>): Command<F> {
  return cmd;
}

/** Flag specs kept with their literal types, for parsers outside a Command (bench/, tools). */
export function defineFlags<const F extends FlagSpecs>(flags: F): F {
  return flags;
}

/** The help text of a command, made from its flag specs. */
export function helpText(cmd: Pick<Command, "usage" | "summary" | "flags">): string {
  const lines = [`deno task llm ${cmd.usage}`, "", cmd.summary, "", "Flags:"];
  return [...lines, ...flagHelp(cmd.flags)].join("\n");
}

/** One help line per flag (and `--help`). */
export function flagHelp(flags: FlagSpecs): string[] {
  const lines = [];
  const width = Math.max(4, ...Object.keys(flags).map((k) => k.length)) + 4;
  for (const [name, spec] of Object.entries(flags)) {
    const def = spec.default !== undefined
      ? ` (default ${spec.default})`
      : spec.required
      ? " (required)"
      : "";
    const choices = spec.type === "string" && spec.choices ? ` [${spec.choices.join("|")}]` : "";
    const again = spec.type === "string" && spec.repeatable ? " (repeatable)" : "";
    lines.push(`  --${name.padEnd(width)}${spec.help}${choices}${again}${def}`);
  }
  lines.push(`  --${"help".padEnd(width)}show this help`);
  return lines;
}

/** Options of {@link parseArgv}. */
export interface ParseOptions {
  /** Put before every error message, e.g. the command's name ("pretrain: ..."). */
  prefix?: string;
  /** Accept arguments that are not flags (default false: they are an error). */
  positionals?: boolean;
}

/** What {@link parseArgv} returns. */
export interface ParsedArgv<F extends FlagSpecs> {
  flags: Flags<F>;
  positionals: string[];
  /** `--help` or `-h` was given (then nothing else is checked). */
  help: boolean;
}

/**
 * Parses argv against flag specs: `--name value`, `--name=value`, switches as `--name`. Unknown
 * flags, missing values, wrong types, values out of range and missing required flags are
 * UserErrors with one line.
 */
export function parseArgv<F extends FlagSpecs>(
  specs: F,
  argv: readonly string[],
  { prefix, positionals: allowPositionals = false }: ParseOptions = {},
): ParsedArgv<F> {
  const fail = (msg: string): never => {
    throw new UserError(prefix ? `${prefix}: ${msg}` : msg);
  };
  const usage = (msg: string) => fail(`${msg} (see --help)`);
  const raw = new Map<string, string | boolean | string[]>();
  const positionals: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === "--help" || arg === "-h") return { flags: typed<F>({}), positionals, help: true };
    if (!arg.startsWith("-") || arg === "-" || isNumber(arg)) {
      if (!allowPositionals) usage(`Unexpected argument '${arg}'`);
      positionals.push(arg);
      continue;
    }
    const eq = arg.indexOf("=");
    const name = arg.slice(arg.startsWith("--") ? 2 : 1, eq < 0 ? undefined : eq);
    const spec = Object.hasOwn(specs, name) ? specs[name] : undefined;
    if (!spec || !arg.startsWith("--")) usage(`Unknown option '${arg.split("=")[0]}'`);
    if (spec!.type === "boolean") {
      if (eq >= 0) usage(`Option '--${name}' does not take a value`);
      raw.set(name, true);
      continue;
    }
    let value: string;
    if (eq >= 0) value = arg.slice(eq + 1);
    else {
      const next = argv[i + 1];
      // A value may start with "-" (a negative number), but not with "--" (the next flag).
      if (next === undefined || (next.startsWith("--") && !isNumber(next))) {
        usage(`Option '--${name} <value>' needs a value`);
      }
      value = next;
      i++;
    }
    if (spec!.type === "string" && spec!.repeatable) {
      raw.set(name, [...(raw.get(name) as string[] | undefined) ?? [], value]);
    } else raw.set(name, value);
  }
  const flags: Record<string, string | number | boolean | string[] | undefined> = {};
  for (const [name, spec] of Object.entries(specs)) {
    const given = raw.get(name);
    if (given === undefined) {
      if (spec.required) usage(`--${name} is required`);
      flags[name] = spec.type === "boolean"
        ? spec.default ?? false
        : spec.type === "string" && spec.repeatable
        ? []
        : spec.default;
    } else if (Array.isArray(given)) {
      flags[name] = given.map((v) => String(convert(name, spec, v, fail)));
    } else flags[name] = convert(name, spec, given, fail);
  }
  return { flags: typed<F>(flags), positionals, help: false };
}

/**
 * The one cast of the parser: the loop above fills each flag with a value of its spec's type,
 * which TypeScript cannot follow through `Object.entries`.
 */
function typed<F extends FlagSpecs>(values: Record<string, unknown>): Flags<F> {
  return values as Flags<F>;
}

/** Parses a command's argv; returns null when --help was asked for (help printed). */
export function parseFlags<F extends FlagSpecs>(cmd: Command<F>, argv: string[]): Flags<F> | null {
  const parsed = parseArgv(cmd.flags, argv, { prefix: cmd.name });
  if (parsed.help) {
    console.log(helpText(cmd));
    return null;
  }
  return parsed.flags;
}

function isNumber(text: string): boolean {
  return text.trim() !== "" && Number.isFinite(Number(text));
}

function convert(
  name: string,
  spec: FlagSpec,
  raw: string | boolean,
  fail: (msg: string) => never,
): string | number | boolean {
  if (spec.type === "boolean") return raw === true;
  const text = String(raw);
  if (spec.type === "string") {
    if (spec.choices && !spec.choices.includes(text)) {
      fail(`--${name} must be one of ${spec.choices.join(", ")} (got "${text}")`);
    }
    return text;
  }
  const value = Number(text);
  const isInt = spec.type === "int";
  if (!isNumber(text) || (isInt && !Number.isInteger(value))) {
    fail(`--${name} must be ${isInt ? "an integer" : "a number"} (got "${text}")`);
  }
  const range = checkRange(value, spec);
  if (range) fail(`--${name} must be ${range} (got ${text})`);
  return value;
}

/** The range a value breaks ("> 0", "in [0, 1]", ">= 0"), or null when it is inside. */
export function checkRange(value: number, { positive, min, max }: NumberFlag): string | null {
  if (positive && max !== undefined && !(value > 0 && value <= max)) return `in (0, ${max}]`;
  if (positive && !(value > 0)) return "> 0";
  if (min !== undefined && max !== undefined && !(value >= min && value <= max)) {
    return `in [${min}, ${max}]`;
  }
  if (min !== undefined && !(value >= min)) return `>= ${min}`;
  if (max !== undefined && !(value <= max)) return `<= ${max}`;
  return null;
}
