/**
 * Files of instruction entries with a model's response beside the reference `output` (like the
 * book's `instruction-data-with-response.json`): what the judge and the offline metric score.
 * @module
 */
import { UserError } from "../util/errors.ts";
import { readUtf8File } from "../util/utf8.ts";
import { type InstructionEntry, parseInstructionData } from "./instruction.ts";

/** An instruction entry with the model's response beside the reference `output`. */
export type ResponseEntry = InstructionEntry & Record<string, unknown>;

/** The response of entry `index` under `key`; missing or not a string is one clear line. */
export function responseOf(entry: ResponseEntry, key: string, index: number): string {
  const value = entry[key];
  if (value === undefined) throw new UserError(`entry ${index}: "${key}" is missing`);
  if (typeof value !== "string") {
    throw new UserError(
      `entry ${index}: "${key}" must be a string (got ${value === null ? "null" : typeof value})`,
    );
  }
  return value;
}

/**
 * Reads a JSON file of entries with responses (like `instruction-data-with-response.json`) and
 * checks that every entry has a string `responseKey` (default "model_response").
 */
export async function loadResponseFile(
  path: string,
  { responseKey = "model_response" }: { responseKey?: string } = {},
): Promise<ResponseEntry[]> {
  const text = await readUtf8File(path, "response file");
  const entries = parseInstructionData<ResponseEntry>(text, path);
  entries.forEach((entry, i) => {
    try {
      responseOf(entry, responseKey, i);
    } catch (err) {
      throw new UserError(`${path}: ${(err as Error).message}`);
    }
  });
  return entries;
}
