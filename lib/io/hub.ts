/**
 * Any GPT-2 from the Hugging Face Hub as `--weights`: a repo id (`distilbert/distilgpt2`, a
 * community finetune, `hf:NAME` for ids without an organisation, or such a bare `NAME` that is
 * no folder or known model) whose config.json says
 * `model_type: gpt2`. The Python cache is reused when it has the files; otherwise they are
 * downloaded (with resume, and HF_TOKEN for gated or private repos) into
 * `<cacheDir>/hub/models--ORG--NAME/`.
 */
import { join } from "node:path";
import { UserError } from "../util/errors.ts";
import { exists } from "../util/fs.ts";
import { configFromJson } from "./config_file.ts";
import { defaultCacheDir, PRETRAINED } from "./download.ts";
import { downloadFile } from "./download_file.ts";
import { repoFolderName } from "./hf_cache.ts";
import { fetchSafetensors, fromHfCache, type HubOptions, hubRepo } from "./hub_fetch.ts";

const REPO_ID = /^[A-Za-z0-9][\w.-]*\/[A-Za-z0-9][\w.-]*$/;

/**
 * The Hub repo id that `weights` names, or null: `hf:ID` always, and `ORG/NAME` (one slash, no
 * leading `.` or `/`) when no such folder exists. Call it after checking for a folder.
 */
export function parseRepoId(weights: string): string | null {
  if (weights.startsWith("hf:")) {
    const id = weights.slice(3);
    if (!/^[A-Za-z0-9][\w.-]*(\/[A-Za-z0-9][\w.-]*)?$/.test(id)) {
      throw new UserError(`--weights ${weights}: "${id}" is not a Hugging Face repo id`);
    }
    return id;
  }
  return REPO_ID.test(weights) ? weights : null;
}

/**
 * `weights` as a bare Hub id without an organisation (`distilgpt2`), or null. Only a guess: call
 * it after folders, known names and {@link parseRepoId}, and download with `guessed`.
 */
export function bareRepoId(weights: string): string | null {
  return /^[A-Za-z0-9][\w.-]*$/.test(weights) && !weights.includes("..") ? weights : null;
}

/** Options of `downloadRepo`. */
export interface RepoOptions extends HubOptions {
  /** Fetch config.json only (to check the shape before the weights). */
  configOnly?: boolean;
  /**
   * The id is a bare name guessed from `--weights` ({@link bareRepoId}): when its config.json
   * cannot be fetched, say in one line that it is no folder, no known model, nor on the Hub.
   */
  guessed?: boolean;
}

/** A guessed bare name the Hub did not give: most often a typo. */
class NotOnHub extends UserError {}

function notOnHub(repo: string, cause: UserError): NotOnHub {
  return new NotOnHub(
    `--weights "${repo}" is not a folder, a known model (${Object.keys(PRETRAINED).join(", ")}) ` +
      `nor a GPT-2 reachable on the Hugging Face Hub (${cause.message})`,
  );
}

/** Checks a fetched config.json: a GPT-2 our model can load, else one clear line. */
async function checkGpt2Config(path: string, repo: string): Promise<void> {
  let json: unknown;
  try {
    json = JSON.parse(await Deno.readTextFile(path));
  } catch {
    await Deno.remove(path).catch(() => {});
    throw new UserError(`${repo}: config.json is not valid JSON`);
  }
  try {
    configFromJson(json, `${repo}/config.json`);
  } catch (err) {
    await Deno.remove(path).catch(() => {});
    throw new UserError(`${(err as Error).message}; --weights takes GPT-2 models only`);
  }
}

/** A one-line hint for the Hub's answers that have one. */
function explain(err: unknown, repo: string): unknown {
  if (!(err instanceof UserError) || err instanceof NotOnHub) return err;
  const m = err.message;
  if (/HTTP 40[13]/.test(m)) {
    return new UserError(
      `${m}; ${repo} is gated or private: accept its terms on the Hub and set HF_TOKEN`,
    );
  }
  if (/HTTP 404/.test(m) && m.includes("config.json")) {
    return new UserError(`${m}; is "${repo}" a Hugging Face model repo id?`);
  }
  if (/HTTP 404/.test(m) && m.includes("model.safetensors")) {
    return new UserError(`${m}; ${repo} has no model.safetensors (only PyTorch .bin weights?)`);
  }
  return err;
}

/**
 * The folder with `repo`'s config.json and model.safetensors: the Python cache's snapshot when
 * it has both, else `<cacheDir>/hub/models--ORG--NAME/`, downloading what is missing. Refuses a
 * repo that is not a GPT-2 before fetching its weights.
 */
export async function downloadRepo(repo: string, options: RepoOptions = {}): Promise<string> {
  const hit = await fromHfCache([repo], repo, options);
  if (hit) {
    await checkGpt2Config(join(hit, "config.json"), repo);
    return hit;
  }
  const dir = join(options.cacheDir ?? defaultCacheDir(), "hub", repoFolderName(repo));
  const { page, transfer } = await hubRepo(repo, options);
  try {
    const configPath = join(dir, "config.json");
    if (!await exists(configPath)) {
      await downloadFile(`${page}/resolve/main/config.json`, configPath, {
        ...transfer,
        label: `${repo}/config.json`,
      }).catch((err) => {
        const typo = options.guessed && err instanceof UserError && !options.signal?.aborted;
        throw typo ? notOnHub(repo, err) : err;
      });
    }
    await checkGpt2Config(configPath, repo);
    if (options.configOnly) return dir;
    await fetchSafetensors(page, dir, repo, transfer);
  } catch (err) {
    throw explain(err, repo);
  }
  return dir;
}
