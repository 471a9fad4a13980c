/** `llm export`: a checkpoint (+ LoRA adapter) as GGUF + Ollama Modelfile, or as a HF folder. */
import { initBackend } from "../backend.ts";
import { PROMPT_TEMPLATES } from "../data/instruction.ts";
import { EXPORT_FORMATS, exportModel, GGUF_FILE, MODELFILE } from "../export.ts";
import { FLOAT_TYPES } from "../io/dtypes.ts";
import { defineCommand } from "./args.ts";

export const exportCmd = defineCommand({
  name: "export",
  summary: "export a checkpoint (+ adapter) as GGUF with an Ollama Modelfile, or as a HF folder",
  usage:
    "export --weights DIR|NAME [--adapter DIR] --format gguf|hf|peft [--dtype f32|f16|bf16] --out DIR [--force]",
  flags: {
    weights: {
      type: "string",
      required: true,
      help: "checkpoint folder (HF GPT-2 layout) or gpt2-small|-medium|-large|-xl",
    },
    adapter: { type: "string", help: "LoRA adapter folder to merge in first" },
    format: {
      type: "string",
      required: true,
      choices: EXPORT_FORMATS,
      help: "gguf (llama.cpp, Ollama, LM Studio), hf (transformers) or peft (the adapter alone)",
    },
    dtype: {
      type: "string",
      default: "f32",
      choices: FLOAT_TYPES,
      help: "storage type of the weights (f16/bf16 halve the size)",
    },
    template: {
      type: "string",
      choices: PROMPT_TEMPLATES,
      help: "prompt format (default: the one the adapter/checkpoint was finetuned with)",
    },
    out: { type: "string", required: true, help: "output folder" },
    force: { type: "boolean", default: false, help: "replace an existing output folder" },
  },
  async run(f) {
    if (f.adapter) await initBackend({ log: false });
    const r = await exportModel({
      weights: f.weights,
      adapter: f.adapter,
      format: f.format,
      type: f.dtype,
      out: f.out,
      force: f.force,
      template: f.template,
    });
    const mb = (r.bytes / 2 ** 20).toFixed(1);
    console.error(
      `wrote ${r.out}/ (${r.files.join(", ")}; ${mb} MiB; ` +
        (f.format === "peft" ? "" : `${r.tied ? "tied" : "untied"} head; `) +
        `prompt format ${r.template ?? "none (base model)"})`,
    );
    if (f.format === "gguf") {
      console.error(`  ollama create my-gpt2 -f ${r.out}/${MODELFILE} && ollama run my-gpt2`);
      console.error(`  llama-cli -m ${r.out}/${GGUF_FILE} --temp 0 -p "..."`);
    }
  },
});
