/**
 * The safetensors header (Hugging Face's format: an 8-byte little-endian length N, then N bytes
 * of JSON `{name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__"?: {...}}`): parsed
 * and validated against the file's size, read from disk without the tensor data, and the state
 * of a partly downloaded file.
 * @module
 */
import { basename } from "node:path";
import { UserError } from "../util/errors.ts";

/** Bytes per element of each safetensors dtype this module understands. */
export const DTYPE_SIZES = {
  F64: 8,
  F32: 4,
  F16: 2,
  BF16: 2,
  I64: 8,
  U64: 8,
  I32: 4,
  U32: 4,
  I16: 2,
  U16: 2,
  I8: 1,
  U8: 1,
  BOOL: 1,
} as const;

/** A safetensors dtype name that can be decoded to float32. */
export type Dtype = keyof typeof DTYPE_SIZES;

/** One header entry, validated against the file's size. */
export interface HeaderEntry {
  dtype: Dtype;
  shape: number[];
  /** Byte range inside the data section (after the header). */
  begin: number;
  end: number;
}

/** The parsed header of a safetensors file. */
export interface SafetensorsHeader {
  /** Tensor entries by name, in header order. */
  entries: Map<string, HeaderEntry>;
  /** The optional `__metadata__` string map. */
  metadata: Record<string, string>;
  /** Byte offset of the data section in the file (8 + header length). */
  dataStart: number;
  /** Size the file must have: dataStart + the largest data_offsets end. */
  expectedFileSize: number;
}

// Headers above this are not safetensors files (the Rust reference caps them at 100 MB too).
const MAX_HEADER_BYTES = 100_000_000;

/** Throws a UserError naming the file. */
export function fail(label: string, message: string): never {
  throw new UserError(`${label}: ${message}`);
}

function isCount(x: unknown): x is number {
  return typeof x === "number" && Number.isSafeInteger(x) && x >= 0;
}

/** `[2,3]`, as in error messages. */
export function formatShape(shape: readonly number[]): string {
  return `[${shape.join(",")}]`;
}

/**
 * Parses and validates the header. `fileSize` is the size of the whole file; `headerBytes` must
 * hold at least the first 8 + N bytes (it may hold the whole file).
 */
export function parseHeader(
  headerBytes: Uint8Array,
  fileSize: number,
  label = "safetensors file",
): SafetensorsHeader {
  if (fileSize < 8) {
    fail(
      label,
      `file has ${fileSize} bytes, too short for a safetensors header (truncated download?)`,
    );
  }
  const view = new DataView(headerBytes.buffer, headerBytes.byteOffset, headerBytes.byteLength);
  const headerLen = view.getBigUint64(0, true);
  if (headerLen > BigInt(fileSize - 8) || headerLen > BigInt(MAX_HEADER_BYTES)) {
    fail(
      label,
      `header length ${headerLen} goes beyond the file's ${fileSize} bytes ` +
        `(truncated download, or not a safetensors file?)`,
    );
  }
  const n = Number(headerLen);
  const dataStart = 8 + n;
  if (headerBytes.byteLength < dataStart) {
    fail(label, `internal: header buffer has ${headerBytes.byteLength} of ${dataStart} bytes`);
  }
  let json: unknown;
  try {
    json = JSON.parse(
      new TextDecoder("utf-8", { fatal: true }).decode(headerBytes.subarray(8, dataStart)),
    );
  } catch (err) {
    fail(label, `header is not valid JSON (${(err as Error).message}); not a safetensors file?`);
  }
  if (json === null || typeof json !== "object" || Array.isArray(json)) {
    fail(label, "header is not a JSON object; not a safetensors file?");
  }
  const dataSize = fileSize - dataStart;
  const entries = new Map<string, HeaderEntry>();
  let metadata: Record<string, string> = {};
  let maxEnd = 0;
  let cut: { name: string; begin: number; end: number } | undefined;
  for (const [name, raw] of Object.entries(json as Record<string, unknown>)) {
    if (name === "__metadata__") {
      if (raw !== null && typeof raw === "object" && !Array.isArray(raw)) {
        metadata = Object.fromEntries(
          Object.entries(raw as Record<string, unknown>).map(([k, v]) => [k, String(v)]),
        );
      } else fail(label, `"__metadata__" is not an object`);
      continue;
    }
    const e = raw as { dtype?: unknown; shape?: unknown; data_offsets?: unknown } | null;
    if (e === null || typeof e !== "object") {
      fail(label, `tensor "${name}" has no header entry object`);
    }
    const { dtype, shape, data_offsets: offsets } = e;
    if (typeof dtype !== "string") fail(label, `tensor "${name}" has no dtype`);
    if (!(dtype in DTYPE_SIZES)) {
      fail(
        label,
        `tensor "${name}" has dtype ${dtype}, which is not supported (use F32, F16 or BF16)`,
      );
    }
    if (!Array.isArray(shape) || !shape.every(isCount)) {
      fail(label, `tensor "${name}" has an invalid shape ${JSON.stringify(shape)}`);
    }
    if (
      !Array.isArray(offsets) || offsets.length !== 2 || !isCount(offsets[0]) ||
      !isCount(offsets[1]) || offsets[0] > offsets[1]
    ) {
      fail(label, `tensor "${name}" has invalid data_offsets ${JSON.stringify(offsets)}`);
    }
    const [begin, end] = offsets as [number, number];
    if (end > dataSize) {
      // Report the first tensor the file's end cuts (header order need not be byte order).
      if (!cut || begin < cut.begin) cut = { name, begin, end };
      continue;
    }
    const elements = (shape as number[]).reduce((a, b) => a * b, 1);
    const needed = elements * DTYPE_SIZES[dtype as Dtype];
    if (end - begin !== needed) {
      fail(
        label,
        `tensor "${name}" of shape ${
          formatShape(shape as number[])
        } ${dtype} needs ${needed} bytes ` +
          `but its data_offsets ${begin}..${end} hold ${end - begin}`,
      );
    }
    maxEnd = Math.max(maxEnd, end);
    entries.set(name, { dtype: dtype as Dtype, shape: [...(shape as number[])], begin, end });
  }
  if (cut) {
    fail(
      label,
      `tensor "${cut.name}" needs bytes ${dataStart + cut.begin}..${dataStart + cut.end} but the ` +
        `file has ${fileSize} (truncated download?)`,
    );
  }
  checkContiguous(entries, label);
  return { entries, metadata, dataStart, expectedFileSize: dataStart + maxEnd };
}

/**
 * The format requires the tensors to tile the data area exactly (as the reference reader
 * checks): overlapping tensors would alias each other's bytes, and a gap is bytes nobody owns.
 */
function checkContiguous(entries: Map<string, HeaderEntry>, label: string): void {
  const byBegin = [...entries].sort((a, b) => a[1].begin - b[1].begin || a[1].end - b[1].end);
  let at = 0, prev = "the start of the data";
  for (const [name, e] of byBegin) {
    if (e.begin < at) {
      fail(label, `tensor "${name}" (bytes ${e.begin}..${e.end}) overlaps ${prev} (ends at ${at})`);
    }
    if (e.begin > at) {
      fail(
        label,
        `${e.begin - at} bytes between ${prev} (ends at ${at}) and tensor "${name}" ` +
          `(starts at ${e.begin}) belong to no tensor`,
      );
    }
    at = e.end;
    prev = `tensor "${name}"`;
  }
}

/**
 * Reads only the header of a file on disk and checks it against the file's size, without reading
 * the tensor data: cheap enough to validate a cached 1.4 GB download.
 */
export async function readSafetensorsHeader(path: string): Promise<SafetensorsHeader> {
  const label = basename(path);
  using file = await Deno.open(path, { read: true });
  const size = (await file.stat()).size;
  const first = new Uint8Array(Math.min(8, size));
  await readFull(file, first);
  const lenBytes = new Uint8Array(8);
  lenBytes.set(first);
  const headerLen = size >= 8 ? Number(new DataView(lenBytes.buffer).getBigUint64(0, true)) : 0;
  // parseHeader rejects a header length beyond the file before we allocate for it.
  if (size < 8 || headerLen > size - 8 || headerLen > MAX_HEADER_BYTES) {
    parseHeader(lenBytes, size, label);
  }
  const buf = new Uint8Array(8 + headerLen);
  buf.set(first);
  await readFull(file, buf.subarray(8));
  const header = parseHeader(buf, size, label);
  if (header.expectedFileSize !== size) {
    fail(
      label,
      `file has ${size} bytes but its header describes ${header.expectedFileSize} (corrupt file?)`,
    );
  }
  return header;
}

/** The state of a safetensors file on disk, judged from its header and size alone. */
export interface SafetensorsFileState {
  /** ok: complete; missing: no file; truncated: a prefix of a valid file (resumable); corrupt. */
  status: "ok" | "missing" | "truncated" | "corrupt";
  /** Why it is not ok (one line). */
  reason?: string;
  /** The size the header describes, when the header could be read. */
  expectedSize?: number;
  /** The size on disk. */
  size: number;
}

/**
 * Classifies a (possibly partly downloaded) safetensors file without reading its tensor data:
 * a file cut anywhere, even inside the header, is "truncated" so a download can resume it.
 */
export async function checkSafetensorsFile(path: string): Promise<SafetensorsFileState> {
  let size: number;
  try {
    size = (await Deno.stat(path)).size;
  } catch {
    return { status: "missing", size: 0 };
  }
  if (size < 8) return { status: "truncated", reason: `only ${size} bytes`, size };
  using file = await Deno.open(path, { read: true });
  const lenBytes = new Uint8Array(8);
  await readFull(file, lenBytes);
  const headerLen = new DataView(lenBytes.buffer).getBigUint64(0, true);
  if (headerLen > BigInt(MAX_HEADER_BYTES)) {
    return { status: "corrupt", reason: `header length ${headerLen} is not plausible`, size };
  }
  const n = Number(headerLen);
  if (8 + n > size) {
    return { status: "truncated", reason: `the header is cut at ${size} bytes`, size };
  }
  const buf = new Uint8Array(8 + n);
  buf.set(lenBytes);
  await readFull(file, buf.subarray(8));
  let header: SafetensorsHeader;
  try {
    // Parse the structure as if the file were complete, then compare sizes.
    header = parseHeader(buf, Number.MAX_SAFE_INTEGER, basename(path));
  } catch (err) {
    return { status: "corrupt", reason: (err as Error).message, size };
  }
  const expectedSize = header.expectedFileSize;
  if (size < expectedSize) {
    return { status: "truncated", reason: `${size} of ${expectedSize} bytes`, expectedSize, size };
  }
  if (size > expectedSize) {
    return {
      status: "corrupt",
      reason: `${size} bytes but the header describes ${expectedSize}`,
      expectedSize,
      size,
    };
  }
  return { status: "ok", expectedSize, size };
}

/** Reads exactly `into.length` bytes, or throws a UserError when the file ends first. */
export async function readFull(file: Deno.FsFile, into: Uint8Array, label = "file"): Promise<void> {
  let done = 0;
  while (done < into.length) {
    const n = await file.read(into.subarray(done));
    if (n === null) {
      throw new UserError(`${label}: the file got shorter while it was read`);
    }
    done += n;
  }
}
