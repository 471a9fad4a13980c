/**
 * Any GPT-2 from the Hub (`--weights ORG/NAME`), HF_TOKEN, reuse of the Python Hugging Face
 * cache, and `--config` files, against a local HTTP server standing in for the Hub.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { GPTModel } from "../lib/model/gpt.ts";
import { downloadPretrained } from "../lib/io/download.ts";
import { bareRepoId, downloadRepo, parseRepoId } from "../lib/io/hub.ts";
import { baseModelConfig, resolveWeights } from "../lib/io/resolve.ts";
import { findInHfCache, hfHubCacheDir } from "../lib/io/hf_cache.ts";
import { configFromJson, readConfigFile } from "../lib/io/config_file.ts";
import { loadCheckpoint, paramsToTensors, saveCheckpoint } from "../lib/io/weights.ts";
import { UserError } from "../lib/util/errors.ts";
import { PRESETS } from "../lib/model/config.ts";
import { initBackend } from "../lib/backend.ts";

await initBackend({ log: false });

const CFG = {
  vocabSize: 30,
  contextLength: 8,
  embDim: 8,
  nHeads: 2,
  nLayers: 1,
  dropRate: 0.1,
  qkvBias: true,
};

/** A tiny checkpoint written by our own writer (HF layout), as bytes to serve. */
async function tinyFiles(): Promise<Record<string, Uint8Array>> {
  const tmp = await Deno.makeTempDir();
  const model = new GPTModel(CFG, { seed: 4 });
  await saveCheckpoint(tmp, CFG, await paramsToTensors(model));
  model.dispose();
  const files = {
    "config.json": await Deno.readFile(join(tmp, "config.json")),
    "model.safetensors": await Deno.readFile(join(tmp, "model.safetensors")),
  };
  await Deno.remove(tmp, { recursive: true });
  return files;
}
const FILES = await tinyFiles();

/** A Hub with `repos` (path -> file bytes); logs `path auth` of each request. */
function fakeHub(repos: Record<string, Record<string, Uint8Array>>, needToken?: string) {
  const log: string[] = [];
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (req) => {
    const path = new URL(req.url).pathname;
    const auth = req.headers.get("authorization") ?? "-";
    log.push(`${path} ${auth}`);
    if (log.length > 20) return new Response("too many", { status: 500 });
    if (needToken && auth !== `Bearer ${needToken}`) {
      return new Response("gated", { status: 401, statusText: "Unauthorized" });
    }
    const m = /^\/(.+)\/resolve\/main\/(.+)$/.exec(path);
    const body = m ? repos[m[1]]?.[m[2]] : undefined;
    return body
      ? new Response(body.slice(), { headers: { "content-length": String(body.length) } })
      : new Response("Entry not found", { status: 404, statusText: "Not Found" });
  });
  return { url: `http://127.0.0.1:${server.addr.port}`, log, close: () => server.shutdown() };
}

async function withEnv(vars: Record<string, string | undefined>, fn: () => Promise<void>) {
  const old = Object.fromEntries(Object.keys(vars).map((k) => [k, Deno.env.get(k)]));
  const set = (k: string, v: string | undefined) =>
    v === undefined ? Deno.env.delete(k) : Deno.env.set(k, v);
  Object.entries(vars).forEach(([k, v]) => set(k, v));
  try {
    await fn();
  } finally {
    Object.entries(old).forEach(([k, v]) => set(k, v));
  }
}

const quick = { quiet: true, retryDelayMs: 0, retries: 0, hfCache: false as const };

Deno.test("parseRepoId() takes ORG/NAME and hf:NAME, not paths or bare names", () => {
  assert.equal(parseRepoId("distilbert/distilgpt2"), "distilbert/distilgpt2");
  assert.equal(parseRepoId("hf:distilgpt2"), "distilgpt2");
  for (const w of ["gpt3", "/abs/dir", "./rel/dir", "a/b/c", "../x"]) {
    assert.equal(parseRepoId(w), null, w);
  }
  assert.throws(() => parseRepoId("hf:bad id"), UserError);
});

Deno.test("downloadRepo() fetches a GPT-2 repo's config.json and model.safetensors once, sending HF_TOKEN", async () => {
  const hub = fakeHub({ "someone/tiny-gpt2": FILES }, "secret");
  const cache = await Deno.makeTempDir();
  try {
    await withEnv({ HF_TOKEN: "secret" }, async () => {
      const dir = await downloadRepo("someone/tiny-gpt2", {
        cacheDir: cache,
        baseUrl: hub.url,
        ...quick,
      });
      assert.equal(dir, join(cache, "hub", "models--someone--tiny-gpt2"));
      const { config } = await loadCheckpoint(dir);
      assert.deepEqual(config, CFG);
      assert.deepEqual(hub.log, [
        "/someone/tiny-gpt2/resolve/main/config.json Bearer secret",
        "/someone/tiny-gpt2/resolve/main/model.safetensors Bearer secret",
      ]);
      await downloadRepo("someone/tiny-gpt2", { cacheDir: cache, baseUrl: hub.url, ...quick });
      assert.equal(hub.log.length, 2, "complete files are not fetched again");
    });
    // Without the token the gated repo's 401 says what to do.
    await withEnv({ HF_TOKEN: undefined, HF_HOME: cache }, async () => {
      await assert.rejects(
        downloadRepo("someone/other", { cacheDir: cache, baseUrl: hub.url, ...quick }),
        /HTTP 401 .*gated or private: .*set HF_TOKEN/,
      );
    });
  } finally {
    await hub.close();
    await Deno.remove(cache, { recursive: true });
  }
});

Deno.test("downloadRepo() refuses a repo that is not a GPT-2 before fetching its weights", async () => {
  const llama = new TextEncoder().encode(JSON.stringify({ model_type: "llama", hidden_size: 8 }));
  const hub = fakeHub({
    "meta/llama": { "config.json": llama, "model.safetensors": FILES["model.safetensors"] },
  });
  const cache = await Deno.makeTempDir();
  try {
    await assert.rejects(
      downloadRepo("meta/llama", { cacheDir: cache, baseUrl: hub.url, ...quick }),
      (err: unknown) => {
        assert.ok(err instanceof UserError);
        assert.match(err.message, /model_type is "llama", not a GPT-2 .*GPT-2 models only$/);
        return true;
      },
    );
    assert.deepEqual(hub.log, ["/meta/llama/resolve/main/config.json -"]);
    await assert.rejects(
      downloadRepo("nobody/nothing", { cacheDir: cache, baseUrl: hub.url, ...quick }),
      /HTTP 404 .*a Hugging Face model repo id\?/,
    );
  } finally {
    await hub.close();
    await Deno.remove(cache, { recursive: true });
  }
});

Deno.test("--weights NAME without an org is a Hub id when it is no folder or known name; a typo is one line", async () => {
  assert.equal(bareRepoId("distilgpt2"), "distilgpt2");
  for (const w of ["a/b", "./x", "..", "a b", ""]) assert.equal(bareRepoId(w), null, w);
  const hub = fakeHub({ tinygpt2: FILES });
  const cache = await Deno.makeTempDir();
  try {
    const env = { HF_ENDPOINT: hub.url, LLM_CACHE_DIR: cache, HF_HUB_CACHE: join(cache, "none") };
    await withEnv(env, async () => {
      assert.deepEqual(await baseModelConfig("tinygpt2"), CFG);
      assert.equal(await resolveWeights("tinygpt2"), join(cache, "hub", "models--tinygpt2"));
      assert.deepEqual(hub.log.map((l) => l.split(" ")[0]), [
        "/tinygpt2/resolve/main/config.json",
        "/tinygpt2/resolve/main/model.safetensors",
      ]);
      for (const typo of [() => resolveWeights("gpt2-smal"), () => baseModelConfig("gpt2-smal")]) {
        await assert.rejects(typo, (err: unknown) => {
          assert.ok(err instanceof UserError);
          assert.match(
            err.message,
            /^--weights "gpt2-smal" is not a folder, a known model \(gpt2-small, .*\) nor a GPT-2 reachable on the Hugging Face Hub \(.*HTTP 404.*\)$/,
          );
          assert.ok(!err.message.includes("\n") && !err.message.includes("repo id?"), err.message);
          return true;
        });
      }
    });
  } finally {
    await hub.close();
    await Deno.remove(cache, { recursive: true });
  }
});

/** A Python-style cache: models--ORG--NAME/{refs/main, snapshots/<rev>/...}. */
async function pythonCache(root: string, id: string, rev: string, files = FILES): Promise<string> {
  const repo = join(root, `models--${id.replace("/", "--")}`);
  const snap = join(repo, "snapshots", rev);
  await Deno.mkdir(snap, { recursive: true });
  await Deno.mkdir(join(repo, "refs"), { recursive: true });
  await Deno.writeTextFile(join(repo, "refs", "main"), rev + "\n");
  for (const [name, bytes] of Object.entries(files)) await Deno.writeFile(join(snap, name), bytes);
  return snap;
}

Deno.test("the Python Hugging Face cache (HF_HOME/hub snapshot layout) is used before downloading", async () => {
  const home = await Deno.makeTempDir();
  const hub = fakeHub({});
  try {
    const snap = await pythonCache(join(home, "hub"), "openai-community/gpt2", "abc123");
    await withEnv({ HF_HOME: home, HF_HUB_CACHE: undefined }, async () => {
      assert.equal(hfHubCacheDir(), join(home, "hub"));
      const dir = await downloadPretrained("gpt2-small", {
        cacheDir: join(home, "ours"),
        baseUrl: hub.url,
        quiet: true,
      });
      assert.equal(dir, snap);
      const other = await pythonCache(join(home, "hub"), "someone/tiny-gpt2", "def456");
      const got = await downloadRepo("someone/tiny-gpt2", {
        cacheDir: join(home, "ours"),
        baseUrl: hub.url,
        quiet: true,
      });
      assert.equal(got, other);
    });
    assert.deepEqual(hub.log, [], "nothing downloaded");
  } finally {
    await hub.close();
    await Deno.remove(home, { recursive: true });
  }
});

Deno.test("findInHfCache() reads HF_HUB_CACHE, knows gpt2's old id, and skips a truncated snapshot", async () => {
  const root = await Deno.makeTempDir();
  try {
    const weights = FILES["model.safetensors"];
    await pythonCache(root, "openai-community/gpt2-medium", "r1", {
      ...FILES,
      "model.safetensors": weights.slice(0, weights.length - 10),
    });
    assert.equal(await findInHfCache(["openai-community/gpt2-medium"], root), null);
    const old = await pythonCache(root, "gpt2-medium", "r2");
    assert.equal(await findInHfCache(["openai-community/gpt2-medium", "gpt2-medium"], root), old);
    await withEnv({ HF_HUB_CACHE: root, HF_HOME: "/elsewhere" }, async () => {
      assert.equal(hfHubCacheDir(), root);
      assert.equal(
        await downloadPretrained("gpt2-medium", { cacheDir: root, quiet: true }),
        old,
      );
    });
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("configFromJson() takes HF's config.json and the book's dict, and refuses other models or bad shapes", async () => {
  const hf = configFromJson({
    model_type: "gpt2",
    n_embd: 1024,
    n_layer: 24,
    n_head: 16,
    n_positions: 1024,
    vocab_size: 50257,
  }, "x");
  assert.deepEqual(hf, { ...PRESETS["gpt2-medium"], qkvBias: true });
  const book = configFromJson({
    vocab_size: 50257,
    context_length: 256,
    emb_dim: 768,
    n_heads: 12,
    n_layers: 12,
    drop_rate: 0.1,
    qkv_bias: false,
  }, "x");
  assert.deepEqual(book, PRESETS["gpt-124m-book"]);
  const bad: [unknown, RegExp][] = [
    [{ model_type: "llama", n_embd: 8 }, /model_type is "llama", not a GPT-2/],
    [{ hidden_size: 8 }, /not a GPT-2 config/],
    [{ n_embd: 770, n_layer: 1, n_head: 12, n_positions: 8, vocab_size: 9 }, /not divisible/],
    [{ emb_dim: 10, n_heads: 3, n_layers: 1, context_length: 4, vocab_size: 5 }, /not divisible/],
    [{ n_embd: 8, n_layer: 1, n_head: 2, n_positions: 8, vocab_size: 9, n_inner: 9 }, /n_inner/],
  ];
  for (const [json, re] of bad) assert.throws(() => configFromJson(json, "f.json"), re);
  const tmp = await Deno.makeTempFile({ suffix: ".json" });
  await Deno.writeTextFile(tmp, "{oops");
  await assert.rejects(readConfigFile(tmp), /not valid JSON/);
  await Deno.remove(tmp);
});
