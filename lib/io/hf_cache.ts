/**
 * Reusing the Python Hugging Face cache: a reader who already has a GPT-2 from `transformers`
 * does not download it again. huggingface_hub keeps repos under
 * `$HF_HUB_CACHE` (else `$HF_HOME/hub`, else `$XDG_CACHE_HOME/huggingface/hub`, else
 * `~/.cache/huggingface/hub`) as `models--ORG--NAME/refs/main` (a commit hash) and
 * `models--ORG--NAME/snapshots/<hash>/<files>` (symlinks into `blobs/`).
 */
import { join } from "node:path";
import { exists } from "../util/fs.ts";
import { checkSafetensorsFile } from "./safetensors_header.ts";

/** The Python Hugging Face hub cache folder, from the same variables huggingface_hub reads. */
export function hfHubCacheDir(): string | null {
  const env = (k: string) => Deno.env.get(k)?.trim() || undefined;
  const hub = env("HF_HUB_CACHE") ?? env("HUGGINGFACE_HUB_CACHE");
  if (hub) return hub;
  const home = env("HF_HOME") ??
    (env("XDG_CACHE_HOME") ? join(env("XDG_CACHE_HOME")!, "huggingface") : undefined) ??
    (env("HOME") ?? env("USERPROFILE")
      ? join((env("HOME") ?? env("USERPROFILE"))!, ".cache", "huggingface")
      : undefined);
  return home ? join(home, "hub") : null;
}

/** `org/name` -> `models--org--name` (huggingface_hub's folder name). */
export function repoFolderName(repo: string): string {
  return `models--${repo.split("/").join("--")}`;
}

/** True when `dir/config.json` says GPT-2 and `dir/model.safetensors` is complete. */
async function usableSnapshot(dir: string): Promise<boolean> {
  try {
    const json = JSON.parse(await Deno.readTextFile(join(dir, "config.json")));
    if (json?.model_type !== undefined && json.model_type !== "gpt2") return false;
    if (typeof json?.n_embd !== "number") return false;
  } catch {
    return false;
  }
  return (await checkSafetensorsFile(join(dir, "model.safetensors"))).status === "ok";
}

/**
 * The snapshot folder of the first of `repos` (ids, e.g. "openai-community/gpt2" and its old
 * alias "gpt2") that the Python cache holds with config.json and a complete model.safetensors:
 * the revision `refs/main` names, else the newest snapshot. Null when there is none (a cache
 * with only pytorch_model.bin does not count). Never writes to the cache.
 */
export async function findInHfCache(
  repos: readonly string[],
  cacheDir: string | null = hfHubCacheDir(),
): Promise<string | null> {
  if (!cacheDir) return null;
  for (const repo of repos) {
    const root = join(cacheDir, repoFolderName(repo));
    if (!await exists(join(root, "snapshots"))) continue;
    const candidates: string[] = [];
    try {
      const main = (await Deno.readTextFile(join(root, "refs", "main"))).trim();
      if (main) candidates.push(join(root, "snapshots", main));
    } catch { /* no refs/main: look at every snapshot */ }
    const others: { dir: string; mtime: number }[] = [];
    for await (const e of Deno.readDir(join(root, "snapshots"))) {
      const dir = join(root, "snapshots", e.name);
      const mtime = (await Deno.stat(dir)).mtime?.getTime() ?? 0;
      others.push({ dir, mtime });
    }
    candidates.push(...others.sort((a, b) => b.mtime - a.mtime).map((o) => o.dir));
    for (const dir of candidates) if (await usableSnapshot(dir)) return dir;
  }
  return null;
}
