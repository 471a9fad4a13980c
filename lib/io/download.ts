/**
 * Downloads with resume: OpenAI's GPT-2 weights from the Hugging Face Hub (chapter 5.5, appendix
 * D/E, chapter 7) and the Stanford Alpaca data set (exercise 7.3), cached on disk.
 *
 * One transfer (resume, timeouts, size check, progress) is ./download_file.ts; what every Hub
 * download shares (token, Python cache, model.safetensors) is ./hub_fetch.ts.
 *
 * @example
 * ```ts
 * import { downloadPretrained } from "./download.ts";
 * import { loadCheckpoint } from "./weights.ts";
 * const dir = await downloadPretrained("gpt2-small"); // data/cache/gpt2-small/
 * const { config, tensors } = await loadCheckpoint(dir);
 * ```
 * @module
 */
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { UserError } from "../util/errors.ts";
import { exists } from "../util/fs.ts";
import { downloadFile } from "./download_file.ts";
import { fetchSafetensors, fromHfCache, type HubOptions, hubRepo } from "./hub_fetch.ts";

/** OpenAI's GPT-2 sizes and their Hugging Face repositories. */
export const PRETRAINED: Record<string, string> = {
  "gpt2-small": "openai-community/gpt2",
  "gpt2-medium": "openai-community/gpt2-medium",
  "gpt2-large": "openai-community/gpt2-large",
  "gpt2-xl": "openai-community/gpt2-xl",
};

/** Where Stanford Alpaca's 52,002 instructions are published. */
export const ALPACA_URL =
  "https://raw.githubusercontent.com/tatsu-lab/stanford_alpaca/main/alpaca_data.json";

/** Printed whenever the Alpaca data is used. */
export const ALPACA_LICENSE_NOTE =
  "note: Stanford Alpaca data (tatsu-lab/stanford_alpaca) is licensed CC BY-NC 4.0: " +
  "non-commercial use only.";

/** The download cache: env LLM_CACHE_DIR, else `data/cache` in this repository. */
export function defaultCacheDir(): string {
  const env = Deno.env.get("LLM_CACHE_DIR")?.trim();
  if (env) return env;
  const url = new URL("../../data/cache", import.meta.url);
  return url.protocol === "file:" ? fileURLToPath(url) : join("data", "cache");
}

// ---------------------------------------------------------------------------------------------
// GPT-2 weights

/** Options for {@link downloadPretrained}; the files go to `<cacheDir>/<name>/`. */
export type PretrainedOptions = HubOptions;

/** Ids the Python cache may hold a repo under: `openai-community/gpt2` was once `gpt2`. */
function cacheIds(repo: string): string[] {
  const legacy = /^openai-community\/(.+)$/.exec(repo);
  return legacy ? [repo, legacy[1]] : [repo];
}

async function isGpt2Config(path: string): Promise<boolean> {
  try {
    const json = JSON.parse(await Deno.readTextFile(path));
    return typeof json === "object" && json !== null && typeof json.n_embd === "number";
  } catch {
    return false;
  }
}

/**
 * Fetches OpenAI's GPT-2 `config.json` and `model.safetensors` for `name` (a key of
 * {@link PRETRAINED}) into `<cacheDir>/<name>/` and returns that folder. Complete cached files are
 * kept; a truncated `model.safetensors` is resumed.
 */
export async function downloadPretrained(
  name: string,
  options: PretrainedOptions = {},
): Promise<string> {
  const repo = PRETRAINED[name];
  if (!repo) {
    throw new UserError(
      `unknown pretrained model "${name}"; valid names: ${Object.keys(PRETRAINED).join(", ")}`,
    );
  }
  const hit = await fromHfCache(cacheIds(repo), name, options);
  if (hit) return hit;
  const dir = join(options.cacheDir ?? defaultCacheDir(), name);
  const { page, transfer } = await hubRepo(repo, options);
  try {
    const configPath = join(dir, "config.json");
    if (!await isGpt2Config(configPath)) {
      await Deno.remove(configPath).catch(() => {});
      await downloadFile(`${page}/resolve/main/config.json`, configPath, {
        ...transfer,
        label: `${name}/config.json`,
      });
      if (!await isGpt2Config(configPath)) {
        await Deno.remove(configPath).catch(() => {});
        throw new UserError(`the downloaded ${name}/config.json is not a GPT-2 config`);
      }
    }
    await fetchSafetensors(page, dir, name, transfer);
  } catch (err) {
    if (err instanceof UserError) {
      throw new UserError(
        `${err.message}; put config.json and model.safetensors from ${page} into ${dir}`,
      );
    }
    throw err;
  }
  return dir;
}

// ---------------------------------------------------------------------------------------------
// Stanford Alpaca (exercise 7.3)

/** Options for {@link downloadAlpaca}. */
export interface AlpacaOptions {
  /** Default: {@link defaultCacheDir}. The file is `<cacheDir>/alpaca_data.json`. */
  cacheDir?: string;
  /** Default: env ALPACA_URL, else {@link ALPACA_URL}. */
  url?: string;
  signal?: AbortSignal;
  quiet?: boolean;
  retries?: number;
  retryDelayMs?: number;
}

/** Number of entries when `path` holds Alpaca-style JSON ([{instruction, input, output}]), else 0. */
async function alpacaEntries(path: string): Promise<number> {
  try {
    const json = JSON.parse(await Deno.readTextFile(path));
    const ok = Array.isArray(json) && json.length > 0 &&
      json.every((e) => typeof e?.instruction === "string" && typeof e?.output === "string");
    return ok ? json.length : 0;
  } catch {
    return 0;
  }
}

/**
 * Fetches Stanford Alpaca's `alpaca_data.json` (52,002 entries, ~22 MB) into the cache and returns
 * its path; a valid cached copy is reused. Prints the license note (CC BY-NC 4.0) on stderr.
 */
export async function downloadAlpaca(options: AlpacaOptions = {}): Promise<string> {
  const url = options.url ?? (Deno.env.get("ALPACA_URL")?.trim() || ALPACA_URL);
  const dir = options.cacheDir ?? defaultCacheDir();
  const path = join(dir, "alpaca_data.json");
  console.error(ALPACA_LICENSE_NOTE);
  if (await exists(path) && await alpacaEntries(path) > 0) return path;
  try {
    await Deno.remove(path).catch(() => {});
    await downloadFile(url, path, {
      label: "alpaca_data.json",
      signal: options.signal,
      quiet: options.quiet,
      retries: options.retries,
      retryDelayMs: options.retryDelayMs,
    });
    if (await alpacaEntries(path) === 0) {
      await Deno.remove(path).catch(() => {});
      throw new UserError(
        `the downloaded alpaca_data.json is not a list of {instruction, input, output}`,
      );
    }
  } catch (err) {
    if (err instanceof UserError) {
      throw new UserError(`${err.message}; put alpaca_data.json from ${url} into ${dir}`);
    }
    throw err;
  }
  return path;
}
