/**
 * Ctrl-C (SIGINT) and SIGTERM (what `kill`, systemd and CI send) as an AbortSignal: the first one
 * asks the run to finish its step and save; a second one of either leaves at once. Scripts tell
 * an interrupted run from a finished one by the exit code: 128 + the signal's number.
 */

/** The signals a run stops on, and the exit code each gives (128 + signal number). */
export const STOP_SIGNALS = { SIGINT: 130, SIGTERM: 143 } as const;
export type StopSignal = keyof typeof STOP_SIGNALS;

/** A stop signal for a long call, fed by OS signals and/or a caller's own AbortSignal. */
export interface Interrupt {
  signal: AbortSignal;
  /** Which OS signal stopped the run (null: none, or the caller's signal). */
  readonly by: StopSignal | null;
  /** Removes the OS signal handlers. */
  release(): void;
}

/**
 * Listens for SIGINT and SIGTERM (when `os` is true) and follows `parent` (a notebook's stop
 * button). The first OS signal aborts the returned signal; a second exits the process at once.
 */
export function interruptSignal(
  { log = console.error, os = true, parent }: {
    log?: (s: string) => void;
    os?: boolean;
    parent?: AbortSignal;
  } = {},
): Interrupt {
  const ctrl = new AbortController();
  let by: StopSignal | null = null;
  const onParent = () => ctrl.abort(parent?.reason);
  if (parent?.aborted) ctrl.abort(parent.reason);
  parent?.addEventListener("abort", onParent, { once: true });
  const handlers: [StopSignal, () => void][] = [];
  for (const name of os ? (Object.keys(STOP_SIGNALS) as StopSignal[]) : []) {
    const handler = () => {
      if (by) Deno.exit(STOP_SIGNALS[name]); // the second signal: leave now
      by = name;
      log(
        `\n${name === "SIGINT" ? "interrupted (Ctrl-C)" : "terminated (SIGTERM)"}: finishing ` +
          "this step and saving a checkpoint (Ctrl-C again to quit at once)",
      );
      ctrl.abort(new Error(name));
    };
    try {
      Deno.addSignalListener(name, handler);
      handlers.push([name, handler]);
    } catch {
      // Not supported here (SIGTERM on Windows): the run simply goes on.
    }
  }
  return {
    signal: ctrl.signal,
    get by() {
      return by;
    },
    release() {
      parent?.removeEventListener("abort", onParent);
      for (const [name, h] of handlers.splice(0)) {
        try {
          Deno.removeSignalListener(name, h);
        } catch { /* already gone */ }
      }
    },
  };
}
