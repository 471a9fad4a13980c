/**
 * The tokenizer and generation files that make a checkpoint folder complete for other tools:
 * `vocab.json` + `merges.txt` (written as transformers' GPT2Tokenizer.save_vocabulary writes them),
 * `tokenizer.json` (the fast tokenizer, as on openai-community/gpt2), `tokenizer_config.json`
 * (with the chat template the model was finetuned with), `special_tokens_map.json` and
 * `generation_config.json` (eos 50256, greedy like the book). With them,
 * `AutoTokenizer.from_pretrained(dir)` and llama.cpp's converter load the folder.
 *
 * The vocabulary is rebuilt from gpt-tokenizer's ranks once per process (see gpt2_vocab.ts), so
 * no megabyte files live in git.
 * @module
 */
import { join } from "node:path";
import { writeTextAtomic } from "../util/fs.ts";
import { GPT2_EOS_ID, GPT2_EOS_TEXT, gpt2Vocab } from "./gpt2_vocab.ts";

/** GPT-2's vocabulary size: the models these files describe. */
export const GPT2_VOCAB_SIZE = GPT2_EOS_ID + 1;

/** The files {@link writeTokenizerFiles} writes. */
export const TOKENIZER_FILES = [
  "vocab.json",
  "merges.txt",
  "tokenizer.json",
  "tokenizer_config.json",
  "special_tokens_map.json",
  "generation_config.json",
] as const;

/** Options of {@link writeTokenizerFiles}. */
export interface TokenizerFilesOptions {
  /** The model's context length (`model_max_length`). */
  contextLength: number;
  /** A Jinja chat template (tokenizer_config.json `chat_template`); none for a base model. */
  chatTemplate?: string;
}

let texts: { vocab: string; merges: string; tokenizer: string } | undefined;

/** JSON text of the vocabulary with sorted keys (built by hand: JS objects reorder "0", "1"...). */
function vocabJson(tokens: string[], indent: string): string {
  const order = tokens.map((t, id) => [t, id] as const).sort(([a], [b]) => (a < b ? -1 : 1));
  const nl = indent ? "\n" : "";
  const lines = order.map(([t, id]) => `${indent}${JSON.stringify(t)}:${indent ? " " : ""}${id}`);
  return `{${nl}${lines.join(`,${nl}`)}${nl}}`;
}

/** The big texts, made once per process. */
function bigTexts() {
  if (texts) return texts;
  const { tokens, merges } = gpt2Vocab();
  const vocab = vocabJson(tokens, "  ") + "\n";
  const tokenizer = JSON.stringify({
    version: "1.0",
    truncation: null,
    padding: null,
    added_tokens: [{ ...specialToken(), id: GPT2_EOS_ID }],
    normalizer: null,
    pre_tokenizer: {
      type: "ByteLevel",
      add_prefix_space: false,
      trim_offsets: true,
      use_regex: true,
    },
    post_processor: {
      type: "ByteLevel",
      add_prefix_space: true,
      trim_offsets: false,
      use_regex: true,
    },
    decoder: { type: "ByteLevel", add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: {
      type: "BPE",
      dropout: null,
      unk_token: null,
      continuing_subword_prefix: "",
      end_of_word_suffix: "",
      fuse_unk: false,
      byte_fallback: false,
      vocab: "@VOCAB@",
      merges,
    },
  }).replace('"@VOCAB@"', () => vocabJson(tokens, "")); // a function: no `$&` patterns
  texts = { vocab, merges: ["#version: 0.2", ...merges].join("\n") + "\n", tokenizer };
  return texts;
}

function specialToken() {
  return {
    content: GPT2_EOS_TEXT,
    single_word: false,
    lstrip: false,
    rstrip: false,
    normalized: true,
    special: true,
  };
}

/** tokenizer_config.json as transformers writes it for GPT-2 (plus the chat template). */
export function tokenizerConfig(options: TokenizerFilesOptions): Record<string, unknown> {
  const { content: _, ...flags } = specialToken();
  return {
    add_bos_token: false,
    add_prefix_space: false,
    added_tokens_decoder: { [GPT2_EOS_ID]: { content: GPT2_EOS_TEXT, ...flags } },
    bos_token: GPT2_EOS_TEXT,
    ...(options.chatTemplate ? { chat_template: options.chatTemplate } : {}),
    clean_up_tokenization_spaces: false,
    eos_token: GPT2_EOS_TEXT,
    errors: "replace",
    model_max_length: options.contextLength,
    pad_token: null,
    tokenizer_class: "GPT2Tokenizer",
    unk_token: GPT2_EOS_TEXT,
  };
}

/** generation_config.json: eos 50256 and the book's greedy decoding. */
export function generationConfig(): Record<string, unknown> {
  return {
    bos_token_id: GPT2_EOS_ID,
    eos_token_id: GPT2_EOS_ID,
    pad_token_id: GPT2_EOS_ID,
    do_sample: false,
  };
}

/** Writes the tokenizer and generation files into `dir`, each atomically. */
export async function writeTokenizerFiles(
  dir: string,
  options: TokenizerFilesOptions,
): Promise<void> {
  const big = bigTexts();
  const json = (x: unknown) => JSON.stringify(x, null, 2) + "\n";
  const special = { bos_token: GPT2_EOS_TEXT, eos_token: GPT2_EOS_TEXT, unk_token: GPT2_EOS_TEXT };
  const files: Record<(typeof TOKENIZER_FILES)[number], string> = {
    "vocab.json": big.vocab,
    "merges.txt": big.merges,
    "tokenizer.json": big.tokenizer,
    "tokenizer_config.json": json(tokenizerConfig(options)),
    "special_tokens_map.json": json(special),
    "generation_config.json": json(generationConfig()),
  };
  for (const name of TOKENIZER_FILES) await writeTextAtomic(join(dir, name), files[name]);
}

/** The chat template stored in `dir/tokenizer_config.json`, if any. */
export async function readChatTemplate(dir: string): Promise<string | undefined> {
  try {
    const c = JSON.parse(await Deno.readTextFile(join(dir, "tokenizer_config.json")));
    return typeof c?.chat_template === "string" ? c.chat_template : undefined;
  } catch {
    return undefined;
  }
}
