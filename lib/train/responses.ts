/**
 * Chapter 7.7: the finetuned model's answers to the test set, which chapter 7.8 scores
 * (`deno task llm evaluate`).
 * @module
 */
import { join } from "node:path";
import {
  extractResponse,
  formatInput,
  type InstructionEntry,
  type PromptTemplate,
} from "../data/instruction.ts";
import { decode, encode, END_OF_TEXT } from "../data/tokenizer.ts";
import type { GPTModel } from "../model/gpt.ts";
import type { ResponseEntry } from "../judge.ts";
import { writeTextAtomic } from "../util/fs.ts";
import { generateText } from "../data/stream.ts";
import { LiveText } from "../notebook/live_text.ts";
import { Progress } from "../notebook/progress.ts";
import { FINETUNE_DEFAULTS } from "./finetune.ts";

/** An entry with the finetuned model's answer. */
export type EntryWithResponse = ResponseEntry & { model_response: string };

/** Options of `generateTestResponses`, with the book's defaults. */
export interface TestResponseOptions {
  template?: PromptTemplate;
  /** Book: 256. */
  maxNewTokens?: number;
  /** Stop at this token (book: 50256, `<|endoftext|>`). */
  eosId?: number;
  /** Write the entries here (JSON, indent 4 as the book's json.dump), atomically. */
  outPath?: string;
  /** Called after each entry. */
  onProgress?: (done: number, total: number, entry: EntryWithResponse) => void;
  /** Called with each entry's response text as it is generated (index, text delta). */
  onText?: (index: number, delta: string) => void | Promise<void>;
  /** Show each response token by token (a notebook display updated in place, else stdout). */
  stream?: boolean;
  /** Stop after the current entry: nothing is written, the entries so far come back. */
  signal?: AbortSignal;
  /** Show the shared progress display (default true). */
  progress?: boolean;
}

/** Entries with responses; `stopped` when a signal ended the work early. */
export type TestResponses = EntryWithResponse[] & { stopped: boolean };

/**
 * Chapter 7.7: for each entry, greedy generation from `formatInput(entry)` until end-of-text (at
 * most 256 tokens), then the book's extraction (drop the prompt and "### Response:", trim).
 * Returns copies of the entries with `model_response`; with `outPath` also writes them
 * (the book's `instruction-data-with-response.json`).
 */
export async function generateTestResponses(
  model: GPTModel,
  entries: readonly InstructionEntry[],
  {
    template = "alpaca",
    maxNewTokens = FINETUNE_DEFAULTS.maxNewTokens,
    eosId = END_OF_TEXT,
    outPath,
    onProgress,
    onText,
    signal,
    progress = true,
    stream = false,
  }: TestResponseOptions = {},
): Promise<TestResponses> {
  const out = Object.assign([] as EntryWithResponse[], { stopped: false });
  const live = stream ? new LiveText() : undefined;
  const bar = new Progress({
    label: "responses",
    total: entries.length,
    unit: "entries",
    face: progress ? undefined : "none",
  });
  for (const entry of entries) {
    if (signal?.aborted) break;
    const inputText = formatInput(entry, { template });
    const prompt = encode(inputText);
    const index = out.length;
    await live?.reset(`[${index + 1}/${entries.length}] ${entry.instruction}\n>>`);
    const { ids } = await generateText(model, prompt, {
      maxNewTokens,
      temperature: 0,
      eosId,
      onText: async (delta) => {
        await live?.append(delta);
        await onText?.(index, delta);
      },
    });
    const generated = decode([...prompt, ...ids]);
    const withResponse = {
      ...entry,
      model_response: extractResponse(generated, inputText, { template }),
    };
    out.push(withResponse);
    bar.update(out.length);
    onProgress?.(out.length, entries.length, withResponse);
    // Let Ctrl-C handlers and notebook output run between entries.
    await new Promise((r) => setTimeout(r, 0));
  }
  out.stopped = out.length < entries.length;
  await live?.finish();
  await bar.finish({ stopped: out.stopped });
  if (outPath && !out.stopped) await writeTextAtomic(outPath, JSON.stringify(out, null, 4) + "\n");
  return out;
}

/** File name of the responses in a run folder. */
export const TEST_RESPONSES_FILE = "test-responses.json";

/** `DIR/test-responses.json`. */
export function testResponsesPath(dir: string): string {
  return join(dir, TEST_RESPONSES_FILE);
}
