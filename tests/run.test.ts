/**
 * The run folder (lib/train/run.ts): every state a kill can leave is recoverable, resume is exact
 * or refused naming the setting, one process per folder, a full disk is found early and cleaned.
 */
import { deepStrictEqual as assertEquals, match, ok as assert, rejects } from "node:assert/strict";
import { join } from "node:path";
import { initBackend } from "../lib/backend.ts";
import { UserError } from "../lib/util/errors.ts";
import { LOCK_FILE } from "../lib/util/lock.ts";
import { RunFolder } from "../lib/train/run.ts";
import { TINY, tinySettings, tinySetup, trainIn } from "./run_helpers.ts";
import { withTempDir } from "./cli_helpers.ts";

await initBackend({ log: false });

async function copyFlat(from: string, to: string): Promise<void> {
  await Deno.mkdir(to);
  for await (const e of Deno.readDir(from)) {
    await Deno.copyFile(join(from, e.name), join(to, e.name));
  }
}

Deno.test("a run killed before its first checkpoint: a new run starts afresh over it, and --resume starts from step 0", async () => {
  await withTempDir(async (tmp) => {
    const dir = join(tmp, "run");
    // What a SIGKILL before the first save leaves: run.json, metrics.jsonl, a dead owner's lock.
    await Deno.mkdir(dir);
    await Deno.writeTextFile(join(dir, "run.json"), JSON.stringify({ settings: tinySettings() }));
    await Deno.writeTextFile(join(dir, "metrics.jsonl"), '{"step":0}\n');
    await Deno.writeTextFile(
      join(dir, LOCK_FILE),
      JSON.stringify({ pid: 2 ** 22 + 1, hostname: Deno.hostname(), started: "x" }),
    );
    const resumed = await trainIn({ resume: dir });
    match(resumed.notes.join("\n"), /stale lock/);
    match(resumed.notes.join("\n"), /holds no checkpoint yet .* starting from step 0/);
    assertEquals(resumed.step, 18);
    // And a fresh run over the same state also starts, saying so.
    await Deno.remove(join(dir, "checkpoint"), { recursive: true });
    const fresh = await trainIn({ dir });
    match(fresh.notes.join("\n"), /stopped before its first checkpoint; .* starts afresh/);
    assertEquals(fresh.losses, resumed.losses);
  });
});

Deno.test("killed between the two renames of the checkpoint swap: --resume continues from checkpoint.partial, the newest complete one, and says so in one line", async () => {
  await withTempDir(async (tmp) => {
    const dir = join(tmp, "run");
    const full = await trainIn({ dir: join(tmp, "ref") });
    await trainIn({ dir, stopAt: 4 }); // checkpoint at step 4
    await copyFlat(join(dir, "checkpoint"), join(tmp, "step4"));
    await trainIn({ resume: dir, stopAt: 6 }); // checkpoint at step 6
    // The swap of a later save, killed after its first rename: checkpoint -> .old is done, but
    // .partial -> checkpoint is not. Here .partial holds step 6 and .old step 4.
    await Deno.rename(join(dir, "checkpoint"), join(dir, "checkpoint.partial"));
    await Deno.rename(join(tmp, "step4"), join(dir, "checkpoint.old"));
    const r = await trainIn({ resume: dir });
    const lines = r.notes.filter((l) => l.startsWith("resuming"));
    assertEquals(lines.length, 1);
    match(
      lines[0],
      /^resuming at step 6 from .*checkpoint \(recovered from checkpoint.partial: the newest complete checkpoint\)$/,
    );
    assertEquals(r.losses, full.losses, "the recovered run continues exactly");
    for (const gone of ["checkpoint.partial", "checkpoint.old"]) {
      await rejects(Deno.stat(join(dir, gone)));
    }
  });
});

Deno.test("killed after the first rename (only checkpoint.old and an incomplete .partial): resume uses .old", async () => {
  await withTempDir(async (tmp) => {
    const dir = join(tmp, "run");
    await trainIn({ dir, stopAt: 4 });
    await Deno.rename(join(dir, "checkpoint"), join(dir, "checkpoint.old"));
    await Deno.mkdir(join(dir, "checkpoint.partial"));
    await Deno.writeFile(
      join(dir, "checkpoint.partial", "model.safetensors"),
      new Uint8Array(1 << 16),
    );
    const r = await trainIn({ resume: dir, stopAt: 6 });
    match(r.notes.find((l) => l.startsWith("resuming"))!, /step 4 .*recovered from checkpoint.old/);
    await rejects(Deno.stat(join(dir, "checkpoint.partial")));
    // A fresh run refuses: the folder holds a run that can be continued.
    await rejects(trainIn({ dir }), /already holds a run \(checkpoint at step 6\)/);
  });
});

Deno.test("resume refuses a changed --peak-lr, --data contents or model config, naming the setting", async () => {
  await withTempDir(async (tmp) => {
    const dir = join(tmp, "run");
    await trainIn({ dir, stopAt: 2 });
    for (
      const [over, name] of [
        [{ peakLr: 2e-2 }, /peakLr 0.01, this command gives 0.02 \(--peak-lr/],
        [{ dataHash: "def" }, /dataHash "abc", this command gives "def" \(--data/],
        [{ warmupFraction: 0.1 }, /warmupFraction/],
        [{ maxGradNorm: null }, /maxGradNorm 1, this command gives null/],
        [{ evalFreq: 3 }, /evalFreq/],
        [
          { model: { ...TINY, dropRate: 0 } },
          /model\.dropRate 0\.1, this command gives 0 \(--model/,
        ],
      ] as const
    ) {
      await rejects(
        trainIn({ resume: dir, settings: tinySettings(over) }),
        (e: Error) => e instanceof UserError && name.test(e.message),
      );
    }
    // The refusals left the folder as it was: the same command still resumes.
    assertEquals((await trainIn({ resume: dir })).step, 18);
  });
});

Deno.test("a second process on the same run folder is refused naming the owner's PID; the lock goes with the run", async () => {
  await withTempDir(async (tmp) => {
    const dir = join(tmp, "run");
    const child = new Deno.Command("sleep", { args: ["30"] }).spawn();
    try {
      await Deno.mkdir(dir);
      await Deno.writeTextFile(
        join(dir, LOCK_FILE),
        JSON.stringify({ pid: child.pid, hostname: Deno.hostname(), started: "now" }),
      );
      await rejects(
        RunFolder.open({ dir, settings: tinySettings() }),
        new RegExp(`in use by process ${child.pid} on`),
      );
    } finally {
      child.kill();
      await child.status;
    }
    // Its owner is gone now: the lock is stale and taken over; closing removes it.
    const run = await RunFolder.open({ dir, settings: tinySettings(), log: () => {} });
    const second = RunFolder.open({ dir, settings: tinySettings() });
    await rejects(second, new RegExp(`in use by process ${Deno.pid}`));
    await run.close();
    await rejects(Deno.stat(join(dir, LOCK_FILE)));
  });
});

Deno.test("a disk too small for two checkpoints is refused before training, naming the sizes", async () => {
  await withTempDir(async (tmp) => {
    const run = await RunFolder.open({
      dir: join(tmp, "run"),
      settings: tinySettings(),
      freeBytes: () => Promise.resolve(1000),
    });
    const s = tinySetup();
    try {
      await rejects(run.checkSpace(s.model), /not enough space for checkpoints .* 0.00 GB free/);
    } finally {
      await run.close();
      s.model.dispose();
    }
  });
});

/** Makes writes into a checkpoint's .partial folder fail with the OS's real ENOSPC past `limit`. */
function fullDiskAfter(limit: number): () => void {
  const open = Deno.open;
  const full = Deno.openSync("/dev/full", { write: true });
  Deno.open = async (path, options) => {
    const file = await open(path, options);
    if (!options?.write || !String(path).includes(".partial")) return file;
    let written = 0;
    const write = file.write.bind(file);
    file.write = (p: Uint8Array) => {
      written += p.length;
      return written > limit ? full.write(p) : write(p);
    };
    return file;
  };
  return () => {
    Deno.open = open;
    full.close();
  };
}

Deno.test(
  "a disk that fills during a checkpoint: one error naming the folder, the .partial removed, the older checkpoint intact",
  {
    ignore: Deno.build.os !== "linux",
  },
  async () => {
    await withTempDir(async (tmp) => {
      const dir = join(tmp, "run");
      await trainIn({ dir, stopAt: 2 });
      const restore = fullDiskAfter(4096);
      try {
        await rejects(
          trainIn({ resume: dir, checkpointEvery: 4 }),
          (e: Error) =>
            e instanceof UserError &&
            /cannot save the checkpoint of step 4 in .*checkpoint \(the partial copy was removed; the checkpoint of step 2 is intact; .*no space left on the device/
              .test(e.message),
        );
      } finally {
        restore();
      }
      await rejects(Deno.stat(join(dir, "checkpoint.partial")));
      assertEquals((await trainIn({ resume: dir })).step, 18);
      assert(!(await Deno.stat(join(dir, LOCK_FILE)).catch(() => null)));
    });
  },
);
