/**
 * Ollama's Modelfile (https://github.com/ollama/ollama/blob/main/docs/modelfile.md) for a GGUF
 * export: `FROM ./model.gguf`, the prompt TEMPLATE, the stop token, and the book's greedy
 * decoding (temperature 0, so the most likely token each step; no repetition penalty, which
 * Ollama otherwise applies by default).
 * @module
 */
import { GPT2_EOS_TEXT } from "./gpt2_vocab.ts";

/** Options of {@link ollamaModelfile}. */
export interface ModelfileOptions {
  /** The GGUF file, relative to the Modelfile (default "./model.gguf"). */
  from?: string;
  /** Go template of the prompt (`{{ .Prompt }}` is the user's text); none = the raw prompt. */
  template?: string;
  /** Context length of the model (`num_ctx`). */
  contextLength: number;
  /** Most tokens per answer (`num_predict`; the book's chapter 7 uses 256). */
  maxNewTokens?: number;
  /** A comment line saying where the model came from. */
  comment?: string;
}

/** The text of a Modelfile. */
export function ollamaModelfile(
  { from = "./model.gguf", template, contextLength, maxNewTokens = 256, comment }: ModelfileOptions,
): string {
  if (template?.includes('"""')) throw new Error('ollamaModelfile: template contains """');
  const lines = [
    ...(comment ? [`# ${comment}`] : []),
    `FROM ${from}`,
    `TEMPLATE """${template ?? "{{ .Prompt }}"}"""`,
    `PARAMETER stop "${GPT2_EOS_TEXT}"`,
    "PARAMETER temperature 0",
    "PARAMETER top_k 1",
    "PARAMETER repeat_penalty 1",
    `PARAMETER num_ctx ${contextLength}`,
    `PARAMETER num_predict ${maxNewTokens}`,
  ];
  return lines.join("\n") + "\n";
}
