/**
 * Prints the WebGPU device the bench will use (the backend line: adapter and limits), or why
 * there is none. Part of bench/gpu/run.sh.
 */
import { describeBackend, initBackend } from "../../lib/backend.ts";
import { UserError } from "../../lib/util/errors.ts";

try {
  console.log(describeBackend(await initBackend({ backend: "webgpu", log: false })));
} catch (err) {
  if (!(err instanceof UserError)) throw err;
  console.log(`error: ${err.message}`);
}
