/**
 * Tensor dtypes on disk: decoding safetensors bytes (little-endian, as the format and every Deno
 * target) to float32, where F32 is a view when aligned and other dtypes are converted; and the
 * way back, float32 -> float16 / bfloat16 rounded as PyTorch's `tensor.half()` / `.bfloat16()`
 * (to nearest, ties to even), for F16/BF16 exports that halve the file size.
 * @module
 */
import { type Dtype, DTYPE_SIZES, type HeaderEntry } from "./safetensors_header.ts";

// ---------------------------------------------------------------------------------------------
// float16 / bfloat16 -> float32

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

// ---------------------------------------------------------------------------------------------
// float32 -> float16 / bfloat16

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** The IEEE half-precision bits nearest to `x` (overflow gives infinity, NaN stays NaN). */
export function f32ToF16Bits(x: number): number {
  f32[0] = x;
  const bits = u32[0];
  const sign = (bits >>> 16) & 0x8000;
  const exp = (bits >>> 23) & 0xff;
  let mant = bits & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  const e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    // A half subnormal (or zero): the implicit 1 joins the mantissa, which shifts further right.
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    let half = mant >>> shift;
    const rest = mant & ((1 << shift) - 1), halfway = 1 << (shift - 1);
    if (rest > halfway || (rest === halfway && (half & 1))) half++;
    return sign | half;
  }
  // A carry out of the mantissa rounds up into the exponent (and to infinity at the top): correct.
  let half = (e << 10) | (mant >>> 13);
  const rest = mant & 0x1fff;
  if (rest > 0x1000 || (rest === 0x1000 && (half & 1))) half++;
  return sign | half;
}

/** The bfloat16 bits nearest to `x` (the top 16 bits of float32, rounded; NaN stays NaN). */
export function f32ToBf16Bits(x: number): number {
  f32[0] = x;
  const bits = u32[0];
  if ((bits & 0x7fffffff) > 0x7f800000) return (bits >>> 16) | 0x40;
  return ((bits + 0x7fff + ((bits >>> 16) & 1)) >>> 16) & 0xffff;
}

/** Float32 values as float16 bits. */
export function toF16(data: Float32Array): Uint16Array {
  const out = new Uint16Array(data.length);
  for (let i = 0; i < data.length; i++) out[i] = f32ToF16Bits(data[i]);
  return out;
}

/** Float32 values as bfloat16 bits. */
export function toBf16(data: Float32Array): Uint16Array {
  const out = new Uint16Array(data.length);
  for (let i = 0; i < data.length; i++) out[i] = f32ToBf16Bits(data[i]);
  return out;
}

/** The storage types of an export. */
export type FloatType = "f32" | "f16" | "bf16";
/** Every {@link FloatType}. */
export const FLOAT_TYPES: readonly FloatType[] = ["f32", "f16", "bf16"];

/** The little-endian bytes of `data` stored as `type`. */
export function floatBytes(data: Float32Array, type: FloatType): Uint8Array {
  const little = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;
  if (!little) throw new Error("floatBytes: big-endian machines are not supported");
  const arr = type === "f32" ? data : type === "f16" ? toF16(data) : toBf16(data);
  return new Uint8Array(arr.buffer, arr.byteOffset, arr.byteLength);
}

// ---------------------------------------------------------------------------------------------
// safetensors bytes -> float32

type ArrayType = new (buf: ArrayBufferLike, off: number, len: number) => ArrayLike<number | bigint>;

/** The typed array each stored dtype is viewed as (F16 and BF16: bit patterns, decoded after). */
const VIEWS: Record<Dtype, ArrayType> = {
  F64: Float64Array,
  F32: Float32Array,
  F16: Uint16Array,
  BF16: Uint16Array,
  I64: BigInt64Array,
  U64: BigUint64Array,
  I32: Int32Array,
  U32: Uint32Array,
  I16: Int16Array,
  U16: Uint16Array,
  I8: Int8Array,
  U8: Uint8Array,
  BOOL: Uint8Array,
};

/** `count` little-endian elements at `offset`: an aligned view, or an aligned copy. */
function typedView(bytes: Uint8Array, offset: number, count: number, dtype: Dtype) {
  const size = DTYPE_SIZES[dtype], abs = bytes.byteOffset + offset;
  if (abs % size === 0) return new VIEWS[dtype](bytes.buffer, abs, count);
  // Unaligned data (a header not padded to 8 bytes): copy once into an aligned buffer.
  return new VIEWS[dtype](bytes.slice(offset, offset + count * size).buffer, 0, count);
}

/** One header entry's tensor as float32 (integers and booleans become their values). */
export function decodeTensor(bytes: Uint8Array, offset: number, e: HeaderEntry): Float32Array {
  const count = (e.end - e.begin) / DTYPE_SIZES[e.dtype];
  const view = typedView(bytes, offset + e.begin, count, e.dtype);
  if (e.dtype === "F32") return view as Float32Array;
  if (e.dtype === "F16") return f16ToF32(view as Uint16Array);
  if (e.dtype === "BF16") return bf16ToF32(view as Uint16Array);
  return Float32Array.from(view, Number);
}
