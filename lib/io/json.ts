/**
 * JSON files of the io layer (config.json, adapter_config.json, `--config`): text that is not
 * JSON is one line naming the file.
 * @module
 */
import { UserError } from "../util/errors.ts";

/** `text` read from `path`, parsed as JSON. */
export function parseJsonFile(text: string, path: string): unknown {
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new UserError(`${path}: not valid JSON (${(err as Error).message})`);
  }
}
