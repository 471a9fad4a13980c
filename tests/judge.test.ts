import assert from "node:assert/strict";
import { UserError } from "../lib/util/errors.ts";
import {
  exactMatch,
  formatJudgePrompt,
  isOllamaReachable,
  lcsLength,
  loadResponseFile,
  metricTokens,
  offlineScores,
  parseScore,
  queryOllama,
  rougeL,
  scoreResponses,
} from "../lib/judge.ts";

const RESPONSES = new URL("../data/instruction-data-with-response.json", import.meta.url).pathname;
const entry = {
  instruction: "Rewrite the sentence using a simile.",
  input: "The car is very fast.",
  output: "The car is as fast as lightning.",
  model_response: "The car is as fast as a bullet.",
};

interface FakeOllama {
  url: string;
  requests: unknown[];
  close(): Promise<void>;
}

/**
 * A local stand-in for Ollama's /api/chat on 127.0.0.1 (a free port): answers each request with
 * the next reply, streamed as JSON lines that are cut at awkward places.
 */
function fakeOllama(replies: string[], { status = 200 } = {}): FakeOllama {
  const requests: unknown[] = [];
  let next = 0;
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (req) => {
    const path = new URL(req.url).pathname;
    if (path === "/api/tags") return Response.json({ models: [{ name: "llama3:latest" }] });
    requests.push(await req.json());
    if (status !== 200) return Response.json({ error: "model 'llama3' not found" }, { status });
    const reply = replies[next++ % replies.length];
    // One chunk per character of the reply, then the final "done" line, all split mid-line.
    const lines = [...reply].map((ch) =>
      JSON.stringify({
        model: "llama3",
        message: { role: "assistant", content: ch },
        done: false,
      }) + "\n"
    );
    lines.push(
      JSON.stringify({ model: "llama3", message: { role: "assistant", content: "" }, done: true }) +
        "\n",
    );
    const text = lines.join("");
    const encoder = new TextEncoder();
    const cuts = [0];
    for (let i = 7; i < text.length; i += 13) cuts.push(i);
    cuts.push(text.length);
    const body = new ReadableStream<Uint8Array>({
      start(controller) {
        for (let i = 1; i < cuts.length; i++) {
          controller.enqueue(encoder.encode(text.slice(cuts[i - 1], cuts[i])));
        }
        controller.close();
      },
    });
    return new Response(body, { headers: { "content-type": "application/x-ndjson" } });
  });
  const { port } = server.addr as Deno.NetAddr;
  return { url: `http://127.0.0.1:${port}/api/chat`, requests, close: () => server.shutdown() };
}

Deno.test("formatJudgePrompt() is the book's prompt around format_input(entry)", () => {
  assert.equal(
    formatJudgePrompt(entry, entry.model_response),
    "Given the input `Below is an instruction that describes a task. Write a response that " +
      "appropriately completes the request.\n\n### Instruction:\nRewrite the sentence using a simile." +
      "\n\n### Input:\nThe car is very fast.` and correct output `The car is as fast as lightning.`, " +
      "score the model response `The car is as fast as a bullet.` on a scale from 0 to 100, where " +
      "100 is the best score. Respond with the integer number only.",
  );
});

Deno.test("queryOllama() sends the book's options and joins the streamed reply", async () => {
  const server = fakeOllama(["The score is 85."]);
  try {
    assert.equal(
      await queryOllama("What do llamas eat?", { url: server.url, timeoutMs: 5000 }),
      "The score is 85.",
    );
    assert.deepEqual(server.requests[0], {
      model: "llama3",
      messages: [{ role: "user", content: "What do llamas eat?" }],
      options: { seed: 123, temperature: 0, num_ctx: 2048 },
    });
  } finally {
    await server.close();
  }
});

Deno.test("queryOllama() turns an HTTP error and an unreachable server into UserErrors", async () => {
  const server = fakeOllama([""], { status: 404 });
  try {
    await assert.rejects(
      () => queryOllama("hi", { url: server.url, timeoutMs: 5000 }),
      (err: unknown) =>
        err instanceof UserError && /HTTP 404: .*model 'llama3' not found/.test(err.message),
    );
  } finally {
    await server.close();
  }
  await assert.rejects(() => queryOllama("hi", { url: server.url, timeoutMs: 5000 }), UserError);
});

Deno.test("isOllamaReachable() is true for a live server and false once it is closed", async () => {
  const server = fakeOllama(["1"]);
  try {
    assert.equal(await isOllamaReachable(server.url), true);
  } finally {
    await server.close();
  }
  assert.equal(await isOllamaReachable(server.url, { timeoutMs: 1000 }), false);
});

Deno.test("scoreResponses() averages integer replies and counts unparseable ones without crashing", async () => {
  const server = fakeOllama(["85", "Score: 90", " 40\n"]);
  try {
    const entries = [entry, entry, entry, { ...entry, model_response: "" }];
    const progress: number[] = [];
    const result = await scoreResponses(entries, {
      judge: (prompt) => queryOllama(prompt, { url: server.url, timeoutMs: 5000 }),
      onProgress: (done) => progress.push(done),
    });
    // The empty response scores 0 without a query, as the book's ollama_evaluate.py.
    assert.equal(server.requests.length, 3);
    assert.deepEqual(result.scores, [85, null, 40, 0]);
    assert.deepEqual([result.scored, result.unparseable], [3, 1]);
    assert.equal(result.average, (85 + 40 + 0) / 3);
    assert.deepEqual(result.replies, ["85", "Score: 90", " 40\n", ""]);
    assert.deepEqual(progress, [1, 2, 3, 4]);
  } finally {
    await server.close();
  }
});

Deno.test("scoreResponses() gives a null average when no reply parses", async () => {
  const result = await scoreResponses([entry], { judge: () => Promise.resolve("great!") });
  assert.deepEqual([result.average, result.scored, result.unparseable], [null, 0, 1]);
});

Deno.test("parseScore() accepts what Python's int() accepts, and nothing else", () => {
  assert.equal(parseScore("85"), 85);
  assert.equal(parseScore(" 7\n"), 7);
  assert.equal(parseScore("+3"), 3);
  assert.equal(parseScore("85.0"), null);
  assert.equal(parseScore("Score: 85"), null);
  assert.equal(parseScore(""), null);
});

Deno.test("rougeL() is the LCS F1 over lower-cased word tokens", () => {
  assert.deepEqual(metricTokens("The car's fast, isn't it?"), [
    "the",
    "car",
    "s",
    "fast",
    "isn",
    "t",
    "it",
  ]);
  assert.equal(lcsLength(["a", "b", "c", "d"], ["a", "c", "d", "b"]), 3);
  // the cat sat on the mat / the cat is on the mat: LCS 5 of 6 and 6 -> P = R = F1 = 5/6.
  const r = rougeL("The cat sat on the mat.", "the cat is on the mat");
  assert.ok(Math.abs(r.f1 - 5 / 6) < 1e-12);
  // "a b c d" vs "a c": LCS 2, P = 2/4, R = 2/2, F1 = 2PR/(P+R) = 2/3.
  const s = rougeL("a b c d", "a c");
  assert.deepEqual([s.precision, s.recall], [0.5, 1]);
  assert.ok(Math.abs(s.f1 - 2 / 3) < 1e-12);
  assert.equal(rougeL("Jane Austen.", "jane austen").f1, 1);
  assert.equal(rougeL("", "anything").f1, 0);
  assert.equal(rougeL("x y", "z").f1, 0);
});

Deno.test("exactMatch() ignores case, punctuation and spacing only", () => {
  assert.equal(exactMatch("Jane  Austen.", "jane austen"), true);
  assert.equal(exactMatch("Jane Austen wrote it.", "Jane Austen."), false);
});

Deno.test("the book's 110 test responses score ROUGE-L F1 58.30 and exact match 15.45% offline", async () => {
  const entries = await loadResponseFile(RESPONSES);
  assert.equal(entries.length, 110);
  const scores = offlineScores(entries);
  console.log(
    `offline metric on instruction-data-with-response.json: ROUGE-L F1 ${
      scores.rougeL.toFixed(2)
    }, ` +
      `exact match ${scores.exactMatch.toFixed(2)}% (the book's Llama 3 judge: 49.45)`,
  );
  assert.equal(scores.rougeL.toFixed(2), "58.30");
  assert.equal(scores.exactMatch.toFixed(2), "15.45");
  assert.equal(scores.perEntry.length, 110);
});

Deno.test("loadResponseFile() requires a string response in every entry", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/r.json`;
    await Deno.writeTextFile(path, JSON.stringify([{ instruction: "i", output: "o" }]));
    await assert.rejects(
      () => loadResponseFile(path),
      (err: unknown) =>
        err instanceof UserError && err.message === `${path}: entry 0: "model_response" is missing`,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
