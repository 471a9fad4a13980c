/**
 * Take the model elsewhere: a checkpoint (optionally with a LoRA adapter merged in) exported as a
 * GGUF file with an Ollama Modelfile (llama.cpp, Ollama, LM Studio), or as a Hugging Face folder
 * (transformers), in F32, F16 or BF16. The prompt format the model was finetuned with (read from
 * the adapter's or checkpoint's tokenizer_config.json, or given) becomes the chat template.
 *
 * The output folder is built beside its destination (`OUT.partial`) and renamed into place, so an
 * interrupted export leaves no half-written folder; an existing one is replaced only with `force`.
 *
 * @example
 * ```ts
 * import { exportModel } from "./export.ts";
 * await exportModel({ weights: "runs/ft/merged", format: "gguf", type: "f16", out: "out/gguf" });
 * // out/gguf/model.gguf + out/gguf/Modelfile: `ollama create my-gpt2 -f out/gguf/Modelfile`
 * ```
 * @module
 */
import { basename, join } from "node:path";
import { chatTemplate, ollamaTemplate, templateOfChatTemplate } from "./data/chat_template.ts";
import type { PromptTemplate } from "./data/instruction.ts";
import { writeGpt2Gguf } from "./io/gpt2_gguf.ts";
import type { FloatType } from "./io/dtypes.ts";
import { ollamaModelfile } from "./io/modelfile.ts";
import { isPeftAdapter, loadPeftAdapter, savePeftAdapter } from "./io/peft_adapter.ts";
import { PRETRAINED } from "./io/download.ts";
import { GPT2_VOCAB_SIZE, readChatTemplate, writeTokenizerFiles } from "./io/tokenizer_files.ts";
import { CONFIG_FILE } from "./io/hf_config.ts";
import { loadCheckpoint, loadWeightsInto, paramsToTensors, saveCheckpoint } from "./io/weights.ts";
import { type TensorMap } from "./io/safetensors.ts";
import type { GPTConfig } from "./model/config.ts";
import { loadAdapter } from "./io/adapter.ts";
import { mergeLora } from "./model/lora_merge.ts";
import { GPTModel } from "./model/gpt.ts";
import { resolveWeights } from "./io/resolve.ts";
import { UserError } from "./util/errors.ts";
import { exists, writeTextAtomic } from "./util/fs.ts";

/** The export formats: GGUF (+ Modelfile), a Hugging Face checkpoint folder, a PEFT adapter. */
export type ExportFormat = "gguf" | "hf" | "peft";
/** Every {@link ExportFormat}. */
export const EXPORT_FORMATS: readonly ExportFormat[] = ["gguf", "hf", "peft"];

/** The files of a GGUF export folder. */
export const GGUF_FILE = "model.gguf";
export const MODELFILE = "Modelfile";

/** Options of {@link exportModel}. */
export interface ExportOptions {
  /** Checkpoint folder or pretrained name (gpt2-small, ...; downloaded once). */
  weights: string;
  /** A LoRA adapter folder to merge into the weights first. */
  adapter?: string;
  format: ExportFormat;
  /** Storage type (default "f32"; "f16"/"bf16" halve the size). */
  type?: FloatType;
  /** Output folder. */
  out: string;
  /** Replace an existing output folder (default false). */
  force?: boolean;
  /** Prompt format; default: the one recorded in the adapter's or weights' folder, if any. */
  template?: PromptTemplate;
  /** Download cache of pretrained names. */
  cacheDir?: string;
}

/** What {@link exportModel} wrote. */
export interface ExportResult {
  out: string;
  files: string[];
  template?: PromptTemplate;
  /** True when the output head is the token embedding (no separate output tensor). */
  tied: boolean;
  bytes: number;
}

/** The weights to export, with a LoRA adapter merged in when one is given. */
async function exportedWeights(
  dir: string,
  adapter?: string,
): Promise<{ config: GPTConfig; params: TensorMap }> {
  const { config, tensors } = await loadCheckpoint(dir);
  if (!adapter) return { config, params: tensors };
  const model = new GPTModel({ ...config, dropRate: 0 });
  loadWeightsInto(model, tensors);
  try {
    // Our adapter format, or PEFT's (written by Python's PEFT or `export --format peft`).
    if (await isPeftAdapter(adapter)) await loadPeftAdapter(adapter, model);
    else await loadAdapter(adapter, model);
    const merged = mergeLora(model);
    try {
      return { config, params: await paramsToTensors(merged) };
    } finally {
      merged.dispose();
    }
  } finally {
    model.dispose();
  }
}

/** The prompt format: given, or recorded as a chat template beside the adapter or weights. */
async function findTemplate(dirs: string[]): Promise<PromptTemplate | undefined> {
  for (const d of dirs) {
    const t = templateOfChatTemplate(await readChatTemplate(d));
    if (t) return t;
  }
  return undefined;
}

/** Exports a model (see the module doc); returns what was written. */
export async function exportModel(opts: ExportOptions): Promise<ExportResult> {
  const { format, type = "f32", out, force = false } = opts;
  if (!EXPORT_FORMATS.includes(format)) {
    throw new UserError(`export: unknown format "${format}" (use ${EXPORT_FORMATS.join(" or ")})`);
  }
  if (!force && await exists(out)) {
    throw new UserError(`export: ${out} already exists (pass --force to replace it)`);
  }
  const dir = await resolveWeights(opts.weights, { cacheDir: opts.cacheDir });
  if (opts.adapter && !(await exists(opts.adapter))) {
    throw new UserError(`export: adapter folder ${opts.adapter} does not exist`);
  }
  if (format === "peft") return await exportPeft(opts, dir);
  const { config, params } = await exportedWeights(dir, opts.adapter);
  const template = opts.template ??
    await findTemplate(opts.adapter ? [opts.adapter, dir] : [dir]);
  const chat = template ? chatTemplate(template) : undefined;
  const partial = `${out}.partial`;
  await Deno.remove(partial, { recursive: true }).catch(() => {});
  await Deno.mkdir(partial, { recursive: true });
  let tied: boolean;
  const source = opts.weights + (opts.adapter ? ` + adapter ${opts.adapter}` : "");
  if (format === "gguf") {
    const name = basename(opts.adapter ?? dir);
    ({ tied } = await writeGpt2Gguf(join(partial, GGUF_FILE), config, params, {
      type,
      name,
      chatTemplate: chat,
    }));
    const modelfile = ollamaModelfile({
      from: `./${GGUF_FILE}`,
      template: template ? ollamaTemplate(template) : undefined,
      contextLength: config.contextLength,
      comment: `made by \`deno task llm export\` from ${source}`,
    });
    await writeTextAtomic(join(partial, MODELFILE), modelfile);
  } else {
    await saveCheckpoint(partial, config, params, { type, chatTemplate: chat });
    tied = JSON.parse(await Deno.readTextFile(join(partial, CONFIG_FILE))).tie_word_embeddings;
  }
  await swapIn(partial, out);
  const files: string[] = [];
  let bytes = 0;
  for await (const e of Deno.readDir(out)) {
    files.push(e.name);
    bytes += (await Deno.stat(join(out, e.name))).size;
  }
  return { out, files: files.sort(), template, tied, bytes };
}

/** `--format peft`: the adapter (ours or PEFT's) rewritten in PEFT's format, with tokenizer files. */
async function exportPeft(opts: ExportOptions, dir: string): Promise<ExportResult> {
  if (!opts.adapter) throw new UserError("export --format peft needs --adapter DIR");
  const { config, tensors } = await loadCheckpoint(dir);
  const model = new GPTModel({ ...config, dropRate: 0 });
  loadWeightsInto(model, tensors);
  const partial = `${opts.out}.partial`;
  await Deno.remove(partial, { recursive: true }).catch(() => {});
  try {
    if (await isPeftAdapter(opts.adapter)) await loadPeftAdapter(opts.adapter, model);
    else await loadAdapter(opts.adapter, model);
    const base = PRETRAINED[opts.weights] ?? opts.weights;
    await savePeftAdapter(partial, model, { baseModel: base });
  } finally {
    model.dispose();
  }
  const template = opts.template ?? await findTemplate([opts.adapter, dir]);
  if (config.vocabSize === GPT2_VOCAB_SIZE) {
    await writeTokenizerFiles(partial, {
      contextLength: config.contextLength,
      chatTemplate: template ? chatTemplate(template) : undefined,
    });
  }
  await swapIn(partial, opts.out);
  const files = [...Deno.readDirSync(opts.out)].map((e) => e.name).sort();
  let bytes = 0;
  for (const f of files) bytes += (await Deno.stat(join(opts.out, f))).size;
  return { out: opts.out, files, template, tied: true, bytes };
}

/** Replaces `out` with the finished `partial` folder (old -> .old, partial -> out, drop .old). */
async function swapIn(partial: string, out: string): Promise<void> {
  const old = `${out}.old`;
  await Deno.remove(old, { recursive: true }).catch(() => {});
  if (await exists(out)) await Deno.rename(out, old);
  await Deno.rename(partial, out);
  await Deno.remove(old, { recursive: true }).catch(() => {});
}
