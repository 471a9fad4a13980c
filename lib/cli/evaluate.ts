/**
 * `llm evaluate`: chapter 7.8's scoring of test responses. With Ollama reachable, the book's
 * Llama 3 judge (score 0-100 per entry, averaged); otherwise, or with `--judge offline`, the
 * offline reference metric (ROUGE-L F1 and exact match against `output`), which is NOT the judge
 * score and is labelled so.
 */
import { UserError } from "../util/errors.ts";
import {
  evaluateResponses,
  loadResponseFile,
  offlineScores,
  OLLAMA_CHAT_URL,
  type ScoreResult,
} from "../judge.ts";
import { defineCommand, defineFlags, type Flags } from "./args.ts";

const FLAGS = defineFlags({
  responses: {
    type: "string",
    required: true,
    help: "JSON list of entries with model_response (finetune's test-responses.json)",
  },
  judge: {
    type: "string",
    default: "ollama",
    choices: ["ollama", "offline"],
    help: "ollama: the book's Llama 3 judge (offline metric when unreachable)",
  },
  "ollama-url": {
    type: "string",
    default: "http://localhost:11434",
    help: "Ollama server (or its /api/chat URL)",
  },
  model: { type: "string", default: "llama3", help: "judge model served by Ollama" },
  "response-key": {
    type: "string",
    default: "model_response",
    help: "field holding the response to score",
  },
  json: { type: "boolean", default: false, help: "print one JSON line" },
});

export const evaluateCmd = defineCommand({
  name: "evaluate",
  summary: "score test responses with an Ollama judge, or offline with ROUGE-L (chapter 7.8)",
  usage: "evaluate --responses FILE [--judge ollama|offline] [--ollama-url URL] [--model NAME]",
  flags: FLAGS,
  run: evaluate,
});

/** The chat endpoint for a server URL: `http://host:11434` -> `http://host:11434/api/chat`. */
export function chatUrl(url: string): string {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new UserError(`--ollama-url "${url}" is not a URL (e.g. http://localhost:11434)`);
  }
  if (parsed.pathname === "/" || parsed.pathname === "") parsed.pathname = "/api/chat";
  return parsed.href;
}

const fmt = (x: number) => x.toFixed(2);

async function evaluate(f: Flags<typeof FLAGS>): Promise<void> {
  const path = f.responses;
  const responseKey = f["response-key"];
  const entries = await loadResponseFile(path, { responseKey });
  const offline = offlineScores(entries, { responseKey });
  const offlineJson = {
    rougeL: Number(fmt(offline.rougeL)),
    exactMatch: Number(fmt(offline.exactMatch)),
  };
  const offlineLine = `offline reference metric (NOT the LLM judge's score): ROUGE-L F1 ` +
    `${fmt(offline.rougeL)}, exact match ${
      fmt(offline.exactMatch)
    }% over ${entries.length} entries`;

  let judged: ScoreResult | undefined;
  let reachable: boolean | null = null;
  const url = f.judge === "ollama" ? chatUrl(f["ollama-url"]) : OLLAMA_CHAT_URL;
  const model = f.model;
  if (f.judge === "ollama") {
    const evaluation = await evaluateResponses(entries, { url, model, responseKey });
    reachable = evaluation.reachable;
    judged = evaluation.judged;
    if (!reachable) {
      console.error(
        `Ollama is not reachable at ${new URL(url).origin}: no judge score ` +
          `(start it with \`ollama serve\` and \`ollama pull ${model}\`); ` +
          `reporting the offline reference metric instead`,
      );
    }
  }

  if (f.json) {
    console.log(JSON.stringify({
      responses: path,
      entries: entries.length,
      judge: judged ? "ollama" : "offline",
      ollamaReachable: reachable,
      ...(judged
        ? {
          model,
          average: judged.average === null ? null : Number(fmt(judged.average)),
          scored: judged.scored,
          unparseable: judged.unparseable,
        }
        : {}),
      offline: offlineJson,
    }));
    return;
  }
  if (judged) {
    if (judged.average === null) {
      throw new UserError(
        `${model} gave no integer score for any of the ${entries.length} entries ` +
          `(${judged.unparseable} unparseable replies)`,
      );
    }
    console.log(
      `Average score (${model} judge, 0-100): ${fmt(judged.average)} ` +
        `(${judged.scored} of ${entries.length} entries scored, ${judged.unparseable} unparseable)`,
    );
  }
  console.log(offlineLine);
}
