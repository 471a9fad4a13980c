/**
 * Instruction data (chapter 7): the `{instruction, input, output}` entries, the two prompt
 * templates (Alpaca, and Phi-3 from exercise 7.1), validation of a JSON file of entries, and the
 * book's 85% / 10% / 5% train / test / validation split.
 *
 * @example
 * ```ts
 * import { formatInput, formatResponse, loadInstructionFile, splitData } from "./instruction.ts";
 * const data = await loadInstructionFile("data/instruction-data.json");
 * const { train, test, val } = splitData(data); // 935 / 110 / 55
 * console.log(formatInput(data[50]) + formatResponse(data[50]));
 * ```
 * @module
 */
import { UserError } from "../util/errors.ts";
import { decodeUtf8 } from "../util/utf8.ts";
import { END_OF_TEXT_TEXT } from "./tokenizer.ts";

/** One instruction-following example, as in `instruction-data.json` and Stanford Alpaca. */
export interface InstructionEntry {
  instruction: string;
  /** Optional extra input; an empty string means "none" (no `### Input:` section). */
  input?: string;
  /** The desired response. */
  output: string;
}

/** The prompt styles: "alpaca" (the chapter's) and "phi3" (exercise 7.1). */
/** The prompt styles, default first. */
export const PROMPT_TEMPLATES = ["alpaca", "phi3"] as const;
export type PromptTemplate = typeof PROMPT_TEMPLATES[number];

/** Options of the formatting functions. */
export interface FormatOptions {
  /** Prompt style; the book's default is "alpaca". */
  template?: PromptTemplate;
}

/** The first line of every Alpaca-style prompt. */
export const ALPACA_PREAMBLE = "Below is an instruction that describes a task. " +
  "Write a response that appropriately completes the request.";

/**
 * The prompt part of an entry (the book's `format_input`): instruction plus optional input.
 * Alpaca: preamble, `\n\n### Instruction:\n{instruction}`, then `\n\n### Input:\n{input}` when
 * input is non-empty. Phi-3 (`format_input_phi`): `<|user|>\n{instruction}` then `\n{input}`.
 */
export function formatInput(
  entry: InstructionEntry,
  { template = "alpaca" }: FormatOptions = {},
): string {
  if (template === "phi3") {
    return `<|user|>\n${entry.instruction}` + (entry.input ? `\n${entry.input}` : "");
  }
  return `${ALPACA_PREAMBLE}\n\n### Instruction:\n${entry.instruction}` +
    (entry.input ? `\n\n### Input:\n${entry.input}` : "");
}

/**
 * The response part that follows the prompt during training: `\n\n### Response:\n{output}`
 * (Alpaca) or `\n<|assistant|>:\n{output}` (Phi-3, as in the book's exercise solution).
 */
export function formatResponse(
  entry: InstructionEntry,
  { template = "alpaca" }: FormatOptions = {},
): string {
  return responsePrefix({ template }) + entry.output;
}

/** The text that opens the response: `\n\n### Response:\n` or `\n<|assistant|>:\n`. */
export function responsePrefix({ template = "alpaca" }: FormatOptions = {}): string {
  return template === "phi3" ? "\n<|assistant|>:\n" : "\n\n### Response:\n";
}

/** Prompt plus response: the full training text of one entry. */
export function formatEntry(entry: InstructionEntry, options: FormatOptions = {}): string {
  return formatInput(entry, options) + formatResponse(entry, options);
}

/**
 * Cuts the model's answer out of a generated text, as the book does: drop the prompt, remove the
 * response header (`### Response:` or `<|assistant|>:`), and trim.
 */
export function extractResponse(
  generatedText: string,
  inputText: string,
  { template = "alpaca" }: FormatOptions = {},
): string {
  const header = template === "phi3" ? "<|assistant|>:" : "### Response:";
  const rest = generatedText.startsWith(inputText)
    ? generatedText.slice(inputText.length)
    : generatedText;
  return rest.replaceAll(header, "").trim();
}

/** "number", "null", "array", ... for error messages. */
function kindOf(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "array";
  return typeof value;
}

/** Line and column (1-based) of a character offset, for JSON error messages. */
function lineColumn(text: string, offset: number): string {
  const before = text.slice(0, offset);
  const line = before.split("\n").length;
  const column = offset - before.lastIndexOf("\n");
  return `line ${line}, column ${column}`;
}

/**
 * Offset of the first JSON syntax error in `text` (-1 when there is none). V8's `JSON.parse`
 * messages do not always give a position, so after a failed parse we find it with this small
 * recursive-descent checker.
 */
export function jsonErrorOffset(text: string): number {
  let i = 0;
  const stop = { offset: 0 };
  const fail = (): never => {
    stop.offset = i;
    throw stop;
  };
  const ws = () => {
    while (i < text.length && " \t\n\r".includes(text[i])) i++;
  };
  const string = () => {
    i++; // opening quote
    while (i < text.length) {
      const c = text[i];
      if (c === '"') return void i++;
      if (c < " ") fail();
      if (c === "\\") {
        i++;
        if (text[i] === "u") {
          if (!/^[0-9a-fA-F]{4}$/.test(text.slice(i + 1, i + 5))) fail();
          i += 4;
        } else if (!'"\\/bfnrt'.includes(text[i] ?? "x")) fail();
      }
      i++;
    }
    fail();
  };
  const value = (): void => {
    ws();
    const c = text[i];
    if (c === "{" || c === "[") {
      const close = c === "{" ? "}" : "]";
      i++;
      ws();
      if (text[i] === close) return void i++;
      for (;;) {
        if (c === "{") {
          ws();
          if (text[i] !== '"') fail();
          string();
          ws();
          if (text[i] !== ":") fail();
          i++;
        }
        value();
        ws();
        if (text[i] === ",") i++;
        else if (text[i] === close) return void i++;
        else fail();
      }
    }
    if (c === '"') return string();
    const literal = /^(?:-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?|true|false|null)/.exec(
      text.slice(i, i + 512),
    );
    if (literal === null) fail();
    i += literal![0].length;
  };
  try {
    value();
    ws();
    if (i < text.length) fail();
    return -1;
  } catch (err) {
    if (err === stop) return stop.offset;
    throw err;
  }
}

/** What is wrong with one entry, or null when it is valid. */
function entryProblem(entry: unknown): string | null {
  if (entry === null || typeof entry !== "object" || Array.isArray(entry)) {
    return `must be an object with "instruction" and "output" strings (got ${kindOf(entry)})`;
  }
  const record = entry as Record<string, unknown>;
  for (const key of ["instruction", "output"]) {
    if (!(key in record)) return `"${key}" is missing`;
    if (typeof record[key] !== "string") {
      return `"${key}" must be a string (got ${kindOf(record[key])})`;
    }
  }
  // null is rejected too: the book's `if entry["input"]` would treat it as empty, but a null in a
  // dataset file is more likely a conversion bug than a deliberate "no input".
  if ("input" in record && typeof record.input !== "string") {
    return `"input" must be a string when present (got ${kindOf(record.input)})`;
  }
  // Encoded, it would be token 50256, which the collate takes for the first pad: the entry's real
  // end-of-text target would be masked. The book's tiktoken raises on it too (a disallowed
  // special token), so refuse rather than train on it.
  for (const key of ["instruction", "input", "output"]) {
    if (typeof record[key] === "string" && (record[key] as string).includes(END_OF_TEXT_TEXT)) {
      return `"${key}" contains ${END_OF_TEXT_TEXT}, GPT-2's end-of-text token; remove it ` +
        "(each entry's end is marked by the collate)";
    }
  }
  return null;
}

/**
 * Parses and validates a JSON array of instruction entries. Throws a one-line `UserError` naming
 * the source and the first problem: the JSON position of a syntax error, or the entry index (0-based,
 * as `data[i]` in the book) and field, e.g. `instruction-data.json: entry 17: "output" must be a
 * string (got number)`. Extra keys (such as `model_response`) are kept.
 */
export function parseInstructionData<T extends InstructionEntry = InstructionEntry>(
  text: string,
  source: string,
): T[] {
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (err) {
    const offset = jsonErrorOffset(text);
    const where = offset >= 0 ? ` at ${lineColumn(text, offset)} (position ${offset})` : "";
    throw new UserError(`${source}: invalid JSON${where}: ${(err as Error).message}`);
  }
  if (!Array.isArray(data)) {
    throw new UserError(
      `${source}: expected a JSON array of {"instruction", "input", "output"} objects (got ${
        kindOf(data)
      })`,
    );
  }
  if (data.length === 0) throw new UserError(`${source}: the dataset has no entries`);
  const problems: string[] = [];
  for (let i = 0; i < data.length; i++) {
    const problem = entryProblem(data[i]);
    if (problem !== null) problems.push(`entry ${i}: ${problem}`);
  }
  if (problems.length > 0) {
    const more = problems.length > 1 ? ` (and ${problems.length - 1} more bad entries)` : "";
    throw new UserError(`${source}: ${problems[0]}${more}`);
  }
  return data as T[];
}

/** Reads and validates a JSON file of instruction entries (see `parseInstructionData`). */
export async function loadInstructionFile<T extends InstructionEntry = InstructionEntry>(
  path: string,
): Promise<T[]> {
  let bytes: Uint8Array;
  try {
    bytes = await Deno.readFile(path);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) throw new UserError(`${path}: file not found`);
    throw new UserError(`${path}: cannot read: ${(err as Error).message}`);
  }
  return parseInstructionData<T>(decodeUtf8(bytes, path), path);
}

/** The three parts of a dataset split. */
export interface DataSplit<T> {
  train: T[];
  test: T[];
  val: T[];
}

/** Fractions of `splitData`; validation gets the rest. */
export interface SplitOptions {
  /** Fraction for training (book: 0.85). */
  trainFrac?: number;
  /** Fraction for testing (book: 0.1). */
  testFrac?: number;
}

/**
 * The book's split in file order (no shuffle): train = int(n * 0.85), test = int(n * 0.1), val =
 * the rest. 1,100 entries -> 935 / 110 / 55; Alpaca's 52,002 -> 44,201 / 5,200 / 2,601.
 */
export function splitData<T>(
  entries: readonly T[],
  { trainFrac = 0.85, testFrac = 0.1 }: SplitOptions = {},
): DataSplit<T> {
  // Math.floor of the same float product equals Python's int() for these non-negative values.
  const trainCount = Math.floor(entries.length * trainFrac);
  const testCount = Math.floor(entries.length * testFrac);
  return {
    train: entries.slice(0, trainCount),
    test: entries.slice(trainCount, trainCount + testCount),
    val: entries.slice(trainCount + testCount),
  };
}
