/**
 * A training child killed (SIGKILL) at a chosen point of a checkpoint save leaves a folder that
 * `--resume` recovers from the newest complete checkpoint, continuing exactly.
 */
import { deepStrictEqual as assertEquals, match, rejects } from "node:assert/strict";
import { join } from "node:path";
import { initBackend } from "../lib/backend.ts";
import { trainIn } from "./run_helpers.ts";
import { denoChild, withTempDir } from "./cli_helpers.ts";

await initBackend({ log: false });
const CHILD = new URL("./run_kill_child.ts", import.meta.url).pathname;

async function killedAt(dir: string, point: string): Promise<void> {
  const out = await denoChild(["run", "-A", CHILD, dir, point]);
  assertEquals(out.signal, "SIGKILL", out.stderrText);
}

for (
  const [point, step, from] of [
    ["before-state", 2, /^resuming at step 2 from .*checkpoint$/],
    [
      "between-renames",
      4,
      /^resuming at step 4 from .*checkpoint \(recovered from checkpoint\.partial/,
    ],
  ] as const
) {
  Deno.test(`SIGKILL during a checkpoint save (${point}): --resume continues from step ${step} and matches a straight run`, async () => {
    await withTempDir(async (tmp) => {
      const dir = join(tmp, "run");
      await killedAt(dir, point);
      const r = await trainIn({ resume: dir });
      const lines = r.notes.filter((l) => l.startsWith("resuming"));
      assertEquals(lines.length, 1, r.notes.join("\n"));
      match(lines[0], from);
      match(r.notes.join("\n"), /stale lock of process/);
      assertEquals(r.losses, (await trainIn({ dir: join(tmp, "straight") })).losses);
      await rejects(Deno.stat(join(dir, "checkpoint.partial")));
      await rejects(Deno.stat(join(dir, "checkpoint.old")));
    });
  });
}
