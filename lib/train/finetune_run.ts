/**
 * Chapter 7's instruction-finetuning run in a run folder (full, or LoRA as in exercise 7.4): what
 * `llm finetune` does, callable from a notebook. The folder gets metrics.jsonl, lr.svg, loss.svg,
 * checkpoint/ (HF layout), test-responses.json, and with LoRA adapter/ (and merged/ with merge).
 * `planFinetuning` is the dry run (split sizes, batches, steps).
 */
import { join } from "node:path";
import { initBackend } from "../backend.ts";
import type { GPTConfig } from "../model/config.ts";
import { assertModelFits, type GPTModel } from "../model/gpt.ts";
import { applyLora, formatLoraCounts, type LoraScaling, parseLoraTargets } from "../model/lora.ts";
import { mergeLora } from "../model/lora_merge.ts";
import { saveAdapter } from "../io/adapter.ts";
import type { PromptTemplate } from "../data/instruction.ts";
import { paramsToTensors, saveCheckpoint } from "../io/weights.ts";
import { writeTokenizerFiles } from "../io/tokenizer_files.ts";
import { savePeftAdapter } from "../io/peft_adapter.ts";
import { PRETRAINED } from "../io/download.ts";
import { chatTemplate } from "../data/chat_template.ts";
import { ExitCode, UserError } from "../util/errors.ts";
import { assertFitsTokenizer } from "../data/tokenizer.ts";
import { baseModelConfig, loadBaseModel, resolveWeights } from "../io/resolve.ts";
import { FINETUNE_DEFAULTS as D, finetuneModel, type FinetuneResult } from "./finetune.ts";
import { generateTestResponses, testResponsesPath } from "./responses.ts";
import { loadInstructionSource, prepareInstructionData } from "../data/instruction_data.ts";
import { CHECKPOINT_DIR, RunFolder } from "./run.ts";
import { dataHash, type RunSettings } from "./settings.ts";
import { stepsPerEpoch } from "./train.ts";
import { checkExtras, extrasSettings, loopExtras, type TrainingExtras } from "./run_extras.ts";
import { finishTraining, openRun, type RunPlace, startTraining } from "./run_steps.ts";

/** Options of a finetuning run; unset ones take the book's values (FINETUNE_DEFAULTS). */
export interface FinetuneRunOptions extends TrainingExtras, RunPlace {
  /** A JSON list of {instruction, input, output}, or "alpaca" (exercise 7.3, downloaded). */
  data: string;
  /** gpt2-small ... gpt2-xl (downloaded once) or a checkpoint folder. */
  weights?: string;
  template?: PromptTemplate;
  maskInstruction?: boolean;
  allowedMaxLength?: number;
  batchSize?: number;
  epochs?: number;
  lr?: number;
  weightDecay?: number;
  evalFreq?: number;
  evalIter?: number;
  warmupFraction?: number;
  initialLr?: number;
  minLr?: number;
  maxGradNorm?: number;
  seed?: number;
  /** Use only the first N entries. */
  limit?: number;
  maxNewTokens?: number;
  loraRank?: number;
  loraAlpha?: number;
  loraScaling?: LoraScaling;
  /** rsLoRA: scale by alpha / sqrt(rank) (PEFT's use_rslora). */
  useRslora?: boolean;
  /** Which layers get LoRA: all-linear (default), all-but-head, /regex/, or a list (see parseLoraTargets). */
  loraTargets?: string;
  /** Dropout on the LoRA branch (default 0, as the book). */
  loraDropout?: number;
  /** With LoRA: also save the merged model in merged/. */
  merge?: boolean;
}

function checkOptions(o: FinetuneRunOptions): void {
  const loraOnly = [
    [o.loraAlpha !== undefined, "--lora-alpha"],
    [o.merge, "--merge"],
    [o.loraTargets !== undefined, "--lora-targets"],
    [o.loraDropout !== undefined, "--lora-dropout"],
    [o.useRslora, "--use-rslora"],
  ].filter(([given]) => given).map(([, flag]) => flag);
  if (o.loraRank === undefined && loraOnly.length > 0) {
    throw new UserError(`finetune: ${loraOnly.join(", ")} need(s) --lora-rank`);
  }
  if (o.useRslora && o.loraScaling !== undefined && o.loraScaling !== "alpha/sqrt(rank)") {
    throw new UserError(
      `finetune: --use-rslora scales by alpha/sqrt(rank); it cannot go with --lora-scaling ${o.loraScaling}`,
    );
  }
  checkExtras(o, "finetune");
  const wf = o.warmupFraction ?? 0;
  if (!(wf >= 0 && wf <= 1)) {
    throw new UserError(`finetune: --warmup-fraction must be in [0, 1] (got ${wf})`);
  }
  if (!((o.weightDecay ?? D.weightDecay) >= 0)) {
    throw new UserError("finetune: --weight-decay must be >= 0");
  }
}

/** Loads, splits and batches the data with the book's (or Alpaca's advised) sizes. */
async function prepare(o: FinetuneRunOptions, note: (s: string) => void) {
  checkOptions(o);
  // The weights' name (and a folder's config) is checked before the slower data work.
  const config: GPTConfig | undefined = o.weights ? await baseModelConfig(o.weights) : undefined;
  if (config) assertFitsTokenizer(config.vocabSize, `--weights ${o.weights}`);
  const source = await loadInstructionSource(o.data);
  const entries = o.limit !== undefined ? source.entries.slice(0, o.limit) : source.entries;
  const batchSize = o.batchSize ?? source.advice?.batchSize ?? D.batchSize;
  let allowedMaxLength = o.allowedMaxLength ?? source.advice?.allowedMaxLength ??
    D.allowedMaxLength;
  if (config && allowedMaxLength > config.contextLength) {
    if (o.allowedMaxLength !== undefined) {
      note(
        `note: --allowed-max-length ${allowedMaxLength} is more than the model's context ` +
          `length ${config.contextLength}; using ${config.contextLength}`,
      );
    }
    allowedMaxLength = config.contextLength;
  }
  const template = o.template ?? "alpaca", seed = o.seed ?? D.seed;
  const maskInstruction = o.maskInstruction ?? false, epochs = o.epochs ?? D.numEpochs;
  const data = prepareInstructionData(entries, {
    template,
    allowedMaxLength,
    maskInstruction,
    batchSize,
    seed,
  });
  return {
    config,
    entries,
    data,
    batchSize,
    allowedMaxLength,
    template,
    maskInstruction,
    seed,
    epochs,
    totalSteps: stepsPerEpoch(data.trainLoader.length, o.gradAccum) * epochs,
  };
}

/** The dry run, as `finetune --dry-run` prints it. */
export async function planFinetuning(o: FinetuneRunOptions) {
  const p = await prepare(o, o.note ?? console.error);
  return {
    train: p.data.train.length,
    val: p.data.val.length,
    test: p.data.test.length,
    batchesPerEpoch: p.data.trainLoader.length,
    totalSteps: p.totalSteps,
    maxLength: p.data.maxLength,
    allowedMaxLength: p.allowedMaxLength,
    truncated: p.data.truncated,
    batchSize: p.batchSize,
    epochs: p.epochs,
    valBatches: p.data.valLoader.length,
  };
}

/** What a finetuning run returns. */
export interface FinetuneRunResult {
  history: FinetuneResult;
  out: string;
  stopped: boolean;
  /** 0, or 130/143 when SIGINT/SIGTERM stopped it. */
  exitCode: number;
  /** The finetuned model (merged when `merge`). */
  model: GPTModel;
  /** What the folder holds. */
  written: string[];
}

type Prepared = Awaited<ReturnType<typeof prepare>>;

async function finetuneSettings(
  o: FinetuneRunOptions,
  p: Prepared,
  config: GPTConfig,
): Promise<RunSettings> {
  const lr = o.lr ?? D.lr, lora = o.loraRank !== undefined;
  const warmup = (o.warmupFraction ?? 0) > 0;
  return {
    command: "finetune",
    data: o.data,
    dataHash: await dataHash(JSON.stringify(p.entries)),
    limit: o.limit ?? null,
    template: p.template,
    maskInstruction: p.maskInstruction,
    allowedMaxLength: p.allowedMaxLength,
    model: config,
    weights: o.weights ?? null,
    epochs: p.epochs,
    batchSize: p.batchSize,
    seed: p.seed,
    initialLr: warmup ? o.initialLr ?? lr / 100 : lr,
    peakLr: lr,
    minLr: o.minLr ?? lr,
    warmupFraction: o.warmupFraction ?? 0,
    maxGradNorm: o.maxGradNorm ?? null,
    weightDecay: o.weightDecay ?? D.weightDecay,
    evalFreq: o.evalFreq ?? D.evalFreq,
    evalIter: o.evalIter ?? D.evalIter,
    loraRank: o.loraRank ?? null,
    loraAlpha: lora ? o.loraAlpha ?? 16 : null,
    loraScaling: lora ? loraScaling(o) : null,
    loraTargets: lora ? o.loraTargets ?? "all-linear" : null,
    loraDropout: lora ? o.loraDropout ?? 0 : null,
    initFrom: null,
    ...extrasSettings(o),
  };
}

/** The LoRA scaling rule: --use-rslora, else --lora-scaling, else alpha/rank. */
function loraScaling(o: FinetuneRunOptions): LoraScaling {
  return o.useRslora ? "alpha/sqrt(rank)" : o.loraScaling ?? "alpha/rank";
}

/** Chapter 7.6-7.7 in a run folder: finetune (fresh or resumed), save, write test responses. */
export async function runFinetuning(o: FinetuneRunOptions): Promise<FinetuneRunResult> {
  if (!o.weights) throw new UserError("finetune: --weights NAME|DIR is required");
  const note = o.note ?? console.error;
  const p = await prepare(o, note);
  // loadBaseModel's model: the weights' config with dropout 0, as the book finetunes.
  const settings = await finetuneSettings(o, p, { ...p.config!, dropRate: 0 });
  if (p.config) await assertModelFits(p.config); // before the run folder exists
  const run = await openRun(o, settings, note);
  try {
    const weightsDir = await downloadWeights(o.weights, run, note); // once, before the backend
    await initBackend();
    let model: GPTModel = (await loadBaseModel(weightsDir)).model;
    if (o.loraRank !== undefined) {
      const counts = applyLora(model, {
        rank: o.loraRank,
        alpha: settings.loraAlpha as number,
        scaling: settings.loraScaling as LoraScaling,
        targets: parseLoraTargets(settings.loraTargets as string),
        dropout: settings.loraDropout as number,
        seed: p.seed,
      });
      note(formatLoraCounts(counts));
    }
    const lr = o.lr ?? D.lr;
    const { optimizer, resumeFrom } = await startTraining(run, model, {
      ...o,
      lr,
      weightDecay: settings.weightDecay as number,
      totalSteps: p.totalSteps,
    });
    const { data } = p;
    note(
      `finetuning ${model.numParams({ trainableOnly: true }).toLocaleString("en-US")} of ` +
        `${model.numParams().toLocaleString("en-US")} parameters on ${data.train.length} ` +
        `entries: ${data.trainLoader.length} batches x ${p.epochs} epochs = ${p.totalSteps} ` +
        "steps" +
        (data.truncated ? ` (${data.truncated} entries truncated to ${p.allowedMaxLength})` : ""),
    );
    const history = await finetuneModel(model, data, {
      lr,
      numEpochs: p.epochs,
      optimizer,
      evalFreq: settings.evalFreq as number,
      evalIter: settings.evalIter as number,
      warmupFraction: o.warmupFraction ?? 0,
      initialLr: o.initialLr,
      minLr: o.minLr,
      maxGradNorm: o.maxGradNorm ?? null,
      resumeFrom,
      checkpointEvery: o.checkpointEvery,
      log: o.log,
      ...loopExtras(o, model, run.dir, o.weights),
      ...run.hooks(model, optimizer),
    });
    await finishTraining(run, history, o, data.trainLoader.length, note);
    const result = (written: string[]): FinetuneRunResult => ({
      history,
      out: run.dir,
      stopped: history.stopped,
      exitCode: run.exitCode,
      model,
      written,
    });
    if (history.stopped) return result([]);
    note(`Training completed in ${(history.seconds / 60).toFixed(2)} minutes.`);
    const written = ["metrics.jsonl", "lr.svg", "loss.svg", `${CHECKPOINT_DIR}/ (HF GPT-2 layout)`];
    if (o.loraRank !== undefined) {
      await saveAdapter(join(run.dir, "adapter"), model, { baseModel: o.weights });
      // The prompt format travels with the adapter, for `llm export --adapter`.
      await writeTokenizerFiles(join(run.dir, "adapter"), {
        contextLength: model.config.contextLength,
        chatTemplate: chatTemplate(p.template),
      });
      // The same adapter in PEFT's format, for Python's PeftModel.from_pretrained.
      await savePeftAdapter(join(run.dir, "adapter-peft"), model, {
        baseModel: PRETRAINED[o.weights] ?? o.weights,
      });
      written.push("adapter/", "adapter-peft/");
      if (o.merge) {
        const merged = mergeLora(model);
        await saveCheckpoint(
          join(run.dir, "merged"),
          merged.config,
          await paramsToTensors(merged),
          {
            chatTemplate: chatTemplate(p.template),
          },
        );
        written.push("merged/ (HF GPT-2 layout)");
        model = merged; // same outputs, no LoRA cost while generating
      }
    }
    await writeResponses(model, p, o, run.dir);
    written.push("test-responses.json");
    note(`done: ${run.dir}/ holds ${written.join(", ")}`);
    note(
      `score the responses with: deno task llm evaluate --responses ${testResponsesPath(run.dir)}`,
    );
    return result(written);
  } finally {
    await run.close();
  }
}

/** The base weights' folder, downloading them once; a stop signal ends a download cleanly. */
async function downloadWeights(
  weights: string,
  run: RunFolder,
  note: (s: string) => void,
): Promise<string> {
  try {
    return await resolveWeights(weights, { signal: run.signal });
  } catch (err) {
    if (!run.signal.aborted) throw err;
    note("stopped during the download of the base weights; run again to resume it");
    // From the CLI: exit 130/143 as for a stopped run; a notebook's own stop is rethrown.
    throw run.exitCode ? new ExitCode(run.exitCode) : err;
  }
}

/** Chapter 7.7's test responses (the shared progress display shows how far they are). */
async function writeResponses(
  model: GPTModel,
  p: Prepared,
  o: FinetuneRunOptions,
  dir: string,
): Promise<void> {
  await generateTestResponses(model, p.data.test, {
    template: p.template,
    maxNewTokens: o.maxNewTokens ?? D.maxNewTokens,
    outPath: testResponsesPath(dir),
  });
}
