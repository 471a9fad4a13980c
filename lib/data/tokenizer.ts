/**
 * GPT-2 byte-pair encoding (the book's `tiktoken.get_encoding("gpt2")`), via gpt-tokenizer's
 * `r50k_base` encoding: 50,257 tokens, `<|endoftext|>` = 50256.
 *
 * @example
 * ```ts
 * import { decode, encode } from "./tokenizer.ts";
 * encode("Hello, world"); // [15496, 11, 995]
 * decode([15496, 11, 995]); // "Hello, world"
 * ```
 * @module
 */
import { decode as bpeDecode, encode as bpeEncode } from "gpt-tokenizer/encoding/r50k_base";

/** Id of `<|endoftext|>`, GPT-2's only special token (also the book's padding token). */
export const END_OF_TEXT = 50256;
/** The text of GPT-2's end-of-text token. */
export const END_OF_TEXT_TEXT = "<|endoftext|>";
/** Number of token ids in GPT-2's vocabulary (50,000 merges + 256 bytes + `<|endoftext|>`). */
export const VOCAB_SIZE = 50257;

/** Something that turns text into token ids and back (lets tests and notebooks pass their own). */
export interface Tokenizer {
  encode(text: string): number[];
  decode(ids: Iterable<number>): string;
}

/**
 * Encodes text as GPT-2 token ids; `<|endoftext|>` in the text becomes 50256, like tiktoken's
 * `encode(text, allowed_special={"<|endoftext|>"})`.
 */
export function encode(text: string): number[] {
  // We split on the special token ourselves, as tiktoken does: gpt-tokenizer 4.0.0 only finds an
  // allowed special token at the very start of the text (its search regex is sticky), so
  // `encode("a<|endoftext|>b", {allowedSpecial})` would spell the token out as 7 ordinary tokens.
  const ids: number[] = [];
  const parts = text.split(END_OF_TEXT_TEXT);
  for (let i = 0; i < parts.length; i++) {
    if (i > 0) ids.push(END_OF_TEXT);
    if (parts[i].length === 0) continue;
    // A loop, not push(...x): spreading a very long text's ids can overflow the call stack.
    for (const id of bpeEncode(parts[i])) ids.push(id);
  }
  return ids;
}

/** Decodes GPT-2 token ids (any iterable of numbers, e.g. an Int32Array) back into text. */
export function decode(ids: Iterable<number>): string {
  for (const id of ids) {
    if (!Number.isInteger(id) || id < 0 || id >= VOCAB_SIZE) {
      throw new RangeError(
        `decode(): token id ${id} is outside GPT-2's vocabulary [0, ${VOCAB_SIZE})`,
      );
    }
  }
  return bpeDecode(ids);
}

/** The GPT-2 tokenizer as an object (for APIs that take a `Tokenizer`). */
export const gpt2Tokenizer: Tokenizer = { encode, decode };
