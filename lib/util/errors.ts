/**
 * The errors the CLI tells apart: a UserError (bad input or an environmental fault: one line,
 * exit 1), an ExitCode (a command that ends early on purpose, e.g. a run stopped by SIGTERM), and
 * everything else (a bug: an "internal error" line, the stack only with LLM_DEBUG=1).
 */

/** An error caused by the user's input: the CLI prints its message as one line and exits 1. */
export class UserError extends Error {
  override name = "UserError";
}

/** Ends a command with this exit code, printing nothing more (it has said why already). */
export class ExitCode extends Error {
  override name = "ExitCode";
  constructor(readonly code: number, message = `exit ${code}`) {
    super(message);
  }
}

/** Error codes of faults in the environment (not bugs): what the disk or the OS refused. */
const FS_CODES: Record<string, string> = {
  ENOSPC: "no space left on the device",
  EDQUOT: "disk quota exceeded",
  EROFS: "read-only file system",
  EACCES: "permission denied",
  EPERM: "operation not permitted",
  ENOENT: "no such file or folder",
  ENOTDIR: "not a folder",
  EISDIR: "is a folder",
  EEXIST: "already exists",
  EMFILE: "too many open files",
  EIO: "input/output error",
};

/** The errno-style code of a Deno or Node error, if any (e.g. "ENOSPC"). */
export function errorCode(err: unknown): string | undefined {
  const code = (err as { code?: unknown })?.code;
  return typeof code === "string" ? code : undefined;
}

/** True for an error the OS or the disk raised (full disk, permissions, missing path...). */
export function isEnvironmentError(err: unknown): boolean {
  if (err instanceof Deno.errors.PermissionDenied || err instanceof Deno.errors.NotFound) {
    return true;
  }
  const code = errorCode(err);
  return code !== undefined && code in FS_CODES;
}

/**
 * An OS/disk error as a UserError that says what was being done (`doing`) and what the OS said,
 * e.g. "cannot write ... : no space left on the device (os error 28: writefile 'x')". Any other
 * error is returned unchanged.
 */
export function describeFsError(err: unknown, doing: string): unknown {
  if (err instanceof UserError || !isEnvironmentError(err)) return err;
  const code = errorCode(err);
  const detail = (err as Error).message.split("\n")[0];
  const what = code && FS_CODES[code] ? `${FS_CODES[code]} (${detail})` : detail;
  return new UserError(`${doing}: ${what}`);
}
