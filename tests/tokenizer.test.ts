import assert from "node:assert/strict";
import { decode, encode, END_OF_TEXT, VOCAB_SIZE } from "../lib/data/tokenizer.ts";

Deno.test('encode("Hello, world") gives [15496, 11, 995]', () => {
  assert.deepEqual(encode("Hello, world"), [15496, 11, 995]);
});

Deno.test("the-verdict.txt has 5,145 GPT-2 tokens and decodes back to the same text", async () => {
  const text = await Deno.readTextFile(new URL("../data/the-verdict.txt", import.meta.url));
  const ids = encode(text);
  assert.equal(ids.length, 5145);
  assert.equal(decode(ids), text);
});

Deno.test("encode() turns <|endoftext|> into 50256 anywhere in the text, as tiktoken does", () => {
  assert.equal(END_OF_TEXT, 50256);
  assert.deepEqual(encode("<|endoftext|>"), [50256]);
  // gpt-tokenizer 4.0.0 alone would spell these out: we split on the token ourselves.
  assert.deepEqual(encode("Hello<|endoftext|>world"), [15496, 50256, 6894]);
  assert.deepEqual(encode("a <|endoftext|> b"), [64, 220, 50256, 275]);
  assert.deepEqual(encode("<|endoftext|><|endoftext|>"), [50256, 50256]);
  assert.equal(decode([15496, 50256, 6894]), "Hello<|endoftext|>world");
});

Deno.test("GPT-2's vocabulary has 50,257 tokens and decode() rejects ids outside it", () => {
  assert.equal(VOCAB_SIZE, 50257);
  assert.equal(decode(new Int32Array([15496, 11, 995])), "Hello, world");
  assert.throws(() => decode([-100]), RangeError);
  assert.throws(() => decode([50257]), RangeError);
});

Deno.test("decode() of an emoji's first token is U+FFFD and does not leak into the next decode()", () => {
  const ids = encode("a😀b"); // [64, 47249, 222, 65]: the emoji's 4 bytes span two tokens
  assert.deepEqual(ids, [64, 47249, 222, 65]);
  assert.equal(decode([47249]), "\uFFFD");
  assert.equal(decode([222]), "\uFFFD");
  assert.equal(decode(ids), "a😀b");
});
