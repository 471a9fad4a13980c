/**
 * Strict UTF-8: text that is not valid UTF-8 is refused with the byte offset of the first bad
 * sequence, instead of being decoded lossily (U+FFFD) and trained on.
 */
import { describeFsError, UserError } from "./errors.ts";

/** The offset of the first byte that does not start or continue a valid UTF-8 sequence, or -1. */
export function firstInvalidUtf8(b: Uint8Array): number {
  let i = 0;
  while (i < b.length) {
    const c = b[i];
    if (c < 0x80) {
      i++;
      continue;
    }
    // Sequence length and the allowed range of the second byte (no overlongs, no surrogates).
    let n: number, lo = 0x80, hi = 0xbf;
    if (c >= 0xc2 && c <= 0xdf) n = 2;
    else if (c >= 0xe0 && c <= 0xef) {
      n = 3;
      if (c === 0xe0) lo = 0xa0;
      if (c === 0xed) hi = 0x9f;
    } else if (c >= 0xf0 && c <= 0xf4) {
      n = 4;
      if (c === 0xf0) lo = 0x90;
      if (c === 0xf4) hi = 0x8f;
    } else return i;
    if (i + n > b.length) return i;
    if (b[i + 1] < lo || b[i + 1] > hi) return i;
    for (let k = 2; k < n; k++) if ((b[i + k] & 0xc0) !== 0x80) return i;
    i += n;
  }
  return -1;
}

/** Decodes UTF-8 or throws a UserError naming `label` and the first bad byte's offset. */
export function decodeUtf8(bytes: Uint8Array, label: string): string {
  try {
    const text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
    return text.charCodeAt(0) === 0xfeff ? text.slice(1) : text; // drop a byte-order mark
  } catch {
    const at = firstInvalidUtf8(bytes);
    const hex = at >= 0 ? ` (0x${bytes[at].toString(16).padStart(2, "0")})` : "";
    throw new UserError(
      `${label} is not valid UTF-8: bad byte at offset ${at}${hex}; convert it first ` +
        "(e.g. iconv -f latin1 -t utf-8)",
    );
  }
}

/** Reads a UTF-8 text file; unreadable or not UTF-8 is one UserError naming `flag` and the path. */
export async function readUtf8File(path: string, flag: string): Promise<string> {
  let bytes: Uint8Array;
  try {
    bytes = await Deno.readFile(path);
  } catch (err) {
    throw describeFsError(err, `cannot read ${flag} ${path}`);
  }
  return decodeUtf8(bytes, `${flag} ${path}`);
}
