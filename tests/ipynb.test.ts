import assert from "node:assert/strict";
import {
  cellOfLine,
  committedOutputs,
  extractCode,
  formatNotebook,
  listNotebooks,
  type Notebook,
  rewriteRelativeImports,
  stripNotebook,
} from "../lib/tools/ipynb.ts";
import { describeFailure } from "../lib/tools/notebooks.ts";

function notebook(): Notebook {
  return {
    cells: [
      { cell_type: "markdown", metadata: {}, source: ["# Title\n", "prose"] },
      {
        cell_type: "code",
        metadata: { execution: { "iopub.status.busy": "2026" } },
        source: ['import { show } from "../lib/notebook/show.ts";\n', "const a = 1;\n"],
        outputs: [{ output_type: "stream", name: "stdout", text: ["1\n"] }],
        execution_count: 3,
      },
      {
        cell_type: "code",
        metadata: {},
        source: "await show(a);",
        outputs: [],
        execution_count: null,
      },
    ],
    metadata: { kernelspec: { name: "deno", display_name: "Deno", language: "typescript" } },
    nbformat: 4,
    nbformat_minor: 5,
  };
}

Deno.test("stripNotebook() clears outputs, execution counts and timing metadata", () => {
  const nb = notebook();
  assert.deepEqual(committedOutputs(nb), ["cell 2 has outputs and execution count 3"]);
  assert.equal(stripNotebook(nb), true);
  assert.deepEqual(nb.cells[1].outputs, []);
  assert.equal(nb.cells[1].execution_count, null);
  assert.deepEqual(nb.cells[1].metadata, {});
  assert.deepEqual(committedOutputs(nb), []);
  assert.equal(stripNotebook(nb), false, "a clean notebook is unchanged");
});

Deno.test("formatNotebook() writes Jupyter's layout: sorted keys, one-space indent, final newline", () => {
  const text = formatNotebook({ nbformat: 4, metadata: {}, cells: [], nbformat_minor: 5 });
  assert.equal(
    text,
    '{\n "cells": [],\n "metadata": {},\n "nbformat": 4,\n "nbformat_minor": 5\n}\n',
  );
});

Deno.test("extractCode() concatenates code cells in order and maps lines back to cells", () => {
  const { code, spans } = extractCode(notebook(), "notebooks/x.ipynb", "build/check/x.ts");
  const lines = code.split("\n");
  assert.deepEqual(spans, [{ cell: 2, firstLine: 4, lastLine: 5 }, {
    cell: 3,
    firstLine: 8,
    lastLine: 8,
  }]);
  assert.equal(lines[3], 'import { show } from "../../lib/notebook/show.ts";', "import rewritten");
  assert.equal(lines[7], "await show(a);");
  assert.deepEqual(cellOfLine(spans, 5), { cell: 2, line: 2 });
  assert.equal(cellOfLine(spans, 6), undefined);
});

Deno.test("rewriteRelativeImports() keeps bare and npm specifiers and fixes relative ones", () => {
  const src = [
    'import * as tf from "@tensorflow/tfjs";',
    "import { a } from './a.ts';",
    'export { b } from "../lib/b.ts";',
    'const m = await import("../lib/m.ts");',
    'import "../lib/side.ts";',
  ].join("\n");
  assert.equal(
    rewriteRelativeImports(src, "notebooks", "build/check"),
    [
      'import * as tf from "@tensorflow/tfjs";',
      "import { a } from '../../notebooks/a.ts';",
      'export { b } from "../../lib/b.ts";',
      'const m = await import("../../lib/m.ts");',
      'import "../../lib/side.ts";',
    ].join("\n"),
  );
});

Deno.test("listNotebooks() finds notebooks by name with or without .ipynb", async () => {
  const all = await listNotebooks();
  assert.ok(all.includes("notebooks/appendix-A.ipynb"));
  assert.deepEqual(await listNotebooks(["appendix-A"]), ["notebooks/appendix-A.ipynb"]);
  assert.deepEqual(await listNotebooks(["appendix-A.ipynb"]), ["notebooks/appendix-A.ipynb"]);
  await assert.rejects(listNotebooks(["no-such"]), /no notebook "no-such"/);
});

Deno.test("describeFailure() names the failing cell from nbconvert's CellExecutionError", () => {
  const stderr = [
    "Traceback (most recent call last):",
    '  File "x.py", line 1',
    "nbclient.exceptions.CellExecutionError: An error occurred while executing the following cell:",
    "------------------",
    'throw new Error("boom");',
    "------------------",
    "",
    "Error: boom",
    "    at <anonymous>:1:7",
  ].join("\n");
  const text = describeFailure(stderr, [undefined, "const a = 1;", 'throw new Error("boom");\n']);
  assert.match(text, /^cell 3 failed:/);
  assert.match(text, /Error: boom/);
});
