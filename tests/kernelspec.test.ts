import assert from "node:assert/strict";
import { resolveKernelspec } from "../lib/tools/kernelspec.ts";

Deno.test("resolveKernelspec() puts Deno's absolute path first and keeps every other argument", () => {
  const spec = {
    argv: ["deno", "jupyter", "--unstable-webgpu", "--kernel", "--conn", "{connection_file}"],
    display_name: "Deno",
    language: "typescript",
  };
  assert.deepEqual(resolveKernelspec(spec, "/opt/deno/bin/deno"), {
    ...spec,
    argv: ["/opt/deno/bin/deno", ...spec.argv.slice(1)],
  });
  // An absolute path someone wrote there already is kept.
  const fixed = { argv: ["/usr/bin/deno", "jupyter"] };
  assert.deepEqual(resolveKernelspec(fixed, "/other/deno"), fixed);
});
