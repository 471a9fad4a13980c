import assert from "node:assert/strict";
import { join } from "node:path";
import type { GPTConfig } from "../lib/model/config.ts";
import {
  ALPACA_URL,
  defaultCacheDir,
  downloadAlpaca,
  downloadPretrained,
  PRETRAINED,
} from "../lib/io/download.ts";
import { hfBaseUrl } from "../lib/io/hub_fetch.ts";
import { downloadFile } from "../lib/io/download_file.ts";
import { UserError } from "../lib/util/errors.ts";
import { serializeSafetensors, type TensorMap } from "../lib/io/safetensors.ts";
import { hfConfigFromGpt } from "../lib/io/hf_config.ts";
import { loadCheckpoint } from "../lib/io/weights.ts";
import { withServer, withTempDir } from "./cli_helpers.ts";

// ---------------------------------------------------------------------------------------------
// A small checkpoint in the Hugging Face layout, as the Hub would serve it.

const CFG: GPTConfig = {
  vocabSize: 50,
  contextLength: 8,
  embDim: 8,
  nHeads: 2,
  nLayers: 2,
  dropRate: 0.1,
  qkvBias: true,
};

function smallCheckpoint(): { config: Uint8Array; weights: Uint8Array } {
  const e = CFG.embDim;
  const shapes: [string, number[]][] = [["wte.weight", [CFG.vocabSize, e]], ["wpe.weight", [
    CFG.contextLength,
    e,
  ]]];
  for (let i = 0; i < CFG.nLayers; i++) {
    const h = `h.${i}.`;
    shapes.push(
      [h + "ln_1.weight", [e]],
      [h + "ln_1.bias", [e]],
      [h + "attn.c_attn.weight", [e, 3 * e]],
      [h + "attn.c_attn.bias", [3 * e]],
      [h + "attn.c_proj.weight", [e, e]],
      [h + "attn.c_proj.bias", [e]],
      [h + "ln_2.weight", [e]],
      [h + "ln_2.bias", [e]],
      [h + "mlp.c_fc.weight", [e, 4 * e]],
      [h + "mlp.c_fc.bias", [4 * e]],
      [h + "mlp.c_proj.weight", [4 * e, e]],
      [h + "mlp.c_proj.bias", [e]],
      [h + "attn.bias", [1, 1, CFG.contextLength, CFG.contextLength]], // the mask buffer HF ships
    );
  }
  shapes.push(["ln_f.weight", [e]], ["ln_f.bias", [e]]);
  let k = 0;
  const tensors: TensorMap = new Map(shapes.map(([name, shape]) => {
    const n = shape.reduce((a, b) => a * b, 1);
    return [name, { shape, data: Float32Array.from({ length: n }, () => Math.sin(++k)) }];
  }));
  return {
    config: new TextEncoder().encode(JSON.stringify(hfConfigFromGpt(CFG))),
    weights: serializeSafetensors(tensors, { format: "pt" }),
  };
}

const CKPT = smallCheckpoint();

// ---------------------------------------------------------------------------------------------
// A local server on 127.0.0.1, port 0.

interface Served {
  url: string;
  /** `path range` of every request, in order. */
  log: string[];
  close(): Promise<void>;
}

/** Serves `handler`; after 20 requests it answers 500 so a runaway retry loop ends. */
function serve(handler: (req: Request, n: number) => Response | Promise<Response>): Served {
  const log: string[] = [];
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (req) => {
    log.push(`${new URL(req.url).pathname} ${req.headers.get("range") ?? "-"}`);
    if (log.length > 20) return new Response("too many requests in a test", { status: 500 });
    return handler(req, log.length);
  });
  return { url: `http://127.0.0.1:${server.addr.port}`, log, close: () => server.shutdown() };
}

/** A static file with Range support: 206 for `bytes=N-`, 416 past the end, 200 otherwise. */
function fileResponse(req: Request, bytes: Uint8Array, { ignoreRange = false } = {}): Response {
  const m = /^bytes=(\d+)-$/.exec(req.headers.get("range") ?? "");
  if (m && !ignoreRange) {
    const start = Number(m[1]);
    if (start >= bytes.length) {
      return new Response(null, {
        status: 416,
        headers: { "content-range": `bytes */${bytes.length}` },
      });
    }
    return new Response(bytes.slice(start), {
      status: 206,
      headers: { "content-range": `bytes ${start}-${bytes.length - 1}/${bytes.length}` },
    });
  }
  return new Response(bytes.slice(), { headers: { "content-length": String(bytes.length) } });
}

/** Announces the whole file but sends only `cut` bytes, then drops the connection. */
function cutResponse(bytes: Uint8Array, cut: number): Response {
  let sent = false;
  const body = new ReadableStream<Uint8Array>({
    async pull(c) {
      if (!sent) {
        sent = true;
        c.enqueue(bytes.slice(0, cut));
        return;
      }
      await new Promise((r) => setTimeout(r, 20));
      c.close(); // shorter than Content-Length: the client sees a broken body
    },
  });
  return new Response(body, { headers: { "content-length": String(bytes.length) } });
}

/** The Hub's resolve URLs for the small checkpoint. */
function hub(req: Request): Response {
  const path = new URL(req.url).pathname;
  if (path === "/openai-community/gpt2/resolve/main/config.json") {
    return fileResponse(req, CKPT.config);
  }
  if (path === "/openai-community/gpt2/resolve/main/model.safetensors") {
    return fileResponse(req, CKPT.weights);
  }
  return new Response("Entry not found", { status: 404 });
}

async function withEnv(name: string, value: string, fn: () => unknown): Promise<void> {
  const old = Deno.env.get(name);
  Deno.env.set(name, value);
  try {
    await fn();
  } finally {
    if (old === undefined) Deno.env.delete(name);
    else Deno.env.set(name, old);
  }
}

/** Runs `fn` with a server for `handler` and a fresh folder, both gone afterwards. */
function served(
  handler: Parameters<typeof serve>[0],
  fn: (server: Served, dir: string) => Promise<void>,
): Promise<void> {
  return withServer(serve(handler), fn);
}

/** The first answer breaks off after `cut` bytes of the weights; later ones serve them whole. */
const halfCut = (cut: number) => (req: Request, n: number) =>
  n === 1 ? cutResponse(CKPT.weights, cut) : fileResponse(req, CKPT.weights);

const names = (dir: string) => [...Deno.readDirSync(dir)].map((e) => e.name).sort();
// hfCache: false keeps a real ~/.cache/huggingface out of these tests.
const quick = { quiet: true, retryDelayMs: 0, hfCache: false as const };

// ---------------------------------------------------------------------------------------------

Deno.test("hfBaseUrl() is HF_ENDPOINT without a trailing slash, else huggingface.co", async () => {
  await withEnv("HF_ENDPOINT", "https://hf-mirror.example/", () => {
    assert.equal(hfBaseUrl(), "https://hf-mirror.example");
  });
  await withEnv("HF_ENDPOINT", "", () => {
    assert.equal(hfBaseUrl(), "https://huggingface.co");
  });
  await withEnv("LLM_CACHE_DIR", "/tmp/llm-cache", () => {
    assert.equal(defaultCacheDir(), "/tmp/llm-cache");
  });
  assert.deepEqual(Object.keys(PRETRAINED), ["gpt2-small", "gpt2-medium", "gpt2-large", "gpt2-xl"]);
});

Deno.test("downloadPretrained() fetches config.json + model.safetensors from HF_ENDPOINT and then uses the cache", async () => {
  await served(hub, async (server, cache) => {
    await withEnv("HF_ENDPOINT", server.url + "/", async () => {
      const dir = await downloadPretrained("gpt2-small", { cacheDir: cache, ...quick });
      assert.equal(dir, join(cache, "gpt2-small"));
      assert.deepEqual(names(dir), ["config.json", "model.safetensors"]);
      assert.deepEqual(await Deno.readFile(join(dir, "model.safetensors")), CKPT.weights);
      assert.deepEqual(server.log, [
        "/openai-community/gpt2/resolve/main/config.json -",
        "/openai-community/gpt2/resolve/main/model.safetensors -",
      ]);
      const { config, tensors } = await loadCheckpoint(dir);
      assert.deepEqual(config, CFG);
      assert.equal(tensors.size, CFG.nLayers * 16 + 5);

      await downloadPretrained("gpt2-small", { cacheDir: cache, ...quick });
      assert.equal(server.log.length, 2, "complete cached files are not fetched again");
    });
  });
});

Deno.test("downloadFile() resumes an interrupted transfer with a Range request", async () => {
  const half = Math.floor(CKPT.weights.length / 2);
  await served(halfCut(half), async (server, dir) => {
    const dest = join(dir, "model.safetensors");
    const seen: number[] = [];
    await downloadFile(`${server.url}/m`, dest, {
      ...quick,
      onProgress: (p) => seen.push(p.received),
    });
    assert.deepEqual(server.log, ["/m -", `/m bytes=${half}-`]);
    assert.deepEqual(await Deno.readFile(dest), CKPT.weights);
    assert.deepEqual(names(dir), ["model.safetensors"]);
    assert.equal(seen.at(-1), CKPT.weights.length);
  });
});

Deno.test("downloadFile() without retries keeps the .part and the next call resumes it", async () => {
  const half = Math.floor(CKPT.weights.length / 2);
  await served(halfCut(half), async (server, dir) => {
    const dest = join(dir, "model.safetensors");
    await assert.rejects(
      downloadFile(`${server.url}/m`, dest, { ...quick, retries: 0 }),
      (err: unknown) => {
        assert.ok(err instanceof UserError);
        assert.match(
          err.message,
          /was interrupted \(.*\); run again to resume from .*model\.safetensors\.part$/,
        );
        return true;
      },
    );
    assert.deepEqual(names(dir), ["model.safetensors.part"]);
    assert.equal((await Deno.stat(dest + ".part")).size, half);
    await downloadFile(`${server.url}/m`, dest, { ...quick, retries: 0 });
    assert.equal(server.log[1], `/m bytes=${half}-`);
    assert.deepEqual(await Deno.readFile(dest), CKPT.weights);
  });
});

Deno.test("downloadFile() starts over when the server ignores Range (200 instead of 206)", async () => {
  await served(
    (req) => fileResponse(req, CKPT.weights, { ignoreRange: true }),
    async (server, dir) => {
      const dest = join(dir, "model.safetensors");
      await Deno.writeFile(dest + ".part", new Uint8Array(1000).fill(0xff)); // stale garbage
      await downloadFile(`${server.url}/m`, dest, quick);
      assert.deepEqual(server.log, ["/m bytes=1000-"]);
      assert.deepEqual(await Deno.readFile(dest), CKPT.weights);
      assert.deepEqual(names(dir), ["model.safetensors"]);
    },
  );
});

Deno.test("downloadFile() finishes a complete .part when the server answers 416", async () => {
  await served((req) => fileResponse(req, CKPT.weights), async (server, dir) => {
    const dest = join(dir, "model.safetensors");
    await Deno.writeFile(dest + ".part", CKPT.weights);
    await downloadFile(`${server.url}/m`, dest, quick);
    assert.deepEqual(server.log, [`/m bytes=${CKPT.weights.length}-`]);
    assert.deepEqual(await Deno.readFile(dest), CKPT.weights);
  });
});

Deno.test("downloadFile() rejects a size that differs from expectedSize", async () => {
  await served((req) => fileResponse(req, CKPT.weights), async (server, dir) => {
    const dest = join(dir, "f");
    await assert.rejects(
      downloadFile(`${server.url}/f`, dest, { ...quick, expectedSize: 10 }),
      /server reports \d+ bytes but 10 were expected/,
    );
    assert.deepEqual(names(dir), []);
  });
});

Deno.test("downloadPretrained() resumes a truncated model.safetensors in the cache", async () => {
  await served(hub, async (server, cache) => {
    const dir = join(cache, "gpt2-small");
    await Deno.mkdir(dir);
    await Deno.writeFile(join(dir, "config.json"), CKPT.config);
    const cut = CKPT.weights.length - 300;
    await Deno.writeFile(join(dir, "model.safetensors"), CKPT.weights.slice(0, cut));
    await downloadPretrained("gpt2-small", { cacheDir: cache, baseUrl: server.url, ...quick });
    assert.deepEqual(server.log, [
      `/openai-community/gpt2/resolve/main/model.safetensors bytes=${cut}-`,
    ]);
    assert.deepEqual(await Deno.readFile(join(dir, "model.safetensors")), CKPT.weights);
    assert.deepEqual(names(dir), ["config.json", "model.safetensors"]);
  });
});

Deno.test("downloadPretrained() on HTTP 404 says what failed and where to put the files by hand", async () => {
  await served(
    () => new Response("Repository not found", { status: 404, statusText: "Not Found" }),
    async (server, cache) => {
      await assert.rejects(
        downloadPretrained("gpt2-medium", { cacheDir: cache, baseUrl: server.url, ...quick }),
        (err: unknown) => {
          assert.ok(err instanceof UserError);
          assert.match(
            err.message,
            /^download of gpt2-medium\/config\.json failed: HTTP 404 Not Found from http:\/\/127\.0\.0\.1:\d+\/openai-community\/gpt2-medium\/resolve\/main\/config\.json; put config\.json and model\.safetensors from http:\/\/127\.0\.0\.1:\d+\/openai-community\/gpt2-medium into .*gpt2-medium$/,
          );
          assert.ok(!err.message.includes("\n"));
          return true;
        },
      );
      assert.deepEqual(
        names(join(cache, "gpt2-medium")),
        [],
        "nothing in the final path, no .part",
      );
      assert.equal(server.log.length, 1);
    },
  );
});

Deno.test("downloadPretrained() when the connection is refused says the host is unreachable", async () => {
  // A port nobody listens on: open one, note it, close it.
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  await withTempDir(async (cache) => {
    await assert.rejects(
      downloadPretrained("gpt2-small", {
        cacheDir: cache,
        baseUrl: `http://127.0.0.1:${port}`,
        ...quick,
      }),
      (err: unknown) => {
        assert.ok(err instanceof UserError);
        assert.match(
          err.message,
          /^cannot reach 127\.0\.0\.1:\d+ to download gpt2-small\/config\.json: .*Connection refused.* \(offline\?\); put config\.json and model\.safetensors from .* into /,
        );
        assert.ok(!err.message.includes("\n"));
        return true;
      },
    );
  });
});

Deno.test("downloadPretrained() with an unknown name lists the valid names", async () => {
  await assert.rejects(
    downloadPretrained("gpt3"),
    /^UserError: unknown pretrained model "gpt3"; valid names: gpt2-small, gpt2-medium, gpt2-large, gpt2-xl$/,
  );
});

Deno.test("downloadAlpaca() fetches ALPACA_URL to <cache>/alpaca_data.json and reuses it", async () => {
  const entries = [
    { instruction: "Give three tips for staying healthy.", input: "", output: "1. Eat well." },
    { instruction: "Translate to French.", input: "Hello", output: "Bonjour" },
  ];
  const bytes = new TextEncoder().encode(JSON.stringify(entries));
  await served((req) => fileResponse(req, bytes), async (server, cache) => {
    await withEnv("ALPACA_URL", `${server.url}/alpaca_data.json`, async () => {
      const path = await downloadAlpaca({ cacheDir: cache, ...quick });
      assert.equal(path, join(cache, "alpaca_data.json"));
      assert.deepEqual(JSON.parse(await Deno.readTextFile(path)), entries);
      await downloadAlpaca({ cacheDir: cache, ...quick });
      assert.deepEqual(server.log, ["/alpaca_data.json -"]);
    });
  });
  assert.match(ALPACA_URL, /tatsu-lab\/stanford_alpaca\/main\/alpaca_data\.json$/);
});

Deno.test("downloadAlpaca() rejects a file that is not Alpaca data and says where to put it", async () => {
  await served(() => new Response("<html>rate limited</html>"), async (server, cache) => {
    await assert.rejects(
      downloadAlpaca({ cacheDir: cache, url: `${server.url}/a.json`, ...quick }),
      /not a list of \{instruction, input, output\}; put alpaca_data\.json from http:\/\/127\.0\.0\.1:\d+\/a\.json into /,
    );
    assert.deepEqual(names(cache), []);
  });
});
