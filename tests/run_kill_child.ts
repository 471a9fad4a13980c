/**
 * A child for tests/run_kill.test.ts: trains the tiny model in a run folder (a checkpoint every 2
 * steps) and SIGKILLs itself at a chosen point of the second checkpoint's save:
 * - `before-state`: .partial has the weights but not yet trainer_state.json;
 * - `between-renames`: checkpoint -> checkpoint.old done, checkpoint.partial -> checkpoint not.
 * Usage: deno run -A tests/run_kill_child.ts DIR POINT
 */
import { initBackend } from "../lib/backend.ts";
import { trainIn } from "./run_helpers.ts";

const [dir, point] = Deno.args;
await initBackend({ log: false });
const rename = Deno.rename;
let saves = 0;
Deno.rename = async (from, to) => {
  const src = String(from), dst = String(to);
  if (dst.endsWith("checkpoint.partial/trainer_state.json") && ++saves === 2) {
    if (point === "before-state") Deno.kill(Deno.pid, "SIGKILL");
  }
  await rename(from, to);
  if (point === "between-renames" && src.endsWith("/checkpoint") && dst.endsWith(".old")) {
    Deno.kill(Deno.pid, "SIGKILL");
  }
};
await trainIn({ dir, checkpointEvery: 2, log: () => {} });
console.log("not killed");
