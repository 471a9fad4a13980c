// Placeholder until the chapter 7 command lands (being written now).
import type { Command } from "./args.ts";
import { UserError } from "../errors.ts";
export const finetuneCmd: Command = {
  name: "finetune",
  summary: "instruction finetuning (chapter 7)",
  usage: "finetune --help",
  flags: {},
  run() {
    return Promise.reject(new UserError("finetune is not available yet"));
  },
};
