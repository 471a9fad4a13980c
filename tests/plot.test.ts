import assert from "node:assert/strict";
import * as Plot from "@observablehq/plot";
import {
  displayPlot,
  linePlot,
  LivePlot,
  lossPlot,
  lrPlot,
  niceTicks,
  renderSvg,
  saveSvg,
  tokenTicks,
  withXmlns,
} from "../lib/notebook/plot.ts";

const history = {
  epochsSeen: [0.5, 1, 1.5, 2],
  tokensSeen: [5_000, 10_000, 15_000, 20_000],
  trainLosses: [9.5, 7.2, 6.1, 5.0],
  valLosses: [9.6, 7.9, 7.0, 6.8],
};

Deno.test("renderSvg() returns a standalone <svg> with the SVG namespace and a drawn title", () => {
  const svg = renderSvg({ marks: [Plot.lineY([1, 4, 9])], title: "Squares & cubes" });
  assert.match(svg, /^<svg xmlns="http:\/\/www\.w3\.org\/2000\/svg"/);
  assert.match(svg, /viewBox="0 -26 640 426"/);
  assert.ok(svg.includes(">Squares &amp; cubes</text>"), "title is escaped text inside the svg");
  assert.ok(!svg.includes("<figure"), "no HTML wrapper");
});

Deno.test("withXmlns() adds the namespace once and leaves other markup alone", () => {
  assert.equal(
    withXmlns('<svg width="1"></svg>'),
    '<svg xmlns="http://www.w3.org/2000/svg" width="1"></svg>',
  );
  const has = '<svg xmlns="http://www.w3.org/2000/svg"></svg>';
  assert.equal(withXmlns(has), has);
  assert.equal(withXmlns("<div></div>"), "<div></div>");
});

Deno.test("linePlot() draws one path per series and a legend entry for each", () => {
  const svg = linePlot([
    { name: "alpha", x: [0, 1, 2], y: [1, 2, 3] },
    { name: "beta", x: [0, 1, 2], y: [3, 2, 1], dash: "4,2" },
  ], { xLabel: "Step", yLabel: "Value" });
  assert.equal(svg.match(/aria-label="line"/g)?.length, 2);
  assert.ok(svg.includes("alpha</text>") && svg.includes("beta</text>"));
  assert.ok(svg.includes('stroke-dasharray="4,2"'));
  assert.ok(svg.includes(">Step</text>") && svg.includes(">Value</text>"));
});

Deno.test("linePlot() rejects a series whose x and y lengths differ", () => {
  assert.throws(() => linePlot([{ name: "bad", x: [1, 2], y: [1] }]), /2 x values but 1 y values/);
});

Deno.test("lrPlot() plots learning rate against step with the title", () => {
  const svg = lrPlot([1e-4, 5e-3, 1e-2, 5e-3], { title: "Warmup" });
  assert.ok(svg.includes(">Learning rate</text>") && svg.includes(">Step</text>"));
  assert.ok(svg.includes(">Warmup</text>"));
  assert.equal(svg.match(/aria-label="line"/g)?.length, 1);
});

Deno.test("lossPlot() shows train and validation loss against epochs with tokens seen on top", () => {
  const svg = lossPlot(history);
  assert.ok(svg.includes("Training loss</text>") && svg.includes("Validation loss</text>"));
  assert.ok(svg.includes(">Epochs</text>") && svg.includes(">Tokens seen</text>"));
  assert.ok(svg.includes(">Loss</text>"));
  assert.ok(svg.includes(">10K</text>") && svg.includes(">20K</text>"), "token tick labels");
  assert.equal(svg.match(/aria-label="line"/g)?.length, 2);
});

Deno.test("lossPlot() rejects histories of different lengths", () => {
  assert.throws(() => lossPlot({ ...history, tokensSeen: [1] }), /tokensSeen has 1 values/);
});

Deno.test("tokenTicks() places round token counts at the epoch where they were reached", () => {
  const ticks = tokenTicks([0, 1, 2], [0, 1000, 3000], 3);
  assert.deepEqual(ticks, [
    { tokens: 0, epoch: 0 },
    { tokens: 1000, epoch: 1 },
    { tokens: 2000, epoch: 1.5 },
    { tokens: 3000, epoch: 2 },
  ]);
  assert.deepEqual(tokenTicks([1, 2], [500, 500]), [], "no second axis when tokens do not grow");
});

Deno.test("niceTicks() picks 1-2-5 steps inside the range", () => {
  assert.deepEqual(niceTicks(0, 1, 5), [0, 0.2, 0.4, 0.6, 0.8, 1]);
  assert.deepEqual(niceTicks(1234, 9876, 4), [2000, 4000, 6000, 8000]);
});

Deno.test("saveSvg() writes the SVG with its namespace", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await saveSvg(`${dir}/chart.svg`, '<svg width="1"></svg>');
    assert.equal(
      await Deno.readTextFile(`${dir}/chart.svg`),
      '<svg xmlns="http://www.w3.org/2000/svg" width="1"></svg>\n',
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("displayPlot() outside Jupyter does not throw", async () => {
  assert.equal(await displayPlot("<svg></svg>"), undefined);
});

/** A LivePlot on a fake clock that records what it would show. */
function fakeLive(intervalMs = 500) {
  let now = 0;
  const shown: { svg: string; displayId?: string; update?: boolean }[] = [];
  let renders = 0;
  const live = new LivePlot((n: number) => {
    renders++;
    return `<svg>${n}</svg>`;
  }, {
    intervalMs,
    displayId: "chart",
    now: () => now,
    show: (svg, opts) => {
      shown.push({ svg, ...opts });
      return Promise.resolve();
    },
  });
  return { live, shown, tick: (ms: number) => (now += ms), renders: () => renders };
}

Deno.test("LivePlot draws the first update, then at most one frame per interval", async () => {
  const { live, shown, tick, renders } = fakeLive(500);
  assert.equal(await live.update(1), true);
  tick(100);
  assert.equal(await live.update(2), false);
  tick(300);
  assert.equal(await live.update(3), false);
  assert.equal(renders(), 1, "throttled updates do not even render");
  tick(100);
  assert.equal(await live.update(4), true);
  assert.deepEqual(shown.map((s) => s.svg), ["<svg>1</svg>", "<svg>4</svg>"]);
});

Deno.test("LivePlot shows once, then updates the same display id in place", async () => {
  const { live, shown, tick } = fakeLive(500);
  await live.update(1);
  tick(600);
  await live.update(2);
  assert.deepEqual(shown.map((s) => [s.displayId, s.update]), [["chart", false], ["chart", true]]);
  assert.equal(live.frames, 2);
});

Deno.test("LivePlot.finish() draws the last throttled data once, and nothing when up to date", async () => {
  const { live, shown, tick } = fakeLive(500);
  await live.update(1);
  tick(10);
  await live.update(2);
  assert.equal(await live.finish(), true);
  assert.equal(shown.at(-1)?.svg, "<svg>2</svg>");
  assert.equal(await live.finish(), false, "already drawn");
  assert.equal(shown.length, 2);
});

Deno.test("LivePlot outside Jupyter without a sink does nothing and does not throw", async () => {
  const live = new LivePlot((n: number) => `<svg>${n}</svg>`);
  assert.equal(await live.update(1), false);
  assert.equal(await live.finish(), false);
  assert.equal(live.frames, 0);
});
