/**
 * GPT-2 tokens as bytes. GPT-2's BPE is byte-level: one emoji or CJK character is often split over
 * two or three tokens, each holding part of its UTF-8 bytes. Decoding token by token (streaming)
 * must therefore hold back an incomplete UTF-8 sequence until the token that completes it.
 *
 * gpt-tokenizer 4.0.0's `decode` keeps such a trailing partial sequence inside one module-wide
 * `TextDecoder` (`stream: true`), so it shows up at the start of the *next* `decode` call. Decoding
 * from the bytes here gives tiktoken's answer (`errors="replace"`) with no state between calls.
 *
 * @example
 * ```ts
 * const stream = new TokenTextDecoder();
 * [47249, 222].map((id) => stream.push(id)); // ["", "😀"]
 * stream.flush(); // ""
 * ```
 * @module
 */
import ranks from "gpt-tokenizer/bpeRanks/r50k_base";

const END_OF_TEXT = 50256;
const END_OF_TEXT_BYTES = new TextEncoder().encode("<|endoftext|>");

let table: Uint8Array[] | undefined;

/** The UTF-8 bytes of every GPT-2 token id, built once from gpt-tokenizer's rank table. */
function byteTable(): Uint8Array[] {
  if (table) return table;
  const encoder = new TextEncoder();
  table = (ranks as (string | number[])[]).map((r) =>
    typeof r === "string" ? encoder.encode(r) : new Uint8Array(r)
  );
  return table;
}

/** The bytes of one token (`<|endoftext|>` spelled out); throws RangeError outside the vocabulary. */
export function tokenBytes(id: number): Uint8Array {
  if (id === END_OF_TEXT) return END_OF_TEXT_BYTES;
  const bytes = Number.isInteger(id) ? byteTable()[id] : undefined;
  if (!bytes) throw new RangeError(`token id ${id} is outside GPT-2's vocabulary [0, 50257)`);
  return bytes;
}

/** The bytes of a token sequence. */
export function idsToBytes(ids: Iterable<number>): Uint8Array {
  const parts: Uint8Array[] = [];
  let length = 0;
  for (const id of ids) {
    const b = tokenBytes(id);
    parts.push(b);
    length += b.length;
  }
  const out = new Uint8Array(length);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/**
 * Token ids in, text out, byte-exact at every step: `push(id)` returns the new complete
 * characters, holding back bytes of a character that a later token completes; `flush()` ends the
 * stream (a sequence left incomplete becomes U+FFFD, as in a whole-text decode).
 * The pushed deltas joined equal `decode(ids)`.
 */
export class TokenTextDecoder {
  readonly #utf8 = new TextDecoder("utf-8");

  /** The text that token `id` completes (may be "" while a character is split). */
  push(id: number): string {
    return this.#utf8.decode(tokenBytes(id), { stream: true });
  }

  /** The rest of the text once no more tokens come. */
  flush(): string {
    return this.#utf8.decode();
  }
}
