import assert from "node:assert/strict";
import { type DisplayFn, formatDuration, Progress } from "../lib/notebook/progress.ts";

/** A fake clock and a recorder of notebook frames. */
function fakes() {
  let t = 0;
  const frames: { html: string; text: string; id: string; update: boolean }[] = [];
  const display: DisplayFn = (bundle, o) => {
    frames.push({
      html: bundle["text/html"],
      text: bundle["text/plain"],
      id: o.display_id,
      update: o.update,
    });
    return Promise.resolve();
  };
  return { frames, display, now: () => t, advance: (ms: number) => (t += ms) };
}

Deno.test("Progress (notebook face) shows one display, then updates it in place, throttled", async () => {
  const f = fakes();
  const bar = new Progress({
    label: "training",
    total: 100,
    face: "notebook",
    display: f.display,
    now: f.now,
  });
  for (let step = 1; step <= 100; step++) {
    f.advance(50); // 50 ms a step: 5 s in all, so at most one frame per 250 ms
    bar.update(step, { tokens: step * 128, loss: 10 - step / 20 });
  }
  await bar.finish();
  assert.ok(f.frames.length >= 15 && f.frames.length <= 22, `${f.frames.length} frames`);
  assert.equal(f.frames[0].update, false);
  assert.ok(f.frames.slice(1).every((x) => x.update && x.id === f.frames[0].id));
  const last = f.frames.at(-1)!;
  assert.match(last.html, /<progress value="100" max="100"/);
  assert.equal(
    last.text,
    "training: 100/100 steps (100%) | 2560 tokens/s | 20.0 steps/s | loss 5.000 | done in 5s",
  );
});

Deno.test("Progress (log face) prints a line every logEveryMs and one at the end, with ETA", async () => {
  const f = fakes();
  const lines: string[] = [];
  const bar = new Progress({
    label: "responses",
    total: 10,
    unit: "entries",
    face: "log",
    logEveryMs: 10_000,
    write: (l) => lines.push(l),
    now: f.now,
  });
  for (let i = 1; i <= 10; i++) {
    f.advance(3000);
    bar.update(i);
  }
  await bar.finish();
  assert.deepEqual(lines, [
    "responses: 4/10 entries (40%) | 3.00 s/entry | ETA 18s",
    "responses: 8/10 entries (80%) | 3.00 s/entry | ETA 6s",
    "responses: 10/10 entries (100%) | 3.00 s/entry | done in 30s",
  ]);
});

Deno.test("Progress in bytes shows MB and MB/s from the resumed start, and a stopped state", async () => {
  const f = fakes();
  const lines: string[] = [];
  const bar = new Progress({
    label: "gpt2/model.safetensors",
    total: 500e6,
    unit: "bytes",
    start: 100e6,
    face: "log",
    write: (l) => lines.push(l),
    now: f.now,
  });
  f.advance(2000);
  bar.update(140e6);
  await bar.finish({ stopped: true });
  assert.deepEqual(lines, [
    "gpt2/model.safetensors: 140.0/500.0 MB (28%) | 20.0 MB/s | stopped after 2s",
  ]);
});

Deno.test("Progress with face none draws nothing; formatDuration gives 1m15s and 1h01m", async () => {
  const bar = new Progress({ label: "x", total: 2, face: "none", write: () => assert.fail() });
  bar.update(2);
  await bar.finish();
  assert.equal(bar.frames, 0);
  assert.equal(formatDuration(75), "1m15s");
  assert.equal(formatDuration(3700), "1h01m");
});
