/**
 * Stop without losing the kernel. Jupyter's interrupt (Stop in Jupyter and VS Code) sends SIGINT,
 * and a Deno kernel that has no SIGINT listener dies with everything in memory
 * (denoland/deno#24491). A cell that listens turns the interrupt into an AbortSignal instead: the
 * long call finishes its step, keeps the model, and returns `stopped: true`.
 *
 * @example
 * ```ts
 * // The listener lives exactly as long as the call, also when it throws.
 * const result = await stoppable((signal) => trainModel(model, { ...options, signal }));
 * if (result.stopped) console.log("stopped; the model is kept, run the next cell");
 * ```
 * @module
 */

/** An AbortSignal fired by Stop/SIGINT; dispose it (or call release) to remove the listener. */
export interface StopHandle extends Disposable {
  readonly signal: AbortSignal;
  /** Removes the SIGINT listener (idempotent). */
  release(): void;
}

/**
 * Registers a SIGINT listener that aborts the returned signal. The first interrupt asks the work
 * to stop after its step; later ones only repeat the note (the kernel and its state stay).
 * Use with `using stop = notebookStopSignal();` or release it yourself; {@link stoppable} does both.
 */
export function notebookStopSignal(
  { log = console.log }: { log?: (line: string) => void } = {},
): StopHandle {
  const ctrl = new AbortController();
  const handler = () => {
    log(
      ctrl.signal.aborted
        ? "still stopping: waiting for the current step to finish"
        : "stop requested: finishing the current step (the model stays in memory)",
    );
    ctrl.abort(new DOMException("stopped by the user", "AbortError"));
  };
  let added = false;
  try {
    Deno.addSignalListener("SIGINT", handler);
    added = true;
  } catch {
    // No signals here (Windows without a console): the work simply runs to its end.
  }
  const release = () => {
    if (!added) return;
    added = false;
    Deno.removeSignalListener("SIGINT", handler);
  };
  return { signal: ctrl.signal, release, [Symbol.dispose]: release };
}

/**
 * Runs `work` with a fresh stop signal and removes the listener when it settles (also on error),
 * so an interrupt between cells is Jupyter's again.
 */
export async function stoppable<T>(
  work: (signal: AbortSignal) => Promise<T>,
  options: { log?: (line: string) => void } = {},
): Promise<T> {
  using stop = notebookStopSignal(options);
  return await work(stop.signal);
}

/** True when an error is the abort of a stop signal (a download cut short by Stop). */
export function isStopError(err: unknown): boolean {
  return err instanceof DOMException && err.name === "AbortError";
}
