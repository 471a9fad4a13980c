/** Building a model for a command: from a checkpoint folder or a pretrained GPT-2 name. */
import { UserError } from "../errors.ts";
import { exists } from "../fsutil.ts";
import { GPTModel } from "../model.ts";
import { downloadPretrained, PRETRAINED } from "../download.ts";
import { loadCheckpoint, loadWeightsInto } from "../weights.ts";

/**
 * `weights` is a checkpoint folder (config.json + model.safetensors) or one of the pretrained
 * names (downloaded once into the cache).
 */
export async function loadModel(
  weights: string,
  { dropRate }: { dropRate?: number } = {},
): Promise<GPTModel> {
  let dir = weights;
  if (!(await exists(weights))) {
    if (!(weights in PRETRAINED)) {
      throw new UserError(
        `--weights "${weights}" is neither a folder nor a pretrained name (${
          Object.keys(PRETRAINED).join(", ")
        })`,
      );
    }
    dir = await downloadPretrained(weights);
  }
  const { config, tensors } = await loadCheckpoint(dir);
  const model = new GPTModel(dropRate === undefined ? config : { ...config, dropRate });
  loadWeightsInto(model, tensors);
  return model;
}
