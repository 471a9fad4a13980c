/**
 * The chapter-7 finetuning workload of the bench: the batch length the book's collate gives on the
 * shipped instruction data, and the whole finetune's time extrapolated from measured steps.
 *
 * The book's `custom_collate_fn` pads each batch to its longest entry (+1 end token, then drops
 * the last position), so the length varies from batch to batch; the time of an epoch is close to
 * its number of batches times the step time at the mean length (the cost is near-linear in the
 * length at these sizes). The bench therefore times steps at the mean collated length of one
 * training epoch (batch 8, the book's 85/10/5 split of data/instruction-data.json).
 * @module
 */
import { useStockCpu } from "../lib/backend.ts";
import { loadInstructionFile } from "../lib/data/instruction.ts";
import { prepareInstructionData } from "../lib/data/instruction_data.ts";
import { FINETUNE_DEFAULTS } from "../lib/train/finetune.ts";

/** The shipped chapter-7 data set (1,100 entries). */
export const SFT_DATA = new URL("../data/instruction-data.json", import.meta.url).pathname;
/** The book's finetune: 2 epochs; it evaluates every 5 steps on 5 train and 5 val batches. */
const { numEpochs: SFT_EPOCHS, evalFreq: SFT_EVAL_FREQ, evalIter: SFT_EVAL_ITER } =
  FINETUNE_DEFAULTS;

/** Collated batch lengths of one training epoch. */
export interface SftLengths {
  trainEntries: number;
  batchSize: number;
  batchesPerEpoch: number;
  /** Token positions per row: mean (rounded, what the bench times), min and max over the batches. */
  mean: number;
  min: number;
  max: number;
}

/** The lengths customCollate gives the training batches of one epoch (batch 8 by default). */
export async function sftLengths(
  batchSize: number = FINETUNE_DEFAULTS.batchSize,
  path = SFT_DATA,
): Promise<SftLengths> {
  await useStockCpu(); // the collate builds (small) tensors: the plain cpu backend, silently
  const data = prepareInstructionData(await loadInstructionFile(path), {
    batchSize,
    log: () => {},
  });
  const widths: number[] = [];
  for (const batch of data.trainLoader.epoch()) {
    widths.push(batch.inputs.shape[1]);
    batch.inputs.dispose();
    batch.targets.dispose();
  }
  return {
    trainEntries: data.train.length,
    batchSize,
    batchesPerEpoch: widths.length,
    mean: Math.round(widths.reduce((a, b) => a + b, 0) / widths.length),
    min: Math.min(...widths),
    max: Math.max(...widths),
  };
}

/** The whole finetune, extrapolated from a measured training step and evaluation forward pass. */
export interface SftEstimate {
  steps: number;
  /** Forward passes of the evaluations (every evalFreq steps, evalIter batches of train and of val). */
  evalForwards: number;
  minutes: number;
}

/** Minutes of the book's 2 epochs: steps x step time + evaluation forwards x forward time. */
export function sftEstimate(l: SftLengths, stepMs: number, forwardMs: number): SftEstimate {
  const steps = SFT_EPOCHS * l.batchesPerEpoch;
  const evalForwards = Math.ceil(steps / SFT_EVAL_FREQ) * 2 * SFT_EVAL_ITER;
  const minutes = (steps * stepMs + evalForwards * forwardMs) / 60_000;
  return { steps, evalForwards, minutes: Math.round(minutes * 1000) / 1000 };
}
