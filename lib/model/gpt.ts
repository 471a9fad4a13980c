/**
 * GPTModel exactly as the book's chapter 4: token + position embeddings, dropout, pre-LayerNorm
 * transformer blocks with causal multi-head attention and a GELU feed-forward, a final norm, and
 * an untied output head without bias.
 */
import * as tf from "@tensorflow/tfjs";
import { causalSoftmax } from "../kernels/fused/causal_softmax.ts";
import { type GPTConfig, parameterShapes, validateConfig } from "./config.ts";
import { assertFitsDevice } from "../backend.ts";
import {
  dropout,
  Embedding,
  gelu,
  LayerNorm,
  Linear,
  type LinearLike,
  Module,
  SeedStream,
} from "./nn.ts";

/** Keys and values of the positions seen so far, per layer: [B, H, T, D] each. */
export interface LayerCache {
  keys?: tf.Tensor4D;
  values?: tf.Tensor4D;
}

/** Causal multi-head self-attention (book's MultiHeadAttention). */
export class MultiHeadAttention extends Module {
  readonly headDim: number;
  constructor(readonly cfg: GPTConfig, seeds: SeedStream, readonly dropSeeds: SeedStream) {
    super();
    const e = cfg.embDim;
    this.headDim = e / cfg.nHeads;
    for (const name of ["W_query", "W_key", "W_value"]) {
      this.addChild(name, new Linear(e, e, { bias: cfg.qkvBias, seed: seeds.next() }));
    }
    this.addChild("out_proj", new Linear(e, e, { seed: seeds.next() }));
  }

  /** x: [B, T, E] -> [B, T, E]. With a cache, x holds only the new positions. */
  apply(x: tf.Tensor3D, cache?: LayerCache): tf.Tensor3D {
    const [b, t] = x.shape;
    const { nHeads } = this.cfg, d = this.headDim;
    // [B, T, E] -> [B, H, T, D]
    const heads = (name: string) =>
      this.child<LinearLike>(name).apply(x).reshape([b, t, nHeads, d]).transpose([
        0,
        2,
        1,
        3,
      ]) as tf.Tensor4D;
    let keys = heads("W_key"), values = heads("W_value");
    const queries = heads("W_query");
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
    return this.child<LinearLike>("out_proj").apply(context) as tf.Tensor3D;
  }
}

/** Linear(E, 4E) -> GELU -> Linear(4E, E); children named "layers.0" and "layers.2" like the book. */
export class FeedForward extends Module {
  constructor(cfg: GPTConfig, seeds: SeedStream) {
    super();
    const layers = this.addChild("layers", new Sequential());
    layers.setChild("0", new Linear(cfg.embDim, 4 * cfg.embDim, { seed: seeds.next() }));
    layers.setChild("2", new Linear(4 * cfg.embDim, cfg.embDim, { seed: seeds.next() }));
  }
  apply(x: tf.Tensor): tf.Tensor {
    const layers = this.child("layers");
    return layers.child<LinearLike>("2").apply(gelu(layers.child<LinearLike>("0").apply(x)));
  }
}

/** A plain container, so that names read `ff.layers.0.weight` as in the book. */
class Sequential extends Module {}

/** Pre-LayerNorm transformer block with residual connections and shortcut dropout. */
export class TransformerBlock extends Module {
  constructor(readonly cfg: GPTConfig, seeds: SeedStream, readonly dropSeeds: SeedStream) {
    super();
    this.addChild("att", new MultiHeadAttention(cfg, seeds, dropSeeds));
    this.addChild("ff", new FeedForward(cfg, seeds));
    this.addChild("norm1", new LayerNorm(cfg.embDim));
    this.addChild("norm2", new LayerNorm(cfg.embDim));
  }
  apply(x: tf.Tensor3D, cache?: LayerCache): tf.Tensor3D {
    const drop = (t: tf.Tensor) => dropout(t, this.cfg.dropRate, this.training, this.dropSeeds);
    const att = this.child<MultiHeadAttention>("att").apply(
      this.child<LayerNorm>("norm1").apply(x) as tf.Tensor3D,
      cache,
    );
    const h = tf.add(x, drop(att));
    const ff = this.child<FeedForward>("ff").apply(this.child<LayerNorm>("norm2").apply(h));
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

  constructor(readonly config: GPTConfig, { seed = 123 }: GPTModelOptions = {}) {
    super();
    validateConfig(config);
    assertFitsDevice(parameterShapes(config));
    const c = config, seeds = new SeedStream(seed);
    this.dropSeeds = new SeedStream(seed + 1);
    this.addChild("tok_emb", new Embedding(c.vocabSize, c.embDim, { seed: seeds.next() }));
    this.addChild("pos_emb", new Embedding(c.contextLength, c.embDim, { seed: seeds.next() }));
    const blocks = this.addChild("trf_blocks", new Sequential());
    for (let i = 0; i < c.nLayers; i++) {
      blocks.setChild(String(i), new TransformerBlock(c, seeds, this.dropSeeds));
    }
    this.addChild("final_norm", new LayerNorm(c.embDim));
    this.addChild(
      "out_head",
      new Linear(c.embDim, c.vocabSize, { bias: false, seed: seeds.next() }),
    );
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
      const tok = this.child<Embedding>("tok_emb").apply(ids);
      const pos = this.child<Embedding>("pos_emb").apply(tf.range(start, start + t, 1, "int32"));
      let x = dropout(
        tf.add(tok, pos),
        this.config.dropRate,
        this.training,
        this.dropSeeds,
      ) as tf.Tensor3D;
      this.blocks().forEach((block, i) => {
        x = block.apply(x, caches?.[i]);
      });
      x = this.child<LayerNorm>("final_norm").apply(x) as tf.Tensor3D;
      return this.child<LinearLike>("out_head").apply(x) as tf.Tensor3D;
    });
  }

  /** The transformer blocks in order. */
  blocks(): TransformerBlock[] {
    return this.child("trf_blocks").namedChildren().map(([, m]) => m as TransformerBlock);
  }

  /** Number of parameters; `trainableOnly` counts those not frozen. */
  numParams({ trainableOnly = false } = {}): number {
    let n = 0;
    for (const v of this.namedParameters().values()) if (!trainableOnly || v.trainable) n += v.size;
    return n;
  }

  /** Freezes (or unfreezes) every parameter, like `param.requires_grad = False` for all. */
  setTrainable(on: boolean): void {
    for (const v of this.namedParameters().values()) v.trainable = on;
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
