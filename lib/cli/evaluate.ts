// Placeholder until the evaluate command lands (being written now).
import type { Command } from "./args.ts";
import { UserError } from "../errors.ts";
export const evaluateCmd: Command = {
  name: "evaluate",
  summary: "score test responses (chapter 7.8)",
  usage: "evaluate --help",
  flags: {},
  run() {
    return Promise.reject(new UserError("evaluate is not available yet"));
  },
};
