/**
 * GGUF files (version 3, the format of llama.cpp, Ollama and LM Studio): a little-endian header
 * with typed key/value metadata and tensor descriptions, then the tensor data, each tensor at an
 * offset aligned to `general.alignment` (32). Dimensions are listed fastest-varying first (ggml's
 * `ne`), so a row-major [rows, cols] matrix is described as [cols, rows].
 *
 * Spec: https://github.com/ggml-org/ggml/blob/master/docs/gguf.md
 * @module
 */
import { writeAll, writeAtomicWith } from "../util/fs.ts";
import { floatBytes, type FloatType } from "./dtypes.ts";

/** GGUF value type codes (gguf.md, `gguf_metadata_value_type`). */
const TYPE = {
  u8: 0,
  i8: 1,
  u16: 2,
  i16: 3,
  u32: 4,
  i32: 5,
  f32: 6,
  bool: 7,
  string: 8,
  array: 9,
  u64: 10,
  i64: 11,
  f64: 12,
} as const;

/** ggml tensor type codes of the float types we write. */
export const GGML_TYPE: Record<FloatType, number> = { f32: 0, f16: 1, bf16: 30 };

/** The scalar types a metadata value can have here. */
export type GgufScalarType = "u32" | "i32" | "f32" | "bool" | "string";

/** One metadata value: a scalar or an array of scalars of one type. */
export type GgufValue =
  | { type: GgufScalarType; value: number | boolean | string }
  | { type: "array"; of: GgufScalarType; value: (number | boolean | string)[] };

/** One tensor to write: `dims` fastest-varying first (ggml's ne), values row-major. */
export interface GgufTensor {
  name: string;
  dims: number[];
  type: FloatType;
  data: Float32Array;
}

const ALIGNMENT = 32;

/** A growing little-endian byte buffer. */
class Bytes {
  private buf = new Uint8Array(1 << 16);
  private view = new DataView(this.buf.buffer);
  length = 0;
  private room(n: number) {
    if (this.length + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.length + n) size *= 2;
    const next = new Uint8Array(size);
    next.set(this.buf.subarray(0, this.length));
    this.buf = next;
    this.view = new DataView(next.buffer);
  }
  u32(v: number) {
    this.room(4);
    this.view.setUint32(this.length, v, true);
    this.length += 4;
  }
  u64(v: number) {
    this.room(8);
    this.view.setBigUint64(this.length, BigInt(v), true);
    this.length += 8;
  }
  raw(bytes: Uint8Array) {
    this.room(bytes.length);
    this.buf.set(bytes, this.length);
    this.length += bytes.length;
  }
  string(s: string) {
    const b = new TextEncoder().encode(s);
    this.u64(b.length);
    this.raw(b);
  }
  scalar(type: GgufScalarType, v: number | boolean | string) {
    if (type === "string") return this.string(v as string);
    if (type === "bool") return this.raw(new Uint8Array([v ? 1 : 0]));
    this.room(4);
    if (type === "u32") this.view.setUint32(this.length, v as number, true);
    else if (type === "i32") this.view.setInt32(this.length, v as number, true);
    else this.view.setFloat32(this.length, v as number, true);
    this.length += 4;
  }
  pad(to: number) {
    const n = (to - (this.length % to)) % to;
    this.raw(new Uint8Array(n));
  }
  bytes(): Uint8Array {
    return this.buf.subarray(0, this.length);
  }
}

function tensorBytes(t: GgufTensor): number {
  return t.data.length * (t.type === "f32" ? 4 : 2);
}

/** The header (metadata and tensor infos, padded to the alignment) of a GGUF file. */
export function ggufHeader(metadata: [string, GgufValue][], tensors: GgufTensor[]): Uint8Array {
  const b = new Bytes();
  b.raw(new TextEncoder().encode("GGUF"));
  b.u32(3);
  b.u64(tensors.length);
  b.u64(metadata.length);
  for (const [key, v] of metadata) {
    b.string(key);
    if (v.type === "array") {
      b.u32(TYPE.array);
      b.u32(TYPE[v.of]);
      b.u64(v.value.length);
      for (const x of v.value) b.scalar(v.of, x);
    } else {
      b.u32(TYPE[v.type]);
      b.scalar(v.type, v.value);
    }
  }
  let offset = 0;
  for (const t of tensors) {
    const count = t.dims.reduce((a, d) => a * d, 1);
    if (count !== t.data.length) {
      throw new Error(`gguf: tensor ${t.name} is [${t.dims}] but has ${t.data.length} values`);
    }
    b.string(t.name);
    b.u32(t.dims.length);
    for (const d of t.dims) b.u64(d);
    b.u32(GGML_TYPE[t.type]);
    b.u64(offset);
    offset += Math.ceil(tensorBytes(t) / ALIGNMENT) * ALIGNMENT;
  }
  b.pad(ALIGNMENT);
  return b.bytes();
}

/**
 * Writes a GGUF file atomically: streamed into a temporary file beside `path` (one tensor in
 * memory at a time), flushed to disk, then renamed over `path`.
 */
export async function writeGguf(
  path: string,
  metadata: [string, GgufValue][],
  tensors: GgufTensor[],
): Promise<void> {
  const header = ggufHeader(metadata, tensors);
  await writeAtomicWith(path, async (file) => {
    await writeAll(file, header);
    for (const t of tensors) {
      const bytes = floatBytes(t.data, t.type);
      await writeAll(file, bytes);
      const pad = (ALIGNMENT - (bytes.length % ALIGNMENT)) % ALIGNMENT;
      if (pad) await writeAll(file, new Uint8Array(pad));
    }
  });
}

/** What {@link readGgufHeader} returns: the metadata and each tensor's description. */
export interface GgufInfo {
  version: number;
  metadata: Map<string, unknown>;
  tensors: { name: string; dims: number[]; type: number; offset: number }[];
  /** Where the tensor data starts in the file. */
  dataStart: number;
}

/** Parses a GGUF file's header (for checks and `model-info`-like tools). */
export function readGgufHeader(bytes: Uint8Array): GgufInfo {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let at = 0;
  const u32 = () => (at += 4, view.getUint32(at - 4, true));
  const u64 = () => (at += 8, Number(view.getBigUint64(at - 8, true)));
  const str = () => {
    const n = u64();
    at += n;
    return new TextDecoder().decode(bytes.subarray(at - n, at));
  };
  const SIZES: Record<number, [number, (o: number) => number | bigint]> = {
    0: [1, (o) => view.getUint8(o)],
    1: [1, (o) => view.getInt8(o)],
    2: [2, (o) => view.getUint16(o, true)],
    3: [2, (o) => view.getInt16(o, true)],
    4: [4, (o) => view.getUint32(o, true)],
    5: [4, (o) => view.getInt32(o, true)],
    6: [4, (o) => view.getFloat32(o, true)],
    7: [1, (o) => view.getUint8(o)],
    10: [8, (o) => view.getBigUint64(o, true)],
    11: [8, (o) => view.getBigInt64(o, true)],
    12: [8, (o) => view.getFloat64(o, true)],
  };
  const value = (type: number): unknown => {
    if (type === TYPE.string) return str();
    if (type === TYPE.array) {
      const of = u32(), n = u64();
      return Array.from({ length: n }, () => value(of));
    }
    const [size, get] = SIZES[type];
    at += size;
    const v = get(at - size);
    return type === TYPE.bool ? v !== 0 : v;
  };
  if (new TextDecoder().decode(bytes.subarray(0, 4)) !== "GGUF") throw new Error("not a GGUF file");
  at = 4;
  const version = u32(), nTensors = u64(), nKv = u64();
  const metadata = new Map<string, unknown>();
  for (let i = 0; i < nKv; i++) {
    const key = str();
    metadata.set(key, value(u32()));
  }
  const tensors = [];
  for (let i = 0; i < nTensors; i++) {
    const name = str(), nd = u32();
    const dims = Array.from({ length: nd }, () => u64());
    tensors.push({ name, dims, type: u32(), offset: u64() });
  }
  const align = Number(metadata.get("general.alignment") ?? ALIGNMENT);
  return { version, metadata, tensors, dataStart: Math.ceil(at / align) * align };
}
