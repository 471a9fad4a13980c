/**
 * The judge against an Ollama that misbehaves (a raw server on 127.0.0.1): a hung server times
 * out with a message that says so, a reset or garbage line is one UserError, and a score outside
 * 0-100 is never averaged in.
 */
import assert from "node:assert/strict";
import { UserError } from "../lib/util/errors.ts";
import { parseScore, queryOllama, scoreResponses } from "../lib/judge.ts";
import { faultServer, send, stall } from "./fault_server.ts";

const HEAD = "HTTP/1.1 200 OK\r\ncontent-type: application/x-ndjson\r\n" +
  "transfer-encoding: chunked\r\nconnection: close\r\n\r\n";
const chunk = (s: string) => `${s.length.toString(16)}\r\n${s}\r\n`;
const line = (content: unknown) =>
  JSON.stringify({ message: { role: "assistant", content }, done: false }) + "\n";

async function rejectsWith(
  behave: Parameters<typeof faultServer>[0],
  re: RegExp,
  timeoutMs = 400,
): Promise<void> {
  const server = faultServer(behave);
  try {
    await assert.rejects(
      () => queryOllama("hi", { url: `${server.url}/api/chat`, timeoutMs }),
      (err: unknown) => err instanceof UserError && re.test(err.message),
    );
  } finally {
    await server.close();
  }
}

Deno.test("a judge that never answers times out with a message saying it timed out, not 'cannot reach'", async () => {
  await rejectsWith(
    (_c, _r, closed) => stall(10_000, closed),
    /did not answer within 0.4 s \(timed out waiting for the reply to start\)/,
  );
});

Deno.test("a judge that stalls mid-reply times out as a UserError (the stream loop's timeout is caught)", async () => {
  await rejectsWith(async (conn, _r, closed) => {
    await send(conn, HEAD + chunk(line("8")));
    await stall(10_000, closed);
  }, /did not answer within 0.4 s \(timed out while streaming the reply\)/);
});

Deno.test("a judge whose connection resets mid-reply is one UserError", async () => {
  await rejectsWith(
    async (conn) => {
      await send(conn, HEAD + chunk(line("8")) + "ff\r\npartial");
    },
    /broke mid-reply|sent a line that is not JSON/,
    5000,
  );
});

Deno.test("garbage lines from the judge (null, a list, non-text content) are one UserError each", async () => {
  for (
    const [body, re] of [
      ["null\n", /not an object: null/],
      ["[1,2]\n", /not an object/],
      [line(85), /content is not text/],
      ["{oops\n", /not JSON: \{oops/],
    ] as const
  ) {
    await rejectsWith(
      async (conn) => {
        await send(conn, HEAD + chunk(body) + "0\r\n\r\n");
      },
      re,
      5000,
    );
  }
});

Deno.test("a judge score outside 0-100 is refused and never averaged in", async () => {
  assert.equal(parseScore("100"), 100);
  assert.equal(parseScore("0"), 0);
  assert.equal(parseScore("150"), null);
  assert.equal(parseScore("-3"), null);
  const entry = { instruction: "i", input: "", output: "o", model_response: "r" };
  const replies = ["80", "1000", "-50", "60"];
  let i = 0;
  const r = await scoreResponses([entry, entry, entry, entry], {
    judge: () => Promise.resolve(replies[i++]),
  });
  assert.equal(r.average, 70);
  assert.equal(r.unparseable, 2);
});
