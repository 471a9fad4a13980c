/**
 * Runs llama.cpp (node-llama-cpp) for tests/gguf_llama_cpp.test.ts in a process of its own:
 * `deno run -A tests/interop/llama_cpp_worker.ts REQUEST.json`. It lives beside the test-only
 * package.json so Deno resolves node-llama-cpp from tests/interop/node_modules (installed by
 * install.sh), not from the project's import map. The request is a list of jobs
 * `{ gguf, contextSize, prompt: number[], maxTokens, tokenize: string[] }`; the answer on stdout is
 * one `{ ids, probs, tokenized }` per job: llama.cpp's greedy ids, the probability it gives each of
 * them, and its token ids of each text (special tokens parsed).
 */
// Not a static import: `deno check tests/` runs with the project's import map, which does not
// (and must not) list this test-only package.
const ENGINE = "node-llama-cpp";
// deno-lint-ignore no-explicit-any
const { getLlama } = await import(ENGINE) as { getLlama: (o: unknown) => Promise<any> };

interface Job {
  gguf: string;
  contextSize: number;
  prompt: number[];
  maxTokens: number;
  tokenize: string[];
}

const jobs: Job[] = JSON.parse(await Deno.readTextFile(Deno.args[0]));
const llama = await getLlama({ gpu: false, build: "never", logLevel: "error" });
const answers = [];
for (const job of jobs) {
  const model = await llama.loadModel({ modelPath: job.gguf, gpuLayers: 0 });
  // Float32 arithmetic throughout: F32 KV cache, no flash attention; 1 thread on a 2-core machine.
  const context = await model.createContext({
    contextSize: job.contextSize,
    batchSize: job.contextSize,
    threads: 1,
    flashAttention: false,
    experimentalKvCacheKeyType: "F32",
    experimentalKvCacheValueType: "F32",
  });
  const ids: number[] = [], probs: number[] = [];
  const steps = context.getSequence().evaluateWithMetadata(job.prompt, { confidence: true }, {
    temperature: 0,
  });
  for await (const step of steps) {
    ids.push(step.token);
    probs.push(step.confidence);
    if (ids.length >= job.maxTokens) break;
  }
  const tokenized = job.tokenize.map((text) => [...model.tokenize(text, true)] as number[]);
  answers.push({ ids, probs, tokenized });
  await context.dispose();
  await model.dispose();
}
await llama.dispose();
console.log(JSON.stringify(answers));
