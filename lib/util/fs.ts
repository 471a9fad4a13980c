/**
 * Durable file writes: every file is written to a temporary name in its folder, fsynced, renamed
 * over the target, and the folder is fsynced after the rename, so a crash or a power loss leaves
 * either the old file or the whole new one, never a half-written one under the real name.
 */
import { dirname } from "node:path";

/** Flushes a folder's entries (a rename is durable only once its folder is synced). */
export async function syncDir(dir: string): Promise<void> {
  let f: Deno.FsFile | undefined;
  try {
    f = await Deno.open(dir, { read: true });
    await f.sync();
  } catch {
    // Some platforms (Windows) cannot open a folder; the rename is still atomic there.
  } finally {
    f?.close();
  }
}

/**
 * Writes `path` atomically and durably: `write` fills a temporary file in the same folder, which
 * is fsynced, renamed over `path`, and the folder synced. On failure the temporary file is removed.
 */
export async function writeAtomicWith(
  path: string,
  write: (file: Deno.FsFile) => Promise<void>,
): Promise<void> {
  const dir = dirname(path);
  await Deno.mkdir(dir, { recursive: true });
  const tmp = `${path}.${Deno.pid}.${crypto.randomUUID().slice(0, 8)}.tmp`;
  try {
    {
      using file = await Deno.open(tmp, { write: true, create: true, truncate: true });
      await write(file);
      await file.sync();
    }
    await Deno.rename(tmp, path);
  } catch (err) {
    await Deno.remove(tmp).catch(() => {});
    throw err;
  }
  await syncDir(dir);
}

/** Writes all of `bytes` to an open file. */
export async function writeAll(file: Deno.FsFile, bytes: Uint8Array): Promise<void> {
  let done = 0;
  while (done < bytes.length) done += await file.write(bytes.subarray(done));
}

/** Writes bytes atomically and durably (see writeAtomicWith). */
export function writeFileAtomic(path: string, data: Uint8Array): Promise<void> {
  return writeAtomicWith(path, (file) => writeAll(file, data));
}

/** Writes text atomically (see writeFileAtomic). */
export function writeTextAtomic(path: string, text: string): Promise<void> {
  return writeFileAtomic(path, new TextEncoder().encode(text));
}

/** True when the path exists. */
export async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch {
    return false;
  }
}
