/**
 * Appendix A of the book in TensorFlow.js: a small multilayer perceptron, the toy data set, a
 * DataLoader, a plain SGD training loop and accuracy, plus the autograd example of section A.4.
 */
import * as tf from "@tensorflow/tfjs";
import { type Layer, Linear, Module, SeedStream, Sequential } from "../model/nn.ts";
import { DataLoader as SharedDataLoader } from "../data/loader.ts";
import { crossEntropy } from "../train/loss.ts";

/** The book's `torch.nn.ReLU()` module (no parameters), for Sequential. */
class ReLU extends Module implements Layer {
  apply(x: tf.Tensor): tf.Tensor {
    return tf.relu(x);
  }
}

/**
 * The book's `NeuralNetwork(num_inputs, num_outputs)`: Linear(num_inputs, 30), ReLU, Linear(30, 20),
 * ReLU, Linear(20, num_outputs). Weights use PyTorch's default init, U(-1/sqrt(fanIn), 1/sqrt(fanIn)),
 * drawn from `seed`; they are stored [in, out] like every linear in this project.
 */
export class NeuralNetwork extends Module {
  /** The three Linear layers (the Sequential's 0, 2 and 4). */
  readonly layers: Linear[];
  readonly #seq: Sequential;

  constructor(
    readonly numInputs: number,
    readonly numOutputs: number,
    { seed = 123 }: { seed?: number } = {},
  ) {
    super();
    const seeds = new SeedStream(seed);
    const dims = [numInputs, 30, 20, numOutputs];
    this.layers = [0, 1, 2].map((i) => new Linear(dims[i], dims[i + 1], { seed: seeds.next() }));
    // Names layers.0, .2, .4 as in the book's Sequential; 1 and 3 are the parameter-free ReLUs.
    const [l0, l1, l2] = this.layers;
    this.#seq = this.addChild("layers", new Sequential(l0, new ReLU(), l1, new ReLU(), l2));
  }

  /** Logits [batch, numOutputs] for features [batch, numInputs]. */
  forward(x: tf.Tensor): tf.Tensor2D {
    return tf.tidy(() => this.#seq.apply(x) as tf.Tensor2D);
  }
}

/**
 * Number of trainable parameters, the book's `sum(p.numel() for p in model.parameters() if
 * p.requires_grad)`: 752 for NeuralNetwork(2, 2), 2,213 for NeuralNetwork(50, 3).
 */
export function countParams(model: Module): number {
  return model.numParams({ trainableOnly: true });
}

/** Features and class labels, the book's `ToyDataset(X, y)`. */
export interface ToyDataset {
  readonly features: readonly (readonly number[])[];
  readonly labels: readonly number[];
}

/** Appendix A's five training examples (two classes). */
export const TOY_TRAIN: ToyDataset = {
  features: [[-1.2, 3.1], [-0.9, 2.9], [-0.5, 2.6], [2.3, -1.1], [2.7, -1.5]],
  labels: [0, 0, 0, 1, 1],
};

/** Appendix A's two test examples. */
export const TOY_TEST: ToyDataset = {
  features: [[-0.8, 2.8], [2.6, -1.6]],
  labels: [0, 1],
};

/** One batch as plain arrays; the training step turns it into tensors inside its tf.tidy. */
export interface Batch {
  features: number[][];
  labels: number[];
}

/** Options of DataLoader, with torch.utils.data.DataLoader's defaults. */
export interface DataLoaderOptions {
  batchSize?: number;
  /** A new order every epoch, drawn from `seed`. */
  shuffle?: boolean;
  /** Drop a last batch smaller than batchSize (appendix A drops the fifth training example). */
  dropLast?: boolean;
  seed?: number;
}

/** One example of the toy data. */
interface ToyItem {
  features: readonly number[];
  label: number;
}

/** Stacks examples into one batch, as torch's default collate stacks (X, y) pairs. */
function collateToy(items: ToyItem[]): Batch {
  return { features: items.map((i) => [...i.features]), labels: items.map((i) => i.label) };
}

/** The book's DataLoader over the toy data: the shared DataLoader (data/loader.ts) and collateToy. */
export class DataLoader extends SharedDataLoader<ToyItem, Batch> {
  constructor(dataset: ToyDataset, opts: DataLoaderOptions = {}) {
    const items = dataset.labels.map((label, i) => ({ features: dataset.features[i], label }));
    super(items, { ...opts, collate: collateToy });
  }
}

/** Options of trainModel, with appendix A's values. */
export interface TrainOptions {
  lr?: number;
  numEpochs?: number;
  /** Receives the book's progress lines; console.log by default. */
  log?: (line: string) => void;
}

/** Per-batch training losses, in order. */
export interface TrainResult {
  batchLosses: number[];
}

/**
 * Appendix A's training loop: cross-entropy, gradients with tf.variableGrads and a plain SGD step
 * (`w -= lr * grad`, torch.optim.SGD without momentum), printing
 * `Epoch: 001/003 | Batch 000/002 | Train Loss: 0.75` per batch.
 */
export async function trainModel(
  model: NeuralNetwork,
  trainLoader: DataLoader,
  { lr = 0.5, numEpochs = 3, log = console.log }: TrainOptions = {},
): Promise<TrainResult> {
  const params = [...model.namedParameters().values()].filter((v) => v.trainable);
  const batchLosses: number[] = [];
  const pad = (n: number) => String(n).padStart(3, "0");
  for (let epoch = 0; epoch < numEpochs; epoch++) {
    model.train();
    let batchIdx = 0;
    for (const batch of trainLoader) {
      const value = tf.tidy(() => {
        const x = tf.tensor2d(batch.features);
        const y = tf.tensor1d(batch.labels, "int32");
        const { value, grads } = tf.variableGrads(() => crossEntropy(model.forward(x), y), params);
        for (const v of params) v.assign(tf.sub(v, tf.mul(grads[v.name], lr)));
        return value;
      });
      const loss = (await value.data())[0];
      value.dispose();
      batchLosses.push(loss);
      log(
        `Epoch: ${pad(epoch + 1)}/${pad(numEpochs)} | Batch ${pad(batchIdx)}/${
          pad(trainLoader.length)
        } | Train Loss: ${loss.toFixed(2)}`,
      );
      batchIdx++;
    }
    model.eval();
  }
  return { batchLosses };
}

/** Predicted class per row: argmax of the logits. */
export async function predict(
  model: NeuralNetwork,
  features: readonly (readonly number[])[],
): Promise<number[]> {
  const classes = tf.tidy(() => tf.argMax(model.forward(tf.tensor2d(features as number[][])), 1));
  const values = Array.from(await classes.data());
  classes.dispose();
  return values;
}

/** The book's compute_accuracy: the fraction of examples whose predicted class is the label. */
export async function computeAccuracy(model: NeuralNetwork, loader: DataLoader): Promise<number> {
  let correct = 0;
  let total = 0;
  for (const batch of loader) {
    const predicted = await predict(model, batch.features);
    correct += predicted.filter((p, i) => p === batch.labels[i]).length;
    total += batch.labels.length;
  }
  return correct / total;
}

/** Section A.4's logistic regression unit: inputs, weight, bias and true label. */
export interface LogisticExample {
  x1?: number;
  w1?: number;
  b?: number;
  y?: number;
}

/** The loss of section A.4 and its gradients with respect to w1 and b. */
export interface LogisticGrads {
  loss: number;
  gradW1: number;
  gradB: number;
}

/**
 * Section A.4's autograd example: z = x1 * w1 + b, a = sigmoid(z), binary cross-entropy against y.
 * With the book's values (y = 1, x1 = 1.1, w1 = 2.2, b = 0) the loss is 0.0852 and the gradients
 * are dL/dw1 = -0.0898 and dL/db = -0.0817.
 */
export async function logisticRegressionGrads(
  { x1 = 1.1, w1 = 2.2, b = 0.0, y = 1.0 }: LogisticExample = {},
): Promise<LogisticGrads> {
  const [loss, gradW1, gradB] = tf.tidy(() => {
    const lossOf = (w: tf.Tensor, bias: tf.Tensor) => {
      const a = tf.sigmoid(tf.add(tf.mul(x1, w), bias));
      // binary_cross_entropy: -(y log a + (1 - y) log(1 - a))
      return tf.neg(tf.add(tf.mul(y, tf.log(a)), tf.mul(1 - y, tf.log(tf.sub(1, a))))) as tf.Scalar;
    };
    const { value, grads } = tf.valueAndGrads(lossOf)([tf.scalar(w1), tf.scalar(b)]);
    return [value, grads[0], grads[1]];
  });
  const [l, w, g] = await Promise.all([loss, gradW1, gradB].map((t) => t.data()));
  tf.dispose([loss, gradW1, gradB]);
  return { loss: l[0], gradW1: w[0], gradB: g[0] };
}
