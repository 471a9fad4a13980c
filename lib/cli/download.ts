/** `llm download`: fetch pretrained GPT-2 weights (or the Alpaca data) into the cache. */
import { downloadAlpaca, downloadPretrained, PRETRAINED } from "../io/download.ts";
import { UserError } from "../util/errors.ts";
import { defineCommand } from "./args.ts";

export const downloadCmd = defineCommand({
  name: "download",
  summary: "download pretrained GPT-2 weights or the Stanford Alpaca data into the cache",
  usage: "download (--weights NAME | --data alpaca) [--cache-dir DIR]",
  flags: {
    weights: {
      type: "string",
      choices: Object.keys(PRETRAINED),
      help: "pretrained model to fetch",
    },
    data: { type: "string", choices: ["alpaca"], help: "dataset to fetch" },
    "cache-dir": { type: "string", help: "cache folder (default $LLM_CACHE_DIR or data/cache)" },
  },
  async run(f) {
    const cacheDir = f["cache-dir"];
    if (!f.weights && !f.data) {
      throw new UserError("download: give --weights NAME or --data alpaca (see --help)");
    }
    if (f.weights) console.log(await downloadPretrained(f.weights, { cacheDir }));
    if (f.data) console.log(await downloadAlpaca({ cacheDir }));
  },
});
