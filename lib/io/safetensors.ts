/**
 * The safetensors file format (Hugging Face): an 8-byte little-endian header length N, N bytes of
 * JSON `{name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__"?: {...}}`, then the raw
 * tensor bytes (offsets are relative to the end of the header).
 *
 * Reading converts every tensor to a `Float32Array` (F32 data is a view on the file's bytes, no
 * copy; the other dtypes in ./dtypes.ts); writing produces F32. The header is parsed and checked
 * in ./safetensors_header.ts. Every inconsistency throws a one-line {@link UserError} naming the
 * file and the tensor.
 *
 * @example
 * ```ts
 * import { readSafetensors, writeSafetensors } from "./safetensors.ts";
 * const path = await Deno.makeTempFile({ suffix: ".safetensors" });
 * await writeSafetensors(path, new Map([["w", { shape: [2], data: new Float32Array([1, 2]) }]]));
 * const { tensors } = await readSafetensors(path);
 * console.log(tensors.get("w")!.data); // Float32Array [1, 2]
 * ```
 * @module
 */
import { basename } from "node:path";
import { UserError } from "../util/errors.ts";
import { writeAll, writeAtomicWith } from "../util/fs.ts";
import { decodeTensor, floatBytes, type FloatType } from "./dtypes.ts";
import { type Dtype, fail, formatShape, parseHeader, readFull } from "./safetensors_header.ts";

/** One tensor in memory: its shape and its values, row-major. */
export interface TensorData {
  shape: number[];
  data: Float32Array;
}

/** Tensors by name, in file order. */
export type TensorMap = Map<string, TensorData>;

/** What {@link parseSafetensors} returns. */
export interface SafetensorsFile {
  tensors: TensorMap;
  /** The dtype each tensor had in the file (before conversion to float32). */
  dtypes: Map<string, Dtype>;
  metadata: Record<string, string>;
}

/** Options for reading. */
export interface ReadOptions {
  /** Decode only the tensors for which this returns true (the others are still validated). */
  include?: (name: string) => boolean;
  /** Name used in error messages (default: the file's base name). */
  label?: string;
}

/**
 * Parses a whole safetensors file held in memory. F32 tensors are views on `bytes` (no copy);
 * other dtypes are converted to new Float32Arrays.
 */
export function parseSafetensors(bytes: Uint8Array, options: ReadOptions = {}): SafetensorsFile {
  const label = options.label ?? "safetensors file";
  const header = parseHeader(bytes, bytes.byteLength, label);
  if (header.expectedFileSize !== bytes.byteLength) {
    fail(
      label,
      `file has ${bytes.byteLength} bytes but its header describes ${header.expectedFileSize} ` +
        `(corrupt file?)`,
    );
  }
  const tensors: TensorMap = new Map();
  const dtypes = new Map<string, Dtype>();
  for (const [name, e] of header.entries) {
    dtypes.set(name, e.dtype);
    if (options.include && !options.include(name)) continue;
    tensors.set(name, { shape: e.shape, data: decodeTensor(bytes, header.dataStart, e) });
  }
  return { tensors, dtypes, metadata: header.metadata };
}

/**
 * Reads a safetensors file into one buffer of the file's size (see {@link parseSafetensors}): F32
 * tensors are views on it, so a 1.4 GB gpt2-medium file costs 1.4 GB, not twice that.
 */
export async function readSafetensors(
  path: string,
  options: ReadOptions = {},
): Promise<SafetensorsFile> {
  const label = options.label ?? basename(path);
  let file: Deno.FsFile;
  try {
    file = await Deno.open(path, { read: true });
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) throw new UserError(`${path}: file not found`);
    throw err;
  }
  let bytes: Uint8Array;
  try {
    // Measured 3-5x faster than Deno.readFile on a 548 MB file, and no second copy.
    bytes = new Uint8Array((await file.stat()).size);
    await readFull(file, bytes, label);
  } finally {
    file.close();
  }
  return parseSafetensors(bytes, { ...options, label });
}

/** Builds the header JSON (padded with spaces to a multiple of 8 bytes). */
function buildHeader(
  tensors: TensorMap,
  metadata?: Record<string, string>,
  type: FloatType = "f32",
): Uint8Array {
  const size = type === "f32" ? 4 : 2;
  const header: Record<string, unknown> = {};
  if (metadata && Object.keys(metadata).length > 0) header.__metadata__ = metadata;
  let offset = 0;
  for (const [name, t] of tensors) {
    const elements = t.shape.reduce((a, b) => a * b, 1);
    if (elements !== t.data.length) {
      throw new UserError(
        `tensor "${name}": shape ${
          formatShape(t.shape)
        } has ${elements} elements but the data has ${t.data.length}`,
      );
    }
    header[name] = {
      dtype: type.toUpperCase(),
      shape: t.shape,
      data_offsets: [offset, offset + elements * size],
    };
    offset += elements * size;
  }
  const json = new TextEncoder().encode(JSON.stringify(header));
  // Padding keeps every F32 tensor 8-byte aligned in the file, so readers can use views.
  const padded = Math.ceil(json.length / 8) * 8;
  const out = new Uint8Array(8 + padded).fill(0x20);
  new DataView(out.buffer).setBigUint64(0, BigInt(padded), true);
  out.set(json, 8);
  return out;
}

/** The bytes of F32 data, as a view (every Deno target is little-endian, as the format). */
function f32Bytes(data: Float32Array): Uint8Array {
  return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
}

/** Serializes tensors as F32 into one buffer (for small files and tests). */
export function serializeSafetensors(
  tensors: TensorMap,
  metadata?: Record<string, string>,
): Uint8Array {
  const header = buildHeader(tensors, metadata);
  let total = header.length;
  for (const t of tensors.values()) total += t.data.byteLength;
  const out = new Uint8Array(total);
  out.set(header);
  let at = header.length;
  for (const t of tensors.values()) {
    out.set(f32Bytes(t.data), at);
    at += t.data.byteLength;
  }
  return out;
}

/** Options of {@link writeSafetensors}. */
export interface WriteSafetensorsOptions {
  /** Storage type: "f32" (default), or "f16"/"bf16" (rounded to nearest even; half the size). */
  type?: FloatType;
}

/**
 * Writes tensors as F32 (or F16/BF16) safetensors, atomically: the bytes stream into a temporary
 * file in the same folder (no second in-memory copy of the weights), which is then renamed over
 * `path`.
 */
export async function writeSafetensors(
  path: string,
  tensors: TensorMap,
  metadata?: Record<string, string>,
  { type = "f32" }: WriteSafetensorsOptions = {},
): Promise<void> {
  const header = buildHeader(tensors, metadata, type);
  await writeAtomicWith(path, async (file) => {
    await writeAll(file, header);
    for (const t of tensors.values()) {
      await writeAll(file, type === "f32" ? f32Bytes(t.data) : floatBytes(t.data, type));
    }
  });
}
