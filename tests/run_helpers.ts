/** A tiny model, loaders and settings for run-folder tests (fast: a few KB per checkpoint). */
import type { GPTConfig } from "../lib/model/config.ts";
import { GPTDatasetV1, TextDataLoader } from "../lib/data/text.ts";
import { GPTModel } from "../lib/model/gpt.ts";
import { AdamW } from "../lib/train/adamw.ts";
import type { RunSettings } from "../lib/train/settings.ts";
import { trainModel, type TrainOptions } from "../lib/train/train.ts";
import { RunFolder, type RunFolderOptions } from "../lib/train/run.ts";

export const TINY: GPTConfig = {
  vocabSize: 64,
  contextLength: 8,
  embDim: 16,
  nHeads: 2,
  nLayers: 2,
  dropRate: 0.1,
  qkvBias: false,
};

const charTokenizer = {
  encode: (t: string) => [...t].map((c) => c.charCodeAt(0) % 64),
  decode: (ids: Iterable<number>) => [...ids].map((i) => String.fromCharCode(i + 32)).join(""),
};
const TEXT = "the quick brown fox jumps over the lazy dog; ".repeat(4);

/** A fresh model (TINY with `config`'s changes), optimizer and loaders (9 train batches per epoch). */
export function tinySetup(seed = 123, config: Partial<GPTConfig> = {}) {
  const loader = (text: string, shuffle: boolean) =>
    new TextDataLoader(
      GPTDatasetV1.fromText(text, { maxLength: 8, stride: 8, tokenizer: charTokenizer }),
      { batchSize: 2, shuffle, dropLast: shuffle, seed: 7 },
    );
  const model = new GPTModel({ ...TINY, ...config }, { seed });
  const optimizer = new AdamW(model.namedParameters(), { lr: 1e-3, weightDecay: 0.1 });
  return {
    model,
    optimizer,
    trainLoader: loader(TEXT.slice(0, 150), true),
    valLoader: loader(TEXT.slice(150), false),
  };
}

/** trainModel options for tinySetup: 2 epochs, quiet. */
export function tinyOptions(
  s: ReturnType<typeof tinySetup>,
  extra: Partial<TrainOptions> = {},
): TrainOptions {
  return {
    trainLoader: s.trainLoader,
    valLoader: s.valLoader,
    optimizer: s.optimizer,
    numEpochs: 2,
    evalFreq: 2,
    evalIter: 1,
    peakLr: 1e-2,
    initialLr: 1e-4,
    minLr: 1e-4,
    warmupSteps: 3,
    progressEverySeconds: 0,
    log: () => {},
    ...extra,
  };
}

/** Settings as a pretraining run records them. */
export function tinySettings(over: Partial<RunSettings> = {}): RunSettings {
  return {
    command: "pretrain",
    dataHash: "abc",
    limit: null,
    template: null,
    maskInstruction: null,
    allowedMaxLength: null,
    model: TINY,
    weights: null,
    epochs: 2,
    batchSize: 2,
    seed: 123,
    initialLr: 1e-4,
    peakLr: 1e-2,
    minLr: 1e-4,
    warmupFraction: 0.2,
    maxGradNorm: 1,
    weightDecay: 0.1,
    evalFreq: 2,
    evalIter: 1,
    loraRank: null,
    loraAlpha: null,
    loraScaling: null,
    loraTargets: null,
    loraDropout: null,
    gradAccum: 1,
    noDecayBiasNorm: false,
    earlyStopPatience: null,
    initFrom: null,
    ...over,
  };
}

/** Opens a run, trains (optionally stopping after `stopAt` steps), closes; returns the notes. */
export async function trainIn(
  o: Partial<RunFolderOptions> & { stopAt?: number; checkpointEvery?: number },
): Promise<{ notes: string[]; losses: number[]; step: number }> {
  const notes: string[] = [];
  const run = await RunFolder.open({ settings: tinySettings(), log: (l) => notes.push(l), ...o });
  const s = tinySetup();
  try {
    const resumeFrom = await run.restore(s.model, s.optimizer);
    const stop = new AbortController();
    const hooks = run.hooks(s.model, s.optimizer);
    const result = await trainModel(
      s.model,
      tinyOptions(s, {
        resumeFrom,
        checkpointEvery: o.checkpointEvery,
        ...hooks,
        signal: AbortSignal.any([hooks.signal, stop.signal]),
        onStep: (i) => {
          if (o.stopAt !== undefined && i.step + 1 >= o.stopAt) stop.abort();
        },
      }),
    );
    await run.finish(result, s.trainLoader.length);
    return { notes, losses: result.stepLosses, step: result.state.step };
  } finally {
    await run.close();
    s.model.dispose();
  }
}
