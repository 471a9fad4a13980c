/** The check step that refuses synchronous tensor reads (lib/tools/sync_reads.ts). */
import assert from "node:assert/strict";
import { join } from "node:path";
import { findSyncReads, syncReadLines } from "../lib/tools/sync_reads.ts";

// The method names are built, so that this file does not trip the check it tests.
const [DATA, ARRAY, BUFFER] = ["data", "array", "buffer"].map((w) => `${w}Sync`);

Deno.test("syncReadLines() finds dataSync/arraySync/bufferSync calls and skips comments", () => {
  const src = [
    `const a = t.${DATA}()[0];`,
    `// a comment may say t.${DATA}() is not allowed`,
    ` * JSDoc: \`t.${ARRAY}()\` neither`,
    `const b = await t.data(); // not t.${DATA}()`,
    `const c = grads.get(k)!.${ARRAY} ();`,
    `const d = x.${BUFFER}();`,
  ].join("\n");
  assert.deepEqual(syncReadLines(src).map((r) => r.line), [1, 5, 6]);
});

Deno.test("findSyncReads() names the file and line of a synchronous read, and finds none in the repository", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.mkdir(join(dir, "sub"));
    await Deno.writeTextFile(join(dir, "sub", "x.ts"), `const ok = 1;\nconst v = t.${DATA}();\n`);
    await Deno.writeTextFile(join(dir, "y.js"), `t.${DATA}();\n`); // not a .ts file
    const found = await findSyncReads([dir, "lib", "bench", "tests"]);
    assert.deepEqual(found.map((f) => f.where), [`${join(dir, "sub", "x.ts")}:2`]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
