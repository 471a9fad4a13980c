/** Chapter 6's classification head in place of the vocabulary-wide output head. */
import { UserError } from "../util/errors.ts";
import type { GPTModel } from "./gpt.ts";
import { headShape } from "./config.ts";
import { Linear } from "./nn.ts";

/**
 * Chapter 6's classification head: `model.out_head = Linear(embDim, numClasses)` (with bias), in
 * place of the vocabulary-wide head. The old head's memory is freed. Returns the new head.
 */
export function replaceHeadWithClassifier(
  model: GPTModel,
  numClasses: number,
  { seed = 123 }: { seed?: number } = {},
): Linear {
  if (!Number.isInteger(numClasses) || numClasses <= 0) {
    throw new UserError(`numClasses must be a positive integer (got ${numClasses})`);
  }
  const old = model.out_head;
  const s = headShape(model.config, { numClasses });
  const head = new Linear(s.inDim, s.outDim, { bias: s.bias, seed });
  model.setChild("out_head", head);
  old.dispose();
  return head;
}
