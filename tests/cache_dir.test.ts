import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { defaultCacheDir } from "../lib/io/download.ts";

Deno.test("downloads are cached in the repository's data/cache/ (the git-ignored folder), not under lib/", () => {
  const saved = Deno.env.get("LLM_CACHE_DIR");
  Deno.env.delete("LLM_CACHE_DIR");
  try {
    assert.equal(defaultCacheDir(), fileURLToPath(new URL("../data/cache", import.meta.url)));
  } finally {
    if (saved !== undefined) Deno.env.set("LLM_CACHE_DIR", saved);
  }
});
