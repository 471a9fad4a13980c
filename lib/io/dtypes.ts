/**
 * Decoding safetensors tensor bytes (little-endian, as the format and every Deno target) to
 * float32: F32 is a view when aligned, other dtypes are converted.
 * @module
 */
import { DTYPE_SIZES, type HeaderEntry } from "./safetensors_header.ts";

// float16 -> float32 for all 65,536 bit patterns: one table lookup per element afterwards.
let f16Table: Float32Array | undefined;
function halfTable(): Float32Array {
  if (f16Table) return f16Table;
  f16Table = new Float32Array(65536);
  for (let h = 0; h < 65536; h++) {
    const sign = h & 0x8000 ? -1 : 1;
    const exp = (h >> 10) & 0x1f;
    const frac = h & 0x3ff;
    f16Table[h] = exp === 0
      ? sign * frac * 2 ** -24 // zero and subnormals
      : exp === 31
      ? (frac ? NaN : sign * Infinity)
      : sign * (1 + frac / 1024) * 2 ** (exp - 15);
  }
  return f16Table;
}

/** Decodes IEEE float16 bit patterns to float32. */
export function f16ToF32(bits: Uint16Array): Float32Array {
  const table = halfTable();
  const out = new Float32Array(bits.length);
  for (let i = 0; i < bits.length; i++) out[i] = table[bits[i]];
  return out;
}

/** Decodes bfloat16 bit patterns (the top half of a float32) to float32. */
export function bf16ToF32(bits: Uint16Array): Float32Array {
  const out = new Uint32Array(bits.length);
  for (let i = 0; i < bits.length; i++) out[i] = bits[i] << 16;
  return new Float32Array(out.buffer);
}

/** Reads `count` little-endian elements of a dtype into a typed array (aligned view or copy). */
function typedView<T>(
  bytes: Uint8Array,
  offset: number,
  count: number,
  size: number,
  make: (buf: ArrayBufferLike, off: number, len: number) => T,
): T {
  const abs = bytes.byteOffset + offset;
  if (abs % size === 0) return make(bytes.buffer, abs, count);
  // Unaligned data (a header not padded to 8 bytes): copy once into an aligned buffer.
  const copy = bytes.slice(offset, offset + count * size);
  return make(copy.buffer, 0, count);
}

export function decodeTensor(bytes: Uint8Array, offset: number, e: HeaderEntry): Float32Array {
  const count = (e.end - e.begin) / DTYPE_SIZES[e.dtype];
  const at = offset + e.begin;
  switch (e.dtype) {
    case "F32":
      return typedView(bytes, at, count, 4, (b, o, n) => new Float32Array(b, o, n));
    case "F16":
      return f16ToF32(typedView(bytes, at, count, 2, (b, o, n) => new Uint16Array(b, o, n)));
    case "BF16":
      return bf16ToF32(typedView(bytes, at, count, 2, (b, o, n) => new Uint16Array(b, o, n)));
    case "F64":
      return Float32Array.from(
        typedView(bytes, at, count, 8, (b, o, n) => new Float64Array(b, o, n)),
      );
    case "I64": {
      const v = typedView(bytes, at, count, 8, (b, o, n) => new BigInt64Array(b, o, n));
      return Float32Array.from(v, (x) => Number(x));
    }
    case "U64": {
      const v = typedView(bytes, at, count, 8, (b, o, n) => new BigUint64Array(b, o, n));
      return Float32Array.from(v, (x) => Number(x));
    }
    case "I32":
      return Float32Array.from(
        typedView(bytes, at, count, 4, (b, o, n) => new Int32Array(b, o, n)),
      );
    case "U32":
      return Float32Array.from(
        typedView(bytes, at, count, 4, (b, o, n) => new Uint32Array(b, o, n)),
      );
    case "I16":
      return Float32Array.from(
        typedView(bytes, at, count, 2, (b, o, n) => new Int16Array(b, o, n)),
      );
    case "U16":
      return Float32Array.from(
        typedView(bytes, at, count, 2, (b, o, n) => new Uint16Array(b, o, n)),
      );
    case "I8":
      return Float32Array.from(new Int8Array(bytes.buffer, bytes.byteOffset + at, count));
    case "U8":
    case "BOOL":
      return Float32Array.from(bytes.subarray(at, at + count));
  }
}
