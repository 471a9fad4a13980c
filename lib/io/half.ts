/**
 * float32 -> float16 / bfloat16 rounding (round to nearest, ties to even, as PyTorch's
 * `tensor.half()` / `.bfloat16()`), for F16/BF16 exports that halve the file size. The inverse
 * conversions live in safetensors.ts (f16ToF32, bf16ToF32).
 * @module
 */

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
