import assert from "node:assert/strict";
import { checkRange, defineFlags, parseArgv } from "../lib/cli/args.ts";
import { UserError } from "../lib/util/errors.ts";
import { cli } from "./cli_helpers.ts";

const FLAGS = defineFlags({
  temperature: { type: "number", default: 0, min: 0, help: "T" },
  steps: { type: "int", positive: true, help: "N" },
  shift: { type: "number", default: 0, help: "any number" },
  mode: { type: "string", choices: ["a", "b"], default: "a", help: "M" },
  name: { type: "string", help: "S" },
  json: { type: "boolean", help: "J" },
});

Deno.test("parseArgv() gives defaults, undefined for optional flags and false for absent switches", () => {
  const { flags, positionals, help } = parseArgv(FLAGS, []);
  assert.deepEqual(flags, {
    temperature: 0,
    steps: undefined,
    shift: 0,
    mode: "a",
    name: undefined,
    json: false,
  });
  assert.deepEqual([positionals, help], [[], false]);
});

Deno.test("parseArgv() reads --flag value and --flag=value alike, negative numbers included", () => {
  const a = parseArgv(FLAGS, ["--shift", "-1.5", "--steps", "3", "--mode", "b", "--json"]).flags;
  const b = parseArgv(FLAGS, ["--shift=-1.5", "--steps=3", "--mode=b", "--json"]).flags;
  assert.deepEqual(a, b);
  assert.deepEqual([a.shift, a.steps, a.mode, a.json], [-1.5, 3, "b", true]);
  assert.equal(parseArgv(FLAGS, ["--name", "-x"]).flags.name, "-x");
});

Deno.test("parseArgv(): --temperature -1 with a space reaches the range check (not 'ambiguous')", () => {
  assert.throws(
    () => parseArgv(FLAGS, ["--temperature", "-1"], { prefix: "generate" }),
    (e: unknown) =>
      e instanceof UserError && e.message === "generate: --temperature must be >= 0 (got -1)",
  );
});

Deno.test("parseArgv() refuses unknown flags, missing values, bad numbers, choices and positionals", () => {
  const cases: [string[], RegExp][] = [
    [["--bogus"], /^Unknown option '--bogus' \(see --help\)$/],
    [["--steps"], /^Option '--steps <value>' needs a value/],
    [["--steps", "--json"], /^Option '--steps <value>' needs a value/],
    [["--steps", "2.5"], /^--steps must be an integer \(got "2.5"\)$/],
    [["--steps", "0"], /^--steps must be > 0 \(got 0\)$/],
    [["--shift", "two"], /^--shift must be a number \(got "two"\)$/],
    [["--mode", "c"], /^--mode must be one of a, b \(got "c"\)$/],
    [["--json=yes"], /^Option '--json' does not take a value/],
    [["extra"], /^Unexpected argument 'extra'/],
  ];
  for (const [argv, re] of cases) {
    assert.throws(() => parseArgv(FLAGS, argv), (e: unknown) => {
      return e instanceof UserError && re.test(e.message);
    }, argv.join(" "));
  }
  assert.deepEqual(parseArgv(FLAGS, ["a.ipynb"], { positionals: true }).positionals, ["a.ipynb"]);
});

Deno.test("parseArgv(): a repeatable flag gives every value in order, one value as a list of one, none as []", () => {
  const specs = defineFlags({ stop: { type: "string", repeatable: true, help: "S" } });
  assert.deepEqual(parseArgv(specs, ["--stop", "###", "--stop=\\n\\n"]).flags.stop, [
    "###",
    "\\n\\n",
  ]);
  assert.deepEqual(parseArgv(specs, ["--stop", "x"]).flags.stop, ["x"]);
  assert.deepEqual(parseArgv(specs, []).flags.stop, []);
});

Deno.test("parseArgv() reports --help (or -h) without checking the flags after it", () => {
  assert.equal(parseArgv(FLAGS, ["--help", "--bogus"]).help, true);
  assert.equal(parseArgv(FLAGS, ["-h"]).help, true);
  assert.equal(parseArgv(FLAGS, ["--json"]).help, false);
});

Deno.test("checkRange() states the broken range: > 0, in [min, max], >= min, <= max", () => {
  const spec = { type: "number", help: "" } as const;
  assert.equal(checkRange(0, { ...spec, positive: true }), "> 0");
  assert.equal(checkRange(1.5, { ...spec, min: 0, max: 1 }), "in [0, 1]");
  assert.equal(checkRange(-1, { ...spec, min: 0 }), ">= 0");
  assert.equal(checkRange(2, { ...spec, max: 1 }), "<= 1");
  assert.equal(checkRange(0.5, { ...spec, min: 0, max: 1 }), null);
});

Deno.test("llm generate --temperature -1 exits 1 with one error line from the range check", async () => {
  const r = await cli(
    "generate",
    "--weights",
    "gpt2-small",
    "--prompt",
    "Hi",
    "--temperature",
    "-1",
  );
  assert.equal(r.code, 1);
  assert.equal(r.err, "error: generate: --temperature must be >= 0 (got -1)");
});
