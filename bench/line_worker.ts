/**
 * A worker process driven over stdin/stdout, one JSON object per line: the benchmarks start one
 * per side (ours, PyTorch, LoRA, full) and alternate their steps.
 */

/** Splits a text stream into lines. */
export function lines(): TransformStream<string, string> {
  let buf = "";
  return new TransformStream({
    transform(chunk, ctl) {
      buf += chunk;
      let i;
      while ((i = buf.indexOf("\n")) >= 0) {
        ctl.enqueue(buf.slice(0, i));
        buf = buf.slice(i + 1);
      }
    },
    flush(ctl) {
      if (buf) ctl.enqueue(buf);
    },
  });
}

/** A child process that answers each line it is sent with one JSON line. */
export class LineWorker {
  readonly proc: Deno.ChildProcess;
  readonly #writer: WritableStreamDefaultWriter<Uint8Array>;
  readonly #reader: ReadableStreamDefaultReader<string>;

  constructor(
    readonly name: string,
    cmd: string,
    args: string[],
    env: Record<string, string> = {},
  ) {
    this.proc = new Deno.Command(cmd, {
      args,
      env,
      // The repository root, where deno.json is, whatever the caller's folder (a notebook's).
      cwd: new URL("..", import.meta.url).pathname,
      stdin: "piped",
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
    this.#writer = this.proc.stdin.getWriter();
    this.#reader = this.proc.stdout.pipeThrough(new TextDecoderStream()).pipeThrough(lines())
      .getReader();
  }

  /** The next JSON line the worker printed. */
  async read<T>(): Promise<T> {
    const { value, done } = await this.#reader.read();
    if (done) throw new Error(`the ${this.name} worker exited early`);
    return JSON.parse(value) as T;
  }

  /** Sends one line. */
  async send(line: string): Promise<void> {
    await this.#writer.write(new TextEncoder().encode(line + "\n"));
  }

  /** Closes its input and waits for it to exit. */
  async close(): Promise<void> {
    await this.#writer.close();
    await this.proc.status;
    await this.#reader.cancel();
  }
}
