/**
 * Input that used to be accepted but wrong, now refused in one line naming the file, flag or
 * value: text that is not UTF-8, empty token ids, config.json fields of the wrong type,
 * <|endoftext|> inside an entry, a model whose vocabulary the tokenizer overflows, absurd sizes.
 * And the tokenizer stays linear on a long run without spaces.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { encode as bpeEncode } from "gpt-tokenizer/encoding/r50k_base";
import { cli, denoChild, withTempDir } from "./cli_helpers.ts";
import { UserError } from "../lib/util/errors.ts";
import { decodeUtf8, firstInvalidUtf8 } from "../lib/util/utf8.ts";
import { decode, encode, MAX_PRE_TOKEN } from "../lib/data/tokenizer.ts";
import { parseInstructionData } from "../lib/data/instruction.ts";
import { GPTModel } from "../lib/model/gpt.ts";
import { gptConfigFromHf } from "../lib/io/hf_config.ts";
import { paramsToTensors, saveCheckpoint } from "../lib/io/weights.ts";
import { initBackend } from "../lib/backend.ts";

await initBackend({ log: false });

const TINY = "tests/fixtures/gpt-tiny-qkv";

function oneLineError(r: { code: number; err: string }, re: RegExp): void {
  assert.equal(r.code, 1, r.err);
  const lines = r.err.trim().split("\n").filter((l) => l.startsWith("error:"));
  assert.equal(lines.length, 1, r.err);
  assert.match(lines[0], re);
}

Deno.test("text that is not UTF-8 is refused naming the byte offset (pretrain --data, finetune --data)", async () => {
  await withTempDir(async (tmp) => {
    const latin1 = new Uint8Array([...new TextEncoder().encode("a caf"), 0xe9, 0x20, 0x61]);
    await Deno.writeFile(join(tmp, "t.txt"), latin1);
    oneLineError(
      await cli("pretrain", "--data", join(tmp, "t.txt"), "--dry-run"),
      /--data .*t\.txt is not valid UTF-8: bad byte at offset 5 \(0xe9\)/,
    );
    const json = new TextEncoder().encode('[{"instruction":"x","input":"","output":"caf');
    await Deno.writeFile(
      join(tmp, "d.json"),
      new Uint8Array([...json, 0xe9, ...new TextEncoder().encode('"}]')]),
    );
    oneLineError(
      await cli("finetune", "--data", join(tmp, "d.json"), "--dry-run"),
      /d\.json is not valid UTF-8: bad byte at offset 44/,
    );
  });
});

Deno.test("firstInvalidUtf8() finds overlongs, surrogates, stray and cut-off sequences; valid text passes", () => {
  assert.equal(firstInvalidUtf8(new TextEncoder().encode("héllo €𝄞")), -1);
  assert.equal(firstInvalidUtf8(new Uint8Array([0x41, 0xc0, 0x80])), 1); // overlong "\0"
  assert.equal(firstInvalidUtf8(new Uint8Array([0xed, 0xa0, 0x80])), 0); // a surrogate
  assert.equal(firstInvalidUtf8(new Uint8Array([0x41, 0x80])), 1); // stray continuation
  assert.equal(firstInvalidUtf8(new Uint8Array([0x41, 0x42, 0xe2, 0x82])), 2); // cut off
  assert.throws(() => decodeUtf8(new Uint8Array([0xff]), "x"), UserError);
  assert.equal(decodeUtf8(new Uint8Array([0xef, 0xbb, 0xbf, 0x41]), "x"), "A"); // BOM dropped
});

Deno.test("a 1,000,000-character run without spaces tokenizes (bounded at 60 s in a child) and decodes back", async () => {
  const code = `import { encode, decode } from "${new URL(
    "../lib/data/tokenizer.ts",
    import.meta.url,
  )}";
    const s = "x".repeat(1_000_000) + " end"; const ids = encode(s);
    if (decode(ids) !== s) throw new Error("round trip"); console.log(ids.length);`;
  const out = await denoChild(["eval", code]);
  assert.equal(out.code, 0, out.stderrText);
  assert.ok(Number(out.stdoutText) > 0);
});

Deno.test("text without pre-tokens over MAX_PRE_TOKEN gives exactly gpt-tokenizer's ids", async () => {
  const text = await Deno.readTextFile("data/instruction-data.json");
  assert.deepEqual(encode(text), bpeEncode(text));
  const edge = "a".repeat(MAX_PRE_TOKEN) + "  b " + " ".repeat(MAX_PRE_TOKEN) + "1".repeat(50);
  assert.deepEqual(encode(edge), bpeEncode(edge));
  const long = "word ".repeat(10) + "y".repeat(3 * MAX_PRE_TOKEN + 5) + " tail";
  assert.equal(decode(encode(long)), long);
});

Deno.test("generate --prompt-ids '' or '1,,2' is refused instead of becoming token 0", async () => {
  for (const ids of ["", "1,,2", "3,", "1.5", "-1", " "]) {
    oneLineError(
      await cli("generate", "--weights", TINY, `--prompt-ids=${ids}`),
      /--prompt-ids must be comma-separated token ids/,
    );
  }
});

Deno.test("config.json fields of the wrong type are refused naming the field", () => {
  const base = { vocab_size: 97, n_positions: 16, n_embd: 32, n_layer: 2, n_head: 4 };
  for (
    const [extra, re] of [
      [{ qkv_bias: "no" }, /qkv_bias must be true or false \(got "no"\)/],
      [{ tie_word_embeddings: 0 }, /tie_word_embeddings must be true or false/],
      [{ resid_pdrop: "0.1" }, /resid_pdrop must be a number \(got "0.1"\)/],
      [{ n_embd: "32" }, /n_embd must be a positive integer \(got "32"\)/],
      [{ n_positions: 2e9 }, /too large/],
    ] as const
  ) {
    assert.throws(
      () => gptConfigFromHf(JSON.parse(JSON.stringify({ ...base, ...extra })), "x/config.json"),
      (e: Error) =>
        e instanceof UserError && /^x\/config.json: /.test(e.message) && re.test(e.message),
    );
  }
});

Deno.test("<|endoftext|> inside an instruction entry is refused with the entry's index and field", () => {
  const data = JSON.stringify([
    { instruction: "a", input: "", output: "b" },
    { instruction: "a", input: "x <|endoftext|> y", output: "b" },
  ]);
  assert.throws(
    () => parseInstructionData(data, "d.json"),
    /^UserError: d\.json: entry 1: "input" contains <\|endoftext\|>/,
  );
});

Deno.test("finetune on weights whose vocabulary is smaller than GPT-2's is one line, not a GatherV2 error", async () => {
  oneLineError(
    await cli("finetune", "--data", "data/instruction-data.json", "--weights", TINY, "--dry-run"),
    /--weights tests\/fixtures\/gpt-tiny-qkv has vocab_size 97, but the GPT-2 tokenizer gives ids up to 50256/,
  );
});

Deno.test("absurd sizes are one line: --epochs 1000000000, --context-length 100000000", async () => {
  oneLineError(
    await cli("pretrain", "--data", "data/the-verdict.txt", "--epochs", "1000000000", "--dry-run"),
    /--epochs 1000000000 gives 9\.00e\+9 steps .* at most 1e\+9/,
  );
  oneLineError(
    await cli(
      "pretrain",
      "--data",
      "data/the-verdict.txt",
      "--context-length",
      "100000000",
      "--dry-run",
    ),
    /config is too large: one parameter would have 7\.68e\+10 elements/,
  );
});

Deno.test("generate with a model whose vocabulary is larger than GPT-2's refuses an id the tokenizer cannot decode, in one line", async () => {
  await withTempDir(async (tmp) => {
    const config = {
      vocabSize: 50300,
      contextLength: 8,
      embDim: 8,
      nHeads: 2,
      nLayers: 1,
      dropRate: 0,
      qkvBias: false,
    };
    const model = new GPTModel(config, { seed: 1 });
    const params = await paramsToTensors(model);
    model.dispose();
    // Final norm -> all ones; the head's only non-zero column is id 50299: greedy picks it.
    params.set("final_norm.scale", { shape: [8], data: new Float32Array(8) });
    params.set("final_norm.shift", { shape: [8], data: new Float32Array(8).fill(1) });
    const head = new Float32Array(8 * 50300);
    for (let r = 0; r < 8; r++) head[r * 50300 + 50299] = 10;
    params.set("out_head.weight", { shape: [8, 50300], data: head });
    await saveCheckpoint(join(tmp, "big"), config, params);
    oneLineError(
      await cli(
        "generate",
        "--weights",
        join(tmp, "big"),
        "--prompt-ids",
        "1",
        "--max-new-tokens",
        "2",
      ),
      /the model produced token 50299, which the GPT-2 tokenizer \(50257 ids\) cannot decode/,
    );
  });
});
