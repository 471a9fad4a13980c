/**
 * What every download from the Hugging Face Hub shares (OpenAI's GPT-2 by name in ./download.ts,
 * any GPT-2 repo in ./hub.ts): the endpoint, the token, reuse of the Python cache, and a
 * `model.safetensors` that is resumed when truncated and checked once fetched.
 * @module
 */
import { dirname, join } from "node:path";
import { UserError } from "../util/errors.ts";
import { checkSafetensorsFile } from "./safetensors_header.ts";
import { downloadFile, type DownloadOptions, fileSize } from "./download_file.ts";
import { findInHfCache, hfHubCacheDir } from "./hf_cache.ts";

/** Options of a Hub download. */
export interface HubOptions {
  /** Default: `defaultCacheDir()` of ./download.ts. */
  cacheDir?: string;
  /** Default: {@link hfBaseUrl}. */
  baseUrl?: string;
  signal?: AbortSignal;
  quiet?: boolean;
  /** See {@link DownloadOptions}. */
  retries?: number;
  retryDelayMs?: number;
  /** The Python Hugging Face cache to reuse (default {@link hfHubCacheDir}); false: never. */
  hfCache?: string | false;
}

/** The Hugging Face Hub to download from: env HF_ENDPOINT (a mirror) or https://huggingface.co. */
export function hfBaseUrl(): string {
  const env = Deno.env.get("HF_ENDPOINT")?.trim();
  return (env ? env : "https://huggingface.co").replace(/\/+$/, "");
}

/** The Hub token: env HF_TOKEN (or HUGGING_FACE_HUB_TOKEN), else `$HF_HOME/token` as huggingface-cli saves it. */
export async function hfToken(): Promise<string | undefined> {
  const env = Deno.env.get("HF_TOKEN")?.trim() || Deno.env.get("HUGGING_FACE_HUB_TOKEN")?.trim();
  if (env) return env;
  const hub = hfHubCacheDir();
  const home = Deno.env.get("HF_HOME")?.trim() || (hub ? dirname(hub) : undefined);
  if (!home) return undefined;
  try {
    return (await Deno.readTextFile(join(home, "token"))).trim() || undefined;
  } catch {
    return undefined;
  }
}

/** Request headers for the Hub: the token as a bearer, when there is one. */
export async function hubHeaders(): Promise<Record<string, string>> {
  const token = await hfToken();
  return token ? { Authorization: `Bearer ${token}` } : {};
}

/** A repo's page on the Hub and the transfer options (with the token) of its files. */
export async function hubRepo(
  repo: string,
  o: HubOptions,
): Promise<{ page: string; transfer: DownloadOptions }> {
  const { signal, quiet, retries, retryDelayMs } = o;
  return {
    page: `${o.baseUrl?.replace(/\/+$/, "") ?? hfBaseUrl()}/${repo}`,
    transfer: { signal, quiet, retries, retryDelayMs, headers: await hubHeaders() },
  };
}

/** The Python cache's snapshot of one of `ids` that holds the model, or null (said on stderr). */
export async function fromHfCache(
  ids: string[],
  label: string,
  o: HubOptions,
): Promise<string | null> {
  if (o.hfCache === false) return null;
  const hit = await findInHfCache(ids, o.hfCache ?? hfHubCacheDir());
  if (hit && !o.quiet) console.error(`${label}: using the Hugging Face cache (${hit})`);
  return hit;
}

/**
 * Makes `<dir>/model.safetensors` the complete file of `page`: a complete cached copy is kept, a
 * truncated one resumed, a corrupt one fetched again; a fetched file that is not complete is
 * removed and refused with one line.
 */
export async function fetchSafetensors(
  page: string,
  dir: string,
  label: string,
  transfer: DownloadOptions,
): Promise<void> {
  const path = join(dir, "model.safetensors");
  const cached = await checkSafetensorsFile(path);
  if (cached.status === "ok") return;
  if (cached.status === "truncated") {
    // Resume where the cached copy ends (unless a longer .part exists).
    const partSize = await fileSize(`${path}.part`);
    if (cached.size > partSize) await Deno.rename(path, `${path}.part`);
    else await Deno.remove(path);
  } else if (cached.status === "corrupt") {
    await Deno.remove(path);
  }
  await downloadFile(`${page}/resolve/main/model.safetensors`, path, {
    ...transfer,
    expectedSize: cached.expectedSize,
    label: `${label}/model.safetensors`,
  });
  const fetched = await checkSafetensorsFile(path);
  if (fetched.status !== "ok") {
    await Deno.remove(path).catch(() => {});
    throw new UserError(
      `the downloaded ${label}/model.safetensors is ${fetched.status} (${fetched.reason})`,
    );
  }
}
