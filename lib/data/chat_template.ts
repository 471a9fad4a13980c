/**
 * Chapter 7's prompt formats as chat templates for other tools: a Jinja `chat_template` for
 * Hugging Face's tokenizer_config.json (and GGUF's `tokenizer.chat_template`), and an Ollama
 * Modelfile `TEMPLATE` (Go template). A user message is the instruction (an optional input can be
 * part of it); the rendered text equals the book's `formatInput(entry) + responsePrefix()`, after
 * which the model writes its answer and `<|endoftext|>`.
 *
 * @example
 * ```ts
 * import { chatTemplate } from "./chat_template.ts";
 * chatTemplate("alpaca"); // "{%- for message in messages %}..."
 * ```
 * @module
 */
import { ALPACA_PREAMBLE, type PromptTemplate, responsePrefix } from "./instruction.ts";

/** The text before the instruction and between instruction and response, per template. */
function parts(template: PromptTemplate): { before: string; after: string } {
  const before = template === "phi3" ? "<|user|>\n" : `${ALPACA_PREAMBLE}\n\n### Instruction:\n`;
  return { before, after: responsePrefix({ template }) };
}

/** A Jinja string literal (single quotes; backslash, quote and newline escaped). */
function jinjaString(s: string): string {
  return `'${s.replace(/\\/g, "\\\\").replace(/'/g, "\\'").replace(/\n/g, "\\n")}'`;
}

/**
 * The Jinja chat template of a prompt format: each user message becomes the instruction section,
 * each assistant message the response followed by the eos token; `add_generation_prompt` opens
 * the response.
 */
export function chatTemplate(template: PromptTemplate): string {
  const { before, after } = parts(template);
  return [
    "{%- for message in messages %}",
    "{%- if message['role'] == 'user' %}",
    `{{- ${jinjaString(before)} + message['content'] }}`,
    "{%- elif message['role'] == 'assistant' %}",
    `{{- ${jinjaString(after)} + message['content'] + eos_token }}`,
    "{%- endif %}",
    "{%- endfor %}",
    "{%- if add_generation_prompt %}",
    `{{- ${jinjaString(after)} }}`,
    "{%- endif %}",
  ].join("");
}

/** Which of the book's formats a stored chat template is (undefined for another template). */
export function templateOfChatTemplate(chat: string | undefined): PromptTemplate | undefined {
  const all: PromptTemplate[] = ["alpaca", "phi3"];
  return all.find((t) => chatTemplate(t) === chat);
}

/** The Ollama Modelfile TEMPLATE (Go template) of a prompt format: `.Prompt` is the instruction. */
export function ollamaTemplate(template: PromptTemplate): string {
  const { before, after } = parts(template);
  return `${before}{{ .Prompt }}${after}{{ .Response }}`;
}
