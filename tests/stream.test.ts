import assert from "node:assert/strict";
import { join } from "node:path";
import { initBackend } from "../lib/backend.ts";
import { resolveConfig } from "../lib/model/config.ts";
import { GPTModel } from "../lib/model/gpt.ts";
import { generate } from "../lib/model/generate.ts";
import { generateText, streamText } from "../lib/data/stream.ts";
import { idsToBytes, TokenTextDecoder } from "../lib/data/token_bytes.ts";
import { decode, encode } from "../lib/data/tokenizer.ts";
import { paramsToTensors, saveCheckpoint } from "../lib/io/weights.ts";

await initBackend({ log: false });

const MIXED = "Emoji 😀🎉 and CJK 你好世界, then naïve café — 日本語のテキスト 🤖!";

Deno.test("TokenTextDecoder holds an emoji's first token back and gives the whole emoji with the second", () => {
  const d = new TokenTextDecoder();
  assert.deepEqual([64, 47249, 222, 65].map((id) => d.push(id)), ["a", "", "😀", "b"]);
  assert.equal(d.flush(), "");
});

Deno.test("streamed text is byte-exact at every token for emoji and CJK split across tokens", () => {
  const ids = encode(MIXED);
  const d = new TokenTextDecoder();
  let text = "", held = 0;
  for (let k = 0; k < ids.length; k++) {
    const delta = d.push(ids[k]);
    if (delta === "") held++;
    text += delta;
    // Never a replacement character, always a prefix of the text, and its bytes are exactly the
    // bytes of the tokens so far minus an incomplete trailing character (at most 3 bytes).
    assert.ok(!text.includes("\uFFFD"), `step ${k}: ${JSON.stringify(text)}`);
    assert.ok(MIXED.startsWith(text), `step ${k}: ${JSON.stringify(text)}`);
    const pending = idsToBytes(ids.slice(0, k + 1)).length - new TextEncoder().encode(text).length;
    assert.ok(pending >= 0 && pending <= 3, `step ${k}: ${pending} bytes pending`);
  }
  assert.ok(held >= 6, `only ${held} tokens ended inside a character`);
  assert.equal(text + d.flush(), MIXED);
});

Deno.test("a stream cut inside a character ends in one U+FFFD, as decode() of the same ids", () => {
  const ids = encode("😀").slice(0, 1);
  const d = new TokenTextDecoder();
  assert.equal(d.push(ids[0]) + d.flush(), "\uFFFD");
  assert.equal(decode(ids), "\uFFFD");
});

function tinyModel(): GPTModel {
  return new GPTModel(resolveConfig("gpt-tiny", { dropRate: 0, contextLength: 32 }), { seed: 7 });
}

Deno.test("generateText() reports one delta per completed token and the same ids as generate()", async () => {
  const model = tinyModel();
  const prompt = encode("Every effort moves you");
  const opts = { maxNewTokens: 12, temperature: 1.5, topK: 400, seed: 3 };
  const deltas: string[] = [];
  const { ids, text } = await generateText(model, prompt, {
    ...opts,
    onText: (d) => void deltas.push(d),
  });
  assert.deepEqual(ids, await generate(model, prompt, opts));
  assert.equal(deltas.join(""), decode(ids));
  assert.equal(text, decode(ids));
  assert.ok(deltas.length >= 1 && deltas.every((d) => d.length > 0));
  model.dispose();
});

Deno.test("streamText() yields the text as it comes; breaking out stops generation early", async () => {
  const model = tinyModel();
  const prompt = encode("Every effort moves you");
  let joined = "";
  for await (const d of streamText(model, prompt, { maxNewTokens: 10 })) joined += d;
  assert.equal(joined, decode(await generate(model, prompt, { maxNewTokens: 10 })));
  let tokens = 0, taken = 0;
  for await (
    const _ of streamText(model, prompt, { maxNewTokens: 50, onToken: () => void tokens++ })
  ) {
    if (++taken === 2) break;
  }
  assert.ok(tokens >= 2 && tokens <= 4, `${tokens} tokens generated after a break at 2`);
  model.dispose();
});

Deno.test("generate() stops at an aborted signal with the tokens so far", async () => {
  const model = tinyModel();
  const ctrl = new AbortController();
  const ids = await generate(model, encode("Hello"), {
    maxNewTokens: 30,
    signal: ctrl.signal,
    onToken: () => {
      if (!ctrl.signal.aborted) ctrl.abort();
    },
  });
  assert.equal(ids.length, 1);
  model.dispose();
});

Deno.test("llm generate --stream prints the prompt and the same text as the unstreamed run, also cut at --stop", async () => {
  const dir = await Deno.makeTempDir();
  const model = tinyModel();
  await saveCheckpoint(join(dir, "ckpt"), model.config, await paramsToTensors(model));
  model.dispose();
  const run = async (...extra: string[]) => {
    const out = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        "lib/cli.ts",
        "generate",
        "--weights",
        join(dir, "ckpt"),
        "--prompt",
        "Every effort",
        "--max-new-tokens",
        "8",
        ...extra,
      ],
      stdout: "piped",
      stderr: "piped",
      env: { LLM_QUIET: "1" },
    }).output();
    assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
    return new TextDecoder().decode(out.stdout);
  };
  const [streamed, json] = await Promise.all([run("--stream"), run("--json")]);
  const text: string = JSON.parse(json).text;
  assert.equal(streamed, "Every effort" + text + "\n");
  // A stop string from the middle of the text: the stream ends before it, as --json does.
  const stop = text.slice(Math.floor(text.length / 2)).slice(0, 3);
  const never = "\u2603\u2603\u2603\u2603"; // a longer stop string that never comes holds back more
  const [cutStreamed, cutJson, twoStreamed] = await Promise.all([
    run("--stream", "--stop", stop),
    run("--json", "--stop", stop),
    run("--stream", "--stop", never, "--stop", stop),
  ]);
  const cut: string = JSON.parse(cutJson).text;
  assert.ok(!cut.includes(stop) && cut.length < text.length, JSON.stringify({ text, stop, cut }));
  assert.equal(cutStreamed, "Every effort" + cut + "\n");
  assert.equal(twoStreamed, cutStreamed, "two --stop strings stream as the one that occurs");
  await Deno.remove(dir, { recursive: true });
});
