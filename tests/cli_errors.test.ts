/** The CLI's error boundary (lib/cli.ts): user and environment faults are one line; bugs too, unless LLM_DEBUG=1. */
import assert from "node:assert/strict";
import { INTERNAL_ERROR_EXIT, reportError } from "../lib/cli.ts";
import { ExitCode, UserError } from "../lib/util/errors.ts";

function captured(fn: () => number): { code: number; err: string } {
  const lines: string[] = [];
  const { error } = console;
  console.error = (...a: unknown[]) => void lines.push(a.join(" "));
  try {
    return { code: fn(), err: lines.join("\n") };
  } finally {
    console.error = error;
  }
}

Deno.test("a bug is one 'internal error' line saying how to get the stack; LLM_DEBUG=1 prints the stack", () => {
  const bug = new TypeError("cannot read properties of undefined (reading 'x')");
  const quiet = captured(() => reportError(bug));
  assert.equal(quiet.code, INTERNAL_ERROR_EXIT);
  assert.equal(quiet.err.split("\n").length, 1);
  assert.match(
    quiet.err,
    /^error: internal error: TypeError: cannot read .* run again with LLM_DEBUG=1/,
  );
  const before = Deno.env.get("LLM_DEBUG");
  Deno.env.set("LLM_DEBUG", "1");
  try {
    const loud = captured(() => reportError(bug));
    assert.equal(loud.code, INTERNAL_ERROR_EXIT);
    assert.match(loud.err, /TypeError: cannot read[\s\S]*\n\s+at /);
  } finally {
    if (before === undefined) Deno.env.delete("LLM_DEBUG");
    else Deno.env.set("LLM_DEBUG", before);
  }
});

Deno.test("OS faults (full disk, read-only, permission) are one error line naming the path, exit 1", () => {
  for (
    const [code, words] of [["ENOSPC", "no space left"], ["EROFS", "read-only"], [
      "EACCES",
      "permission denied",
    ]]
  ) {
    const err = Object.assign(new Error(`os error: open '/x/model.safetensors'`), { code });
    const r = captured(() => reportError(err));
    assert.equal(r.code, 1);
    assert.match(r.err, new RegExp(`^error: file system: ${words} .*/x/model\\.safetensors`));
  }
});

Deno.test("user errors print their line, ExitCode exits quietly with its code, out-of-memory is one line", () => {
  assert.deepEqual(captured(() => reportError(new UserError("bad --flag"))), {
    code: 1,
    err: "error: bad --flag",
  });
  assert.deepEqual(captured(() => reportError(new ExitCode(143))), { code: 143, err: "" });
  const oom = captured(() => reportError(new RangeError("Array buffer allocation failed")));
  assert.equal(oom.code, 1);
  assert.match(oom.err, /^error: out of memory .* lower --batch-size/);
});
