/**
 * An exclusive lock on a folder: a file created with O_EXCL holding the owner's PID, host and
 * start time. A second process is refused in one line; a lock left by a process that is gone
 * (killed, crashed, the machine rebooted) is detected as stale and taken over.
 */
import { join } from "node:path";
import { UserError } from "./errors.ts";
import { syncDir } from "./fs.ts";

/** The lock file's name inside the locked folder. */
export const LOCK_FILE = ".lock";

/** What the lock file holds. */
export interface LockInfo {
  pid: number;
  hostname: string;
  started: string;
}

/** A held lock; `release()` removes the file (only if it is still ours). */
export interface FolderLock {
  path: string;
  release(): Promise<void>;
}

/** Whether a process with this PID runs on this machine (null: cannot tell). */
export function processAlive(pid: number): boolean | null {
  if (pid === Deno.pid) return true;
  try {
    Deno.statSync(`/proc/${pid}`);
    return true;
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) {
      // No /proc at all (macOS): cannot tell.
      try {
        Deno.statSync("/proc/self");
        return false;
      } catch {
        return null;
      }
    }
    return null;
  }
}

function hostname(): string {
  try {
    return Deno.hostname();
  } catch {
    return "unknown";
  }
}

async function readLock(path: string): Promise<LockInfo | null> {
  try {
    const info = JSON.parse(await Deno.readTextFile(path));
    return typeof info?.pid === "number" ? info : null;
  } catch {
    return null;
  }
}

async function createLock(path: string): Promise<boolean> {
  const info: LockInfo = { pid: Deno.pid, hostname: hostname(), started: new Date().toISOString() };
  let file: Deno.FsFile;
  try {
    file = await Deno.open(path, { write: true, createNew: true });
  } catch (err) {
    if (err instanceof Deno.errors.AlreadyExists) return false;
    throw err;
  }
  try {
    await file.write(new TextEncoder().encode(JSON.stringify(info) + "\n"));
    await file.sync();
  } finally {
    file.close();
  }
  return true;
}

/**
 * Takes the lock on `dir` (created if needed). Refuses, naming the owner, when a live process
 * holds it; removes a stale one (its PID no longer runs here) with a note through `log`.
 */
export async function lockFolder(
  dir: string,
  { log = console.error, what = "folder" }: { log?: (s: string) => void; what?: string } = {},
): Promise<FolderLock> {
  await Deno.mkdir(dir, { recursive: true });
  const path = join(dir, LOCK_FILE);
  for (let attempt = 0; attempt < 4; attempt++) {
    if (await createLock(path)) {
      await syncDir(dir);
      return { path, release: () => releaseLock(path) };
    }
    const o = await readLock(path);
    if (o === null) {
      // Being written this instant, or garbage: look once more, then treat it as stale.
      if (attempt === 0) await new Promise((r) => setTimeout(r, 100));
      else {
        log(`note: removed an unreadable lock file ${path}`);
        await Deno.remove(path).catch(() => {});
      }
      continue;
    }
    if (o.hostname === hostname() && processAlive(o.pid) === false) {
      log(`note: removed a stale lock of process ${o.pid} (it no longer runs) from ${dir}`);
      await Deno.remove(path).catch(() => {});
      continue;
    }
    throw new UserError(
      `${what} ${dir} is in use by process ${o.pid} on ${o.hostname} (since ${o.started}); ` +
        `wait for it to finish, or if no such process runs, delete ${path}`,
    );
  }
  throw new UserError(`${what} ${dir}: could not take the lock ${path} (another process races)`);
}

async function releaseLock(path: string): Promise<void> {
  const owner = await readLock(path);
  if (owner?.pid === Deno.pid) await Deno.remove(path).catch(() => {});
}
