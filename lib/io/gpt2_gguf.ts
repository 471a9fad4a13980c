/**
 * A GPT-2 as a GGUF file for llama.cpp's `gpt2` architecture (and so for Ollama and LM Studio).
 * Tensors are named and laid out as llama.cpp's convert_hf_to_gguf.py writes them from a Hugging
 * Face GPT-2: Conv1D weights (`c_attn`, `c_proj`, `c_fc`), stored [in, out], are transposed to
 * PyTorch's [out, in]; `output.weight` is written only for an untied head (llama.cpp then uses
 * `token_embd` as the head); the fused Q/K/V bias is zero for a model without one. 1-D tensors
 * (norms, biases) stay F32 in F16/BF16 files, as the converter keeps them.
 *
 * @example
 * ```ts
 * import { writeGpt2Gguf } from "./gpt2_gguf.ts";
 * await writeGpt2Gguf("out/model.gguf", model.config, await paramsToTensors(model), { type: "f16" });
 * ```
 * @module
 */
import type { GPTConfig } from "../model/config.ts";
import { UserError } from "../util/errors.ts";
import { type GgufTensor, type GgufValue, writeGguf } from "./gguf.ts";
import { GPT2_EOS_ID, gpt2Vocab } from "./gpt2_vocab.ts";
import type { FloatType } from "./dtypes.ts";
import { GPT2_VOCAB_SIZE } from "./tokenizer_files.ts";
import { bookToHf, transpose2d } from "./gpt2_layout.ts";
import { type TensorMap } from "./safetensors.ts";

/** `general.file_type` (llama_ftype) of each storage type: ALL_F32, MOSTLY_F16, MOSTLY_BF16. */
const FILE_TYPE: Record<FloatType, number> = { f32: 0, f16: 1, bf16: 32 };

/** Options of {@link gpt2Gguf} / {@link writeGpt2Gguf}. */
export interface Gpt2GgufOptions {
  /** Storage type of the 2-D tensors (default "f32"). */
  type?: FloatType;
  /** `general.name` (default "gpt2"). */
  name?: string;
  /** Jinja chat template (`tokenizer.chat_template`), e.g. from chatTemplate("alpaca"). */
  chatTemplate?: string;
}

// HF block tensor -> llama.cpp's name (gguf-py's tensor_mapping.py for GPT-2).
const BLOCK: [string, string][] = [
  ["ln_1.weight", "attn_norm.weight"],
  ["ln_1.bias", "attn_norm.bias"],
  ["attn.c_attn.weight", "attn_qkv.weight"],
  ["attn.c_attn.bias", "attn_qkv.bias"],
  ["attn.c_proj.weight", "attn_output.weight"],
  ["attn.c_proj.bias", "attn_output.bias"],
  ["ln_2.weight", "ffn_norm.weight"],
  ["ln_2.bias", "ffn_norm.bias"],
  ["mlp.c_fc.weight", "ffn_up.weight"],
  ["mlp.c_fc.bias", "ffn_up.bias"],
  ["mlp.c_proj.weight", "ffn_down.weight"],
  ["mlp.c_proj.bias", "ffn_down.bias"],
];

/** The GGUF tensors of a model given in the book's names (see weights.ts bookToHf). */
export function gpt2GgufTensors(
  params: TensorMap,
  config: GPTConfig,
  type: FloatType = "f32",
): { tensors: GgufTensor[]; tied: boolean } {
  const { tensors: hf, tied } = bookToHf(params, config);
  const get = (name: string) => (hf.get(name) ?? hf.get(`transformer.${name}`))!;
  const out: GgufTensor[] = [];
  const put = (name: string, t: { shape: number[]; data: Float32Array }, conv1d = false) => {
    let data = t.data, dims = [...t.shape].reverse();
    if (conv1d) {
      // [in, out] -> [out, in]; ggml's ne lists the fastest dimension first: [in, out] again.
      data = transpose2d(t.data, t.shape[0], t.shape[1]);
      dims = [t.shape[0], t.shape[1]];
    }
    out.push({ name, dims, type: t.shape.length === 1 ? "f32" : type, data });
  };
  put("token_embd.weight", get("wte.weight"));
  put("position_embd.weight", get("wpe.weight"));
  for (let i = 0; i < config.nLayers; i++) {
    for (const [hfName, name] of BLOCK) {
      const t = get(`h.${i}.${hfName}`);
      put(`blk.${i}.${name}`, t, t.shape.length === 2);
    }
  }
  put("output_norm.weight", get("ln_f.weight"));
  put("output_norm.bias", get("ln_f.bias"));
  if (!tied) put("output.weight", hf.get("lm_head.weight")!);
  return { tensors: out, tied };
}

/** The GGUF metadata of a GPT-2: architecture keys and the GPT-2 BPE tokenizer. */
export function gpt2GgufMetadata(
  config: GPTConfig,
  { type = "f32", name = "gpt2", chatTemplate }: Gpt2GgufOptions = {},
): [string, GgufValue][] {
  const u32 = (value: number): GgufValue => ({ type: "u32", value });
  const str = (value: string): GgufValue => ({ type: "string", value });
  const { tokens, merges } = gpt2Vocab();
  const kv: [string, GgufValue][] = [
    ["general.architecture", str("gpt2")],
    ["general.type", str("model")],
    ["general.name", str(name)],
    ["general.file_type", u32(FILE_TYPE[type])],
    ["general.quantization_version", u32(2)],
    ["gpt2.block_count", u32(config.nLayers)],
    ["gpt2.context_length", u32(config.contextLength)],
    ["gpt2.embedding_length", u32(config.embDim)],
    ["gpt2.feed_forward_length", u32(4 * config.embDim)],
    ["gpt2.attention.head_count", u32(config.nHeads)],
    ["gpt2.attention.layer_norm_epsilon", { type: "f32", value: 1e-5 }],
    ["tokenizer.ggml.model", str("gpt2")],
    ["tokenizer.ggml.pre", str("gpt-2")],
    ["tokenizer.ggml.tokens", { type: "array", of: "string", value: tokens }],
    // 1 = normal, 3 = control (llama_token_type): <|endoftext|> is the one control token.
    [
      "tokenizer.ggml.token_type",
      { type: "array", of: "i32", value: tokens.map((_, id) => (id === GPT2_EOS_ID ? 3 : 1)) },
    ],
    ["tokenizer.ggml.merges", { type: "array", of: "string", value: merges }],
    ["tokenizer.ggml.bos_token_id", u32(GPT2_EOS_ID)],
    ["tokenizer.ggml.eos_token_id", u32(GPT2_EOS_ID)],
    ["tokenizer.ggml.unknown_token_id", u32(GPT2_EOS_ID)],
    ["tokenizer.ggml.add_bos_token", { type: "bool", value: false }],
  ];
  if (chatTemplate) kv.push(["tokenizer.chat_template", str(chatTemplate)]);
  return kv;
}

/** Writes a GPT-2 (book-named parameters) as a GGUF file, atomically. Returns whether tied. */
export async function writeGpt2Gguf(
  path: string,
  config: GPTConfig,
  params: TensorMap,
  options: Gpt2GgufOptions = {},
): Promise<{ tied: boolean }> {
  if (config.vocabSize !== GPT2_VOCAB_SIZE) {
    throw new UserError(
      `GGUF export needs GPT-2's vocabulary of ${GPT2_VOCAB_SIZE} tokens; this model has ${config.vocabSize}`,
    );
  }
  const { tensors, tied } = gpt2GgufTensors(params, config, options.type);
  await writeGguf(path, gpt2GgufMetadata(config, options), tensors);
  return { tied };
}
