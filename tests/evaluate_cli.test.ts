/** `llm evaluate` (chapter 7.8): a fake Ollama judge, and the offline fallback when unreachable. */
import assert from "node:assert/strict";
import { join } from "node:path";
import { cli } from "./cli_helpers.ts";
import { chatUrl } from "../lib/cli/evaluate.ts";

const ENTRIES = [
  { instruction: "Name a color.", input: "", output: "Blue.", model_response: "Blue." },
  { instruction: "Add.", input: "2 + 2", output: "4", model_response: "The answer is 4" },
  { instruction: "Say hi.", input: "", output: "Hi!", model_response: "Bye." },
];

/** Writes the entries to a temp file; returns its path and a cleanup. */
async function responsesFile(): Promise<{ path: string; cleanup: () => Promise<void> }> {
  const dir = await Deno.makeTempDir();
  const path = join(dir, "test-responses.json");
  await Deno.writeTextFile(path, JSON.stringify(ENTRIES, null, 4));
  return { path, cleanup: () => Deno.remove(dir, { recursive: true }) };
}

/** A fake Ollama on 127.0.0.1 (port 0): /api/tags, and /api/chat streaming the given replies. */
function fakeOllama(replies: string[]) {
  const bodies: { model: string; messages: { content: string }[]; options: unknown }[] = [];
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (req) => {
    const url = new URL(req.url);
    if (url.pathname === "/api/tags") return Response.json({ models: [{ name: "llama3" }] });
    if (url.pathname !== "/api/chat") return new Response("not found", { status: 404 });
    bodies.push(await req.json());
    const reply = replies[(bodies.length - 1) % replies.length];
    // Two JSON lines, the reply split across them, as Ollama streams.
    const half = Math.ceil(reply.length / 2);
    const lines = [
      JSON.stringify({ message: { content: reply.slice(0, half) }, done: false }),
      JSON.stringify({ message: { content: reply.slice(half) }, done: true }),
    ];
    return new Response(lines.join("\n") + "\n");
  });
  return { server, bodies, url: `http://127.0.0.1:${server.addr.port}` };
}

Deno.test("evaluate with a reachable Ollama reports the judge's average, scored and unparseable counts", async () => {
  const { path, cleanup } = await responsesFile();
  const ollama = fakeOllama(["85", "Score: 70", "40"]);
  try {
    const { code, out } = await cli(
      "evaluate",
      ...["--responses", path, "--ollama-url", ollama.url, "--json"],
    );
    assert.equal(code, 0);
    const r = JSON.parse(out);
    assert.equal(r.judge, "ollama");
    assert.equal(r.average, 62.5); // (85 + 40) / 2; "Score: 70" is not an integer reply
    assert.equal(r.scored, 2);
    assert.equal(r.unparseable, 1);
    assert.equal(r.entries, 3);
    // The book's request: model llama3, seed 123, temperature 0, num_ctx 2048, its prompt.
    assert.equal(ollama.bodies.length, 3);
    assert.equal(ollama.bodies[0].model, "llama3");
    assert.deepEqual(ollama.bodies[0].options, { seed: 123, temperature: 0, num_ctx: 2048 });
    assert.match(
      ollama.bodies[1].messages[0].content,
      /and correct output `4`, score the model response `The answer is 4` on a scale from 0 to 100/,
    );
  } finally {
    await ollama.server.shutdown();
    await cleanup();
  }
});

Deno.test("evaluate prints the judge line and the labelled offline metric without --json", async () => {
  const { path, cleanup } = await responsesFile();
  const ollama = fakeOllama(["90"]);
  try {
    const { code, out } = await cli(
      "evaluate",
      ...["--responses", path, "--ollama-url", ollama.url, "--model", "llama3.1"],
    );
    assert.equal(code, 0);
    assert.match(
      out,
      /Average score \(llama3\.1 judge, 0-100\): 90\.00 \(3 of 3 entries scored, 0 unparseable\)/,
    );
    assert.match(out, /offline reference metric \(NOT the LLM judge's score\)/);
    assert.equal(ollama.bodies[0].model, "llama3.1");
  } finally {
    await ollama.server.shutdown();
    await cleanup();
  }
});

Deno.test("evaluate with Ollama unreachable says so in one line and reports ROUGE-L F1 and exact match", async () => {
  const { path, cleanup } = await responsesFile();
  // A port that was just free: nothing listens there.
  const probe = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (probe.addr as Deno.NetAddr).port;
  probe.close();
  try {
    const { code, out, err } = await cli(
      "evaluate",
      ...["--responses", path, "--ollama-url", `http://127.0.0.1:${port}`, "--json"],
    );
    assert.equal(code, 0);
    assert.equal(err.split("\n").length, 1);
    assert.match(err, new RegExp(`Ollama is not reachable at http://127\\.0\\.0\\.1:${port}`));
    const r = JSON.parse(out);
    assert.equal(r.judge, "offline");
    assert.equal(r.ollamaReachable, false);
    assert.equal(r.average, undefined);
    // ROUGE-L F1: 1, then "the answer is 4" vs "4" = 2*(1/4*1)/(1/4+1) = 0.4, then 0.
    assert.equal(r.offline.rougeL, 46.67);
    assert.equal(r.offline.exactMatch, 33.33);
  } finally {
    await cleanup();
  }
});

Deno.test("evaluate --judge offline never contacts Ollama", async () => {
  const { path, cleanup } = await responsesFile();
  const ollama = fakeOllama(["99"]);
  try {
    const { code, out } = await cli(
      "evaluate",
      ...["--responses", path, "--judge", "offline", "--ollama-url", ollama.url],
    );
    assert.equal(code, 0);
    assert.equal(ollama.bodies.length, 0);
    assert.match(out, /ROUGE-L F1 46\.67, exact match 33\.33% over 3 entries/);
  } finally {
    await ollama.server.shutdown();
    await cleanup();
  }
});

Deno.test("evaluate rejects a file without model_response, naming the entry", async () => {
  const r = await cli("evaluate", "--responses", "data/instruction-data.json");
  assert.equal(r.code, 1);
  assert.match(
    r.err,
    /^error: data\/instruction-data\.json: entry 0: "model_response" is missing$/,
  );
});

Deno.test("chatUrl() appends /api/chat to a server URL and keeps a full endpoint", () => {
  assert.equal(chatUrl("http://localhost:11434"), "http://localhost:11434/api/chat");
  assert.equal(chatUrl("http://h:1/api/chat"), "http://h:1/api/chat");
});
