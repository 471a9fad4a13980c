/**
 * A real Deno Jupyter kernel driven by nbclient (tests/jupyter_kernel.py): Stop during training
 * keeps the kernel and the model, and a progress bar is one display updated in place.
 */
import assert from "node:assert/strict";
import { join, resolve } from "node:path";
import { kernelEnv } from "../lib/tools/kernelspec.ts";

const PYTHON = "/usr/bin/python3";

async function nbclientMissing(): Promise<string | null> {
  try {
    const out = await new Deno.Command(PYTHON, {
      args: ["-c", "import nbclient, nbformat, jupyter_client"],
      stdout: "null",
      stderr: "null",
    }).output();
    if (out.success) return null;
  } catch { /* no python */ }
  return `${PYTHON} with nbclient is missing (apt-get install python3-nbclient jupyter-client)`;
}

const missing = await nbclientMissing();
if (missing) console.warn(`skipping the Jupyter kernel tests: ${missing}`);

interface Output {
  output_type: string;
  text?: string | string[];
  data?: Record<string, string | string[]>;
}
interface Cell {
  cell_type: "code";
  id: string;
  source: string;
  metadata: Record<string, unknown>;
  outputs: Output[];
  execution_count: null;
}

function code(source: string, metadata: Record<string, unknown> = {}): Cell {
  const id = crypto.randomUUID().slice(0, 8);
  return { cell_type: "code", id, source, metadata, outputs: [], execution_count: null };
}

const SETUP = `import { initBackend } from "../lib/backend.ts";
import { resolveConfig } from "../lib/model/config.ts";
import { GPTModel } from "../lib/model/gpt.ts";
import { AdamW } from "../lib/train/adamw.ts";
import { trainModel } from "../lib/train/train.ts";
import { calcLossLoader } from "../lib/train/loss.ts";
import { createDataloaderV1 } from "../lib/data/text.ts";
import { stoppable } from "../lib/notebook/stop.ts";
import { Progress } from "../lib/notebook/progress.ts";
await initBackend({ log: false });
const text = await Deno.readTextFile("../data/the-verdict.txt");
const loader = createDataloaderV1(text, { batchSize: 2, maxLength: 16, stride: 16, shuffle: true, dropLast: true, seed: 1 });
const model = new GPTModel({ ...resolveConfig("gpt-tiny", { contextLength: 16 }), nLayers: 1 }, { seed: 1 });
const optimizer = new AdamW(model.namedParameters(), { lr: 1e-3, weightDecay: 0.1 });
const options = { trainLoader: loader, valLoader: loader, optimizer, numEpochs: 1000, evalFreq: 1e9, evalIter: 1, peakLr: 1e-3, warmupSteps: 0 };`;

// Thousands of epochs: only Stop ends this cell.
const TRAIN =
  `const result = await stoppable((signal) => trainModel(model, { ...options, signal }));`;

const AFTER = `const loss = await calcLossLoader(loader, model, 1);
console.log("AFTER " + JSON.stringify({ stopped: result.stopped, step: result.state.step, steps: result.stepLosses.length, loss }));`;

// Continue from the stopped state for three more steps.
const CONTINUE = `const ctrl = new AbortController();
const more = await trainModel(model, { ...options, resumeFrom: result.state, signal: ctrl.signal,
  onStep: (s) => { if (s.step >= result.state.step + 2) ctrl.abort(); } });
console.log("MORE " + JSON.stringify({ step: more.state.step }));`;

const BAR = `const bar = new Progress({ label: "demo", total: 300, redrawEveryMs: 0 });
for (let i = 1; i <= 300; i++) {
  bar.update(i);
  await new Promise((r) => setTimeout(r, 1));
}
await bar.finish();`;

function textOf(o: Output): string {
  const t = o.text ?? o.data?.["text/plain"] ?? "";
  return Array.isArray(t) ? t.join("") : t;
}

function jsonAfter(outputs: Output[], tag: string): Record<string, number | boolean> {
  const stream = outputs.filter((o) => o.output_type === "stream");
  const line = stream.map(textOf).join("").split("\n").find((l) => l.startsWith(tag + " "));
  assert.ok(line, `no "${tag}" line in ${JSON.stringify(outputs)}`);
  return JSON.parse(line.slice(tag.length + 1));
}

Deno.test({
  name:
    "Jupyter Stop mid-training keeps the Deno kernel and the model; a progress bar is one display updated in place",
  ignore: missing !== null,
  sanitizeResources: false,
  async fn() {
    const dir = await Deno.makeTempDir();
    const src = join(dir, "in.ipynb"), dst = join(dir, "out.ipynb");
    const nb = {
      nbformat: 4,
      nbformat_minor: 5,
      metadata: { kernelspec: { name: "deno", display_name: "Deno", language: "typescript" } },
      cells: [
        code(SETUP),
        code(TRAIN, { interrupt_after: 6 }),
        code(AFTER),
        code(CONTINUE),
        code(BAR),
      ],
    };
    await Deno.writeTextFile(src, JSON.stringify(nb));
    const run = await new Deno.Command(PYTHON, {
      args: [resolve("tests/jupyter_kernel.py"), src, dst],
      env: await kernelEnv({ runtimeDir: join(dir, "runtime") }),
      stdout: "piped",
      stderr: "piped",
      signal: AbortSignal.timeout(150_000),
    }).output();
    const log = new TextDecoder().decode(run.stderr);
    assert.ok(run.success, `nbclient failed:\n${log.slice(-3000)}`);
    assert.match(log, /interrupts sent: 1\b/); // nbclient did interrupt the training cell
    const cells: Cell[] = JSON.parse(await Deno.readTextFile(dst)).cells;

    const after = jsonAfter(cells[2].outputs, "AFTER");
    assert.equal(after.stopped, true);
    assert.ok((after.step as number) >= 1, `stopped at step ${after.step}`);
    assert.equal(after.steps, after.step); // the history kept every step taken
    assert.ok(Number.isFinite(after.loss) && (after.loss as number) > 0, `loss ${after.loss}`);
    assert.equal(jsonAfter(cells[3].outputs, "MORE").step, (after.step as number) + 3);

    // 300 updates, one output: the bar in its final state, no stream of lines.
    const outputs = cells[4].outputs;
    assert.equal(outputs.length, 1, JSON.stringify(outputs).slice(0, 500));
    assert.equal(outputs[0].output_type, "display_data");
    const html = [outputs[0].data!["text/html"]].flat().join("");
    assert.match(html, /<progress value="300" max="300"/);
    assert.match(textOf(outputs[0]), /^demo: 300\/300 steps \(100%\)/);
    await Deno.remove(dir, { recursive: true });
  },
});
