/** Stop (an AbortSignal) in every long call a notebook makes: each ends early, keeps what it has. */
import assert from "node:assert/strict";
import { join } from "node:path";
import { initBackend } from "../lib/backend.ts";
import { resolveConfig } from "../lib/model/config.ts";
import { GPTModel } from "../lib/model/gpt.ts";
import { loadInstructionFile } from "../lib/data/instruction.ts";
import { generateTestResponses } from "../lib/train/responses.ts";
import { scoreResponses } from "../lib/judge.ts";
import { exists } from "../lib/util/fs.ts";

await initBackend({ log: false });
const DATA = new URL("../data/instruction-data.json", import.meta.url).pathname;

Deno.test("generateTestResponses() stopped after 2 entries returns them with stopped: true and writes no file", async () => {
  const model = new GPTModel({ ...resolveConfig("gpt-tiny", { contextLength: 64 }), nLayers: 1 }, {
    seed: 1,
  });
  const entries = (await loadInstructionFile(DATA)).slice(0, 5);
  const dir = await Deno.makeTempDir();
  const outPath = join(dir, "responses.json");
  const ctrl = new AbortController();
  const out = await generateTestResponses(model, entries, {
    maxNewTokens: 2,
    outPath,
    signal: ctrl.signal,
    progress: false,
    onProgress: (done) => done === 2 && ctrl.abort(),
  });
  assert.equal(out.stopped, true);
  assert.equal(out.length, 2);
  assert.ok(out.every((e) => typeof e.model_response === "string"));
  assert.equal(await exists(outPath), false);
  const all = await generateTestResponses(model, entries.slice(0, 2), {
    maxNewTokens: 2,
    outPath,
    progress: false,
  });
  assert.equal(all.stopped, false);
  assert.deepEqual(JSON.parse(await Deno.readTextFile(outPath)), [...all]);
  model.dispose();
  await Deno.remove(dir, { recursive: true });
});

Deno.test("scoreResponses() stopped after one entry averages the entries scored so far", async () => {
  const ctrl = new AbortController();
  const entry = { instruction: "Say hi.", input: "", output: "hi", model_response: "hi" };
  const result = await scoreResponses([entry, entry, entry], {
    judge: () => {
      ctrl.abort();
      return Promise.resolve("70");
    },
    signal: ctrl.signal,
    progress: false,
  });
  assert.deepEqual([result.stopped, result.scores, result.average], [true, [70], 70]);
});

// Deno's test runner takes SIGINT for itself, so the signal part runs in its own process.
const SIGINT_SCRIPT = `
import { notebookStopSignal, stoppable } from "${new URL(
  "../lib/notebook/stop.ts",
  import.meta.url,
)}";
let got = 0;
Deno.addSignalListener("SIGINT", () => void got++); // keeps this process alive
async function sigint() {
  const before = got;
  Deno.kill(Deno.pid, "SIGINT");
  for (let i = 0; i < 300 && got === before; i++) await new Promise((r) => setTimeout(r, 10));
}
const notes = [];
const log = (line) => void notes.push(line);
const duringCall = await stoppable(async (signal) => (await sigint(), signal.aborted), { log });
let seen;
await stoppable((signal) => ((seen = signal), Promise.reject(new Error("boom"))), { log })
  .catch(() => {});
await sigint();
const handle = notebookStopSignal({ log });
handle.release();
handle.release();
console.log(JSON.stringify({ duringCall, afterThrow: seen.aborted, notes: notes.length }));
Deno.exit(0);
`;

Deno.test("a SIGINT aborts stoppable()'s signal while the call runs, and is ignored once it threw", async () => {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["eval", "--ext=js", SIGINT_SCRIPT],
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(60_000),
  }).output();
  assert.ok(out.success, new TextDecoder().decode(out.stderr));
  const r = JSON.parse(new TextDecoder().decode(out.stdout).trim().split("\n").at(-1)!);
  // One note: from the signal during the call; none after the failed call released its listener.
  assert.deepEqual(r, { duringCall: true, afterThrow: false, notes: 1 });
});
