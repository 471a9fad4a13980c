/**
 * GPTModel exactly as the book's chapter 4: token + position embeddings, dropout, pre-LayerNorm
 * transformer blocks with causal multi-head attention and a GELU feed-forward, a final norm, and
 * an untied output head without bias.
 */
import * as tf from "@tensorflow/tfjs";
import { causalSoftmax } from "../kernels/fused/causal_softmax.ts";
import {
  blockLinearShapes,
  type GPTConfig,
  headShape,
  type LinearShape,
  parameterShapes,
  validateConfig,
} from "./config.ts";
import { assertFitsDevice, initBackend } from "../backend.ts";
import {
  dropout,
  Embedding,
  GELU,
  LayerNorm,
  Linear,
  type LinearLike,
  Module,
  ModuleList,
  SeedStream,
  Sequential,
} from "./nn.ts";

/** Keys and values of the positions seen so far, per layer: [B, H, T, D] each. */
export interface LayerCache {
  keys?: tf.Tensor4D;
  values?: tf.Tensor4D;
}

/** A Linear layer of the shape the table in config.ts gives, with the next seed. */
function linear(shape: LinearShape, seeds: SeedStream): Linear {
  return new Linear(shape.inDim, shape.outDim, { bias: shape.bias, seed: seeds.next() });
}

/** Causal multi-head self-attention (book's MultiHeadAttention). */
export class MultiHeadAttention extends Module {
  readonly headDim: number;
  readonly W_query: LinearLike;
  readonly W_key: LinearLike;
  readonly W_value: LinearLike;
  readonly out_proj: LinearLike;

  constructor(readonly cfg: GPTConfig, seeds: SeedStream, readonly dropSeeds: SeedStream) {
    super();
    const s = blockLinearShapes(cfg);
    this.headDim = cfg.embDim / cfg.nHeads;
    this.W_query = this.addChild("W_query", linear(s["att.W_query"], seeds));
    this.W_key = this.addChild("W_key", linear(s["att.W_key"], seeds));
    this.W_value = this.addChild("W_value", linear(s["att.W_value"], seeds));
    this.out_proj = this.addChild("out_proj", linear(s["att.out_proj"], seeds));
  }

  /** x: [B, T, E] -> [B, T, E]. With a cache, x holds only the new positions. */
  apply(x: tf.Tensor3D, cache?: LayerCache): tf.Tensor3D {
    const [b, t] = x.shape;
    const { nHeads } = this.cfg, d = this.headDim;
    // [B, T, E] -> [B, H, T, D]
    const heads = (proj: LinearLike) =>
      proj.apply(x).reshape([b, t, nHeads, d]).transpose([0, 2, 1, 3]) as tf.Tensor4D;
    let keys = heads(this.W_key), values = heads(this.W_value);
    const queries = heads(this.W_query);
    if (cache) {
      if (cache.keys && cache.values) {
        keys = tf.concat([cache.keys, keys], 2);
        values = tf.concat([cache.values, values], 2);
      }
      // The cache owns its tensors across tidy scopes; the previous ones are folded in and freed.
      cache.keys?.dispose();
      cache.values?.dispose();
      cache.keys = tf.keep(keys);
      cache.values = tf.keep(values);
    }
    let weights = causalSoftmax(tf.matMul(queries, keys, false, true), 1 / Math.sqrt(d));
    weights = dropout(weights, this.cfg.dropRate, this.training, this.dropSeeds) as tf.Tensor4D;
    const context = tf.matMul(weights, values).transpose([0, 2, 1, 3]).reshape([
      b,
      t,
      this.cfg.embDim,
    ]);
    return this.out_proj.apply(context) as tf.Tensor3D;
  }
}

/** The book's `nn.Sequential(Linear(E, 4E), GELU(), Linear(4E, E))`: names `layers.0`, `layers.2`. */
export class FeedForward extends Module {
  readonly layers: Sequential;
  constructor(cfg: GPTConfig, seeds: SeedStream) {
    super();
    const s = blockLinearShapes(cfg);
    const expand = linear(s["ff.layers.0"], seeds), project = linear(s["ff.layers.2"], seeds);
    this.layers = this.addChild("layers", new Sequential(expand, new GELU(), project));
  }
  apply(x: tf.Tensor): tf.Tensor {
    return this.layers.apply(x);
  }
}

/** Pre-LayerNorm transformer block with residual connections and shortcut dropout. */
export class TransformerBlock extends Module {
  readonly att: MultiHeadAttention;
  readonly ff: FeedForward;
  readonly norm1: LayerNorm;
  readonly norm2: LayerNorm;

  constructor(readonly cfg: GPTConfig, seeds: SeedStream, readonly dropSeeds: SeedStream) {
    super();
    this.att = this.addChild("att", new MultiHeadAttention(cfg, seeds, dropSeeds));
    this.ff = this.addChild("ff", new FeedForward(cfg, seeds));
    this.norm1 = this.addChild("norm1", new LayerNorm(cfg.embDim));
    this.norm2 = this.addChild("norm2", new LayerNorm(cfg.embDim));
  }

  /** x: [B, T, E] -> x + att(norm1(x)), then h + ff(norm2(h)) (dropout on both shortcuts). */
  apply(x: tf.Tensor3D, cache?: LayerCache): tf.Tensor3D {
    const drop = (t: tf.Tensor) => dropout(t, this.cfg.dropRate, this.training, this.dropSeeds);
    const att = this.att.apply(this.norm1.apply(x) as tf.Tensor3D, cache);
    const h = tf.add(x, drop(att));
    const ff = this.ff.apply(this.norm2.apply(h));
    return tf.add(h, drop(ff)) as tf.Tensor3D;
  }
}

/** Options for building a model. */
export interface GPTModelOptions {
  /** Seed of the initial weights (the book uses torch.manual_seed(123)). */
  seed?: number;
}

/** The GPT model of the book's chapter 4. */
export class GPTModel extends Module {
  /** Seeds of the dropout masks; its counter is saved in checkpoints so resumed runs repeat. */
  readonly dropSeeds: SeedStream;
  readonly tok_emb: Embedding;
  readonly pos_emb: Embedding;
  readonly trf_blocks: ModuleList<TransformerBlock>;
  readonly final_norm: LayerNorm;
  /** The vocabulary-wide head [E, V] (or chapter 6's classifier, or either wrapped in LoRA). */
  readonly out_head: LinearLike;

  constructor(readonly config: GPTConfig, { seed = 123 }: GPTModelOptions = {}) {
    super();
    validateConfig(config);
    assertFitsDevice(parameterShapes(config));
    const c = config, seeds = new SeedStream(seed);
    this.dropSeeds = new SeedStream(seed + 1);
    this.tok_emb = this.addChild(
      "tok_emb",
      new Embedding(c.vocabSize, c.embDim, { seed: seeds.next() }),
    );
    this.pos_emb = this.addChild(
      "pos_emb",
      new Embedding(c.contextLength, c.embDim, { seed: seeds.next() }),
    );
    const blocks = Array.from(
      { length: c.nLayers },
      () => new TransformerBlock(c, seeds, this.dropSeeds),
    );
    this.trf_blocks = this.addChild("trf_blocks", new ModuleList(blocks));
    this.final_norm = this.addChild("final_norm", new LayerNorm(c.embDim));
    this.out_head = this.addChild("out_head", linear(headShape(c), seeds));
  }

  /**
   * Logits [B, T, V] for token ids [B, T]. Pass `caches` (one per layer) to reuse earlier keys and
   * values: then `ids` holds only the new positions, which start at `caches[0].keys` length.
   */
  forward(ids: tf.Tensor2D, caches?: LayerCache[]): tf.Tensor3D {
    const [, t] = ids.shape;
    const start = caches?.[0]?.keys?.shape[2] ?? 0;
    if (start + t > this.config.contextLength) {
      throw new Error(
        `sequence of ${start + t} tokens exceeds the context length ${this.config.contextLength}`,
      );
    }
    return tf.tidy(() => {
      const tok = this.tok_emb.apply(ids);
      const pos = this.pos_emb.apply(tf.range(start, start + t, 1, "int32"));
      let x = dropout(
        tf.add(tok, pos),
        this.config.dropRate,
        this.training,
        this.dropSeeds,
      ) as tf.Tensor3D;
      this.trf_blocks.items.forEach((block, i) => {
        x = block.apply(x, caches?.[i]);
      });
      x = this.final_norm.apply(x) as tf.Tensor3D;
      return this.out_head.apply(x) as tf.Tensor3D;
    });
  }

  /** The transformer blocks in order. */
  blocks(): readonly TransformerBlock[] {
    return this.trf_blocks.items;
  }
}

/** Frees the tensors of a generation cache. */
export function disposeCaches(caches: LayerCache[]): void {
  for (const c of caches) {
    c.keys?.dispose();
    c.values?.dispose();
    c.keys = c.values = undefined;
  }
}

/**
 * Initialises the backend and checks that a model of this config fits its device: run commands
 * call it before they write anything, so a too-large model leaves no run folder behind.
 */
export async function assertModelFits(config: GPTConfig): Promise<void> {
  assertFitsDevice(parameterShapes(config), await initBackend({ log: false }));
}
