/**
 * `InstructionDataset` (chapter 7): pre-tokenizes every entry's prompt + response once and keeps,
 * beside the ids, the token count of the prompt part (for instruction masking, exercise 7.2).
 *
 * @example
 * ```ts
 * import { InstructionDataset } from "./instruction_dataset.ts";
 * const ds = new InstructionDataset([{ instruction: "Say hi.", input: "", output: "Hi." }]);
 * ds.get(0); // { ids: [...], instructionLength: ... }
 * ```
 * @module
 */
import { gpt2Tokenizer, type Tokenizer } from "./tokenizer.ts";
import {
  formatInput,
  formatResponse,
  type InstructionEntry,
  type PromptTemplate,
} from "./instruction.ts";

/** One pre-tokenized example: the full text's ids and how many of them are the prompt. */
export interface InstructionItem {
  /** Token ids of prompt + response (no end-of-text token: the collate function appends it). */
  ids: number[];
  /** Number of tokens of the prompt part (`formatInput(entry)` encoded alone). */
  instructionLength: number;
}

/** Options of `InstructionDataset`. */
export interface InstructionDatasetOptions {
  /** Prompt style (default "alpaca"). */
  template?: PromptTemplate;
  /** Tokenizer (default GPT-2's). */
  tokenizer?: Tokenizer;
}

/** A list of instruction entries, tokenized once up front (the book's `InstructionDataset`). */
export class InstructionDataset {
  /** The entries, in the order given. */
  readonly entries: readonly InstructionEntry[];
  /** The tokenized items, index-aligned with `entries`. */
  readonly items: readonly InstructionItem[];
  /** The prompt style used. */
  readonly template: PromptTemplate;

  constructor(
    entries: readonly InstructionEntry[],
    { template = "alpaca", tokenizer = gpt2Tokenizer }: InstructionDatasetOptions = {},
  ) {
    this.entries = entries;
    this.template = template;
    this.items = entries.map((entry) => {
      const prompt = formatInput(entry, { template });
      return {
        ids: tokenizer.encode(prompt + formatResponse(entry, { template })),
        instructionLength: tokenizer.encode(prompt).length,
      };
    });
  }

  /** Number of entries (`len(dataset)`). */
  get length(): number {
    return this.items.length;
  }

  /** The item at `index` (`dataset[index]`). */
  get(index: number): InstructionItem {
    const item = this.items[index];
    if (item === undefined) {
      throw new RangeError(
        `InstructionDataset.get(${index}): index out of range [0, ${this.length})`,
      );
    }
    return item;
  }

  /** Length in tokens of the longest item (useful to pick `allowedMaxLength`). */
  maxLength(): number {
    let max = 0;
    for (const item of this.items) max = Math.max(max, item.ids.length);
    return max;
  }

  [Symbol.iterator](): Iterator<InstructionItem> {
    return this.items[Symbol.iterator]();
  }
}
