/**
 * `llm pretrain` in a child process stopped by a signal at a chosen point: SIGTERM and SIGINT save
 * and exit 143 / 130, the run resumes where it stopped, resume refuses changed settings, and a
 * folder the OS refuses is one line.
 */
import { deepStrictEqual as assertEquals, match, ok as assert } from "node:assert/strict";
import { join } from "node:path";
import { faultServer, send, stall } from "./fault_server.ts";

const CLI = new URL("../lib/cli.ts", import.meta.url).pathname;
const dec = new TextDecoder();

/** Runs the CLI; sends `signal` once a stdout line matches `when`. Bounded by `timeoutMs`. */
async function llmUntil(
  args: string[],
  { when, signal, timeoutMs = 120_000, env = {}, whenFile }: {
    when?: RegExp;
    /** Send the signal once this file exists (polled). */
    whenFile?: string;
    env?: Record<string, string>;
    signal?: Deno.Signal;
    timeoutMs?: number;
  } = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", CLI, ...args],
    env: { LLM_BACKEND: Deno.env.get("LLM_BACKEND") ?? "", ...env },
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
  let stdout = "", stderr = "", sent = false;
  const readOut = (async () => {
    for await (const chunk of child.stdout) {
      stdout += dec.decode(chunk);
      if (when && signal && !sent && when.test(stdout)) {
        sent = true;
        child.kill(signal);
      }
    }
  })();
  const readErr = (async () => {
    for await (const chunk of child.stderr) stderr += dec.decode(chunk);
  })();
  const poll = whenFile && signal
    ? setInterval(() => {
      if (!sent && existsSync(whenFile)) {
        sent = true;
        child.kill(signal);
      }
    }, 100)
    : undefined;
  const { code } = await child.status;
  clearInterval(poll);
  clearTimeout(timer);
  await Promise.all([readOut, readErr]);
  return { code, stdout, stderr };
}

function existsSync(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch {
    return false;
  }
}

async function setup(): Promise<{ tmp: string; args: string[] }> {
  const tmp = await Deno.makeTempDir();
  const text = (await Deno.readTextFile("data/the-verdict.txt")).slice(0, 3000);
  await Deno.writeTextFile(join(tmp, "text.txt"), text);
  const args = [
    "pretrain",
    ...["--data", join(tmp, "text.txt"), "--model", "gpt-tiny", "--context-length", "16"],
    ...["--epochs", "40", "--batch-size", "2", "--eval-freq", "1", "--out", join(tmp, "run")],
  ];
  return { tmp, args };
}

function savedStep(stderr: string): number {
  const m = stderr.match(/interrupted at step (\d+): checkpoint saved; continue with --resume/);
  assert(m, stderr);
  return Number(m[1]);
}

Deno.test("pretrain stopped by SIGTERM saves and exits 143; resumed and stopped by Ctrl-C (SIGINT) it exits 130 further on", async () => {
  const { tmp, args } = await setup();
  try {
    const first = await llmUntil(args, { when: /Iter 000002/, signal: "SIGTERM" });
    assertEquals(first.code, 143, first.stderr);
    match(first.stderr, /terminated \(SIGTERM\): finishing this step and saving a checkpoint/);
    const step = savedStep(first.stderr);
    assert(step >= 3);
    const resume = [...args, "--resume", join(tmp, "run")];
    const second = await llmUntil(resume, {
      when: new RegExp(`Iter 0*${step + 2}\\)`),
      signal: "SIGINT",
    });
    assertEquals(second.code, 130, second.stderr);
    match(second.stderr, new RegExp(`^resuming at step ${step}/\\d+ from .*checkpoint$`, "m"));
    assert(savedStep(second.stderr) > step);
    // A changed setting is refused in one line, naming it; the folder is not touched.
    const changed = await llmUntil([...resume, "--peak-lr", "0.002"]);
    assertEquals(changed.code, 1);
    match(
      changed.stderr.trim(),
      /^error: --resume .*: the run used peakLr 0.001, this command gives 0.002/,
    );
    assertEquals(changed.stderr.trim().split("\n").length, 1);
    const other = join(tmp, "other.txt");
    await Deno.writeTextFile(other, (await Deno.readTextFile(join(tmp, "text.txt"))) + " x");
    const data = await llmUntil([...resume.map((a) => a.endsWith("text.txt") ? other : a)]);
    match(data.stderr, /the run used dataHash .* \(--data/);
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});

Deno.test(
  "a run folder the OS refuses (EPERM under /sys, a file in the way) is one error line naming it",
  {
    ignore: Deno.build.os !== "linux",
  },
  async () => {
    const { tmp, args } = await setup();
    try {
      await Deno.writeTextFile(join(tmp, "file"), "");
      for (
        const [out, re] of [
          [
            "/sys/llm-run",
            /^error: cannot create the run folder \/sys\/llm-run: operation not permitted/,
          ],
          [
            join(tmp, "file", "run"),
            /^error: cannot create the run folder .*file\/run: .*not a folder|already exists/,
          ],
        ] as const
      ) {
        const r = await llmUntil([...args.slice(0, -1), out]);
        assertEquals(r.code, 1, r.stderr);
        match(r.stderr.trim(), re);
        assertEquals(r.stderr.trim().split("\n").length, 1, r.stderr);
      }
    } finally {
      await Deno.remove(tmp, { recursive: true });
    }
  },
);

Deno.test("finetune stopped by Ctrl-C while downloading the base weights exits 130 in one line, the .part kept", async () => {
  const { tmp } = await setup();
  // A hub that sends a little of every file, then stalls.
  const server = faultServer(async (conn, _req, closed) => {
    await send(conn, "HTTP/1.1 200 OK\r\ncontent-length: 100000\r\nconnection: close\r\n\r\n");
    await send(conn, "x".repeat(1000));
    await stall(60_000, closed);
  });
  try {
    const out = join(tmp, "sft");
    const r = await llmUntil(
      [
        "finetune",
        ...["--data", "data/instruction-data.json", "--weights", "gpt2-small", "--out", out],
      ],
      {
        signal: "SIGINT",
        // Once bytes are on disk: the signal lands mid-download, with a .part to keep.
        whenFile: join(tmp, "cache", "gpt2-small", "config.json.part"),
        env: {
          HF_ENDPOINT: server.url,
          LLM_CACHE_DIR: join(tmp, "cache"),
          HF_HUB_CACHE: join(tmp, "none"),
        },
      },
    );
    assertEquals(r.code, 130, r.stderr);
    match(r.stderr, /stopped during the download of the base weights; run again to resume it/);
    assert(!/error:|Uncaught/.test(r.stderr), r.stderr);
    const kept = [...Deno.readDirSync(join(tmp, "cache", "gpt2-small"))].map((e) => e.name);
    assert(kept.some((n) => n.endsWith(".part")), kept.join(", "));
  } finally {
    await server.close();
    await Deno.remove(tmp, { recursive: true });
  }
});
