/** Folding LoRA updates back into plain weights (appendix E). */
import * as tf from "@tensorflow/tfjs";
import { GPTModel } from "./gpt.ts";
import { Linear } from "./nn.ts";
import { replaceHeadWithClassifier } from "./classifier.ts";
import { baseParamName, isLoraParam, LinearWithLoRA, loraLayers } from "./lora.ts";

/**
 * A plain GPTModel whose Linear weights are `W + scale * A B` (biases and every other parameter
 * copied): the same logits as the LoRA model, no LoRA cost at inference, and `saveCheckpoint`
 * writes it in the HF layout. The LoRA model is left as it was. A classification head is kept.
 */
export function mergeLora(model: GPTModel): GPTModel {
  const merged = new GPTModel(model.config);
  const head = model.out_head instanceof LinearWithLoRA ? model.out_head.linear : model.out_head;
  const hasBias = head instanceof Linear && head.bias !== undefined;
  if (head.outDim !== model.config.vocabSize || hasBias) {
    replaceHeadWithClassifier(merged, head.outDim);
  }
  const source = new Map<string, tf.Tensor>();
  const keep: tf.Tensor[] = [];
  for (const [name, p] of model.namedParameters()) {
    if (!isLoraParam(name) && baseParamName(name) === name) source.set(name, p);
  }
  for (const [name, layer] of loraLayers(model)) {
    const w = tf.tidy(() => tf.add(layer.linear.weight, layer.lora.delta()));
    keep.push(w);
    source.set(`${name}.weight`, w);
    if (layer.linear.bias) source.set(`${name}.bias`, layer.linear.bias);
  }
  try {
    for (const [name, v] of merged.namedParameters()) {
      const t = source.get(name);
      if (!t) throw new Error(`mergeLora: no value for "${name}"`);
      v.assign(t);
    }
  } finally {
    tf.dispose(keep);
  }
  merged.dropSeeds.counter = model.dropSeeds.counter;
  merged.train(model.training);
  return merged;
}
