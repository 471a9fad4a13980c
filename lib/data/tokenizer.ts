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
import { encode as bpeEncode } from "gpt-tokenizer/encoding/r50k_base";
import { idsToBytes } from "./token_bytes.ts";
import { UserError } from "../util/errors.ts";

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
    encodeOrdinary(parts[i], ids);
  }
  return ids;
}

/** GPT-2's pre-tokenizer: words, numbers, punctuation runs and whitespace (as tiktoken splits). */
const PRE_TOKEN = /'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+/gu;

/**
 * The longest pre-token given to the BPE whole. BPE's merges take time quadratic in a pre-token's
 * length (a 20,000-letter run: 2 s; 300,000: over 4 minutes), so longer ones, which natural text
 * never has, are cut into pieces of this length first: linear time, and the same ids as
 * tiktoken on any text without such runs.
 */
export const MAX_PRE_TOKEN = 400;

/** A run that may make a pre-token longer than MAX_PRE_TOKEN (a cheap test before splitting). */
const LONG_RUN = new RegExp(
  `\\p{L}{${MAX_PRE_TOKEN - 1}}|\\p{N}{${MAX_PRE_TOKEN - 1}}|[^\\s\\p{L}\\p{N}]{${
    MAX_PRE_TOKEN - 1
  }}|\\s{${MAX_PRE_TOKEN}}`,
  "u",
);

/** Appends the ids of text without special tokens. */
function encodeOrdinary(text: string, ids: number[]): void {
  // A loop, not push(...x): spreading a very long text's ids can overflow the call stack.
  const push = (t: string) => {
    if (t.length) { for (const id of bpeEncode(t)) ids.push(id); }
  };
  if (text.length <= MAX_PRE_TOKEN || !LONG_RUN.test(text)) return push(text);
  let start = 0; // the stretch since the last long pre-token goes to the BPE in one call
  for (const m of text.matchAll(PRE_TOKEN)) {
    if (m[0].length <= MAX_PRE_TOKEN) continue;
    push(text.slice(start, m.index));
    for (let i = 0; i < m[0].length; i += MAX_PRE_TOKEN) push(m[0].slice(i, i + MAX_PRE_TOKEN));
    start = m.index + m[0].length;
  }
  push(text.slice(start));
}

/**
 * Refuses a model whose vocabulary cannot hold GPT-2's token ids (its embedding lookup would fail
 * on them); `label` names where the model came from.
 */
export function assertFitsTokenizer(vocabSize: number, label: string): void {
  if (vocabSize < VOCAB_SIZE) {
    throw new UserError(
      `${label} has vocab_size ${vocabSize}, but the GPT-2 tokenizer gives ids up to ` +
        `${VOCAB_SIZE - 1}: this model cannot read GPT-2-tokenized text`,
    );
  }
}

/**
 * Decodes GPT-2 token ids (any iterable of numbers, e.g. an Int32Array) back into text. Bytes of
 * a character cut off at the end become U+FFFD, as in tiktoken (`errors="replace"`).
 */
export function decode(ids: Iterable<number>): string {
  for (const id of ids) {
    if (!Number.isInteger(id) || id < 0 || id >= VOCAB_SIZE) {
      throw new RangeError(
        `decode(): token id ${id} is outside GPT-2's vocabulary [0, ${VOCAB_SIZE})`,
      );
    }
  }
  // From the bytes, not gpt-tokenizer's decode: that one carries a trailing partial character
  // over into its next call (see token_bytes.ts).
  return new TextDecoder().decode(idsToBytes(ids));
}

/** The GPT-2 tokenizer as an object (for APIs that take a `Tokenizer`). */
export const gpt2Tokenizer: Tokenizer = { encode, decode };
