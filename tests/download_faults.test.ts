/**
 * downloadFile() against servers on 127.0.0.1 that stall or trickle: connect, idle and total
 * timeouts end a hung transfer in one line, keep the .part, and the next try resumes it.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { UserError } from "../lib/util/errors.ts";
import { downloadFile } from "../lib/io/download_file.ts";
import { faultServer, send, stall } from "./fault_server.ts";
import { withServer } from "./cli_helpers.ts";

const BODY = new Uint8Array(1000).map((_, i) => i % 251);
const head = (status: string, extra: string) =>
  `HTTP/1.1 ${status}\r\n${extra}connection: close\r\n\r\n`;

const quick = { quiet: true, retryDelayMs: 0, connectTimeoutMs: 300, idleTimeoutMs: 300 };

Deno.test("a server that stalls mid-body: the idle timeout ends the try, and the next try resumes from .part", async () => {
  await withServer(
    faultServer(async (conn, request, closed) => {
      const range = request.match(/range: bytes=(\d+)-/i);
      if (!range) {
        await send(conn, head("200 OK", "content-length: 1000\r\n"));
        await send(conn, BODY.subarray(0, 400));
        await stall(10_000, closed);
        return;
      }
      const from = Number(range[1]);
      await send(
        conn,
        head(
          "206 Partial Content",
          `content-range: bytes ${from}-999/1000\r\ncontent-length: ${1000 - from}\r\n`,
        ),
      );
      await send(conn, BODY.subarray(from));
    }),
    async (server, tmp) => {
      const dest = join(tmp, "f.bin");
      await downloadFile(`${server.url}/f.bin`, dest, { ...quick, retries: 1 });
      assert.deepEqual(await Deno.readFile(dest), BODY);
      assert.match(server.requests[1], /range: bytes=400-/i);
    },
  );
});

Deno.test("a server that always stalls: one line saying no data came, the .part kept to resume", async () => {
  await withServer(
    faultServer(async (conn, _r, closed) => {
      await send(conn, head("200 OK", "content-length: 1000\r\n"));
      await send(conn, BODY.subarray(0, 300));
      await stall(10_000, closed);
    }),
    async (server, tmp) => {
      const dest = join(tmp, "f.bin");
      await assert.rejects(
        downloadFile(`${server.url}/f.bin`, dest, { ...quick, retries: 0 }),
        (e: Error) =>
          e instanceof UserError &&
          /was interrupted \(no data for 0.3 s\); run again to resume from .*f\.bin\.part$/.test(
            e.message,
          ),
      );
      assert.equal((await Deno.stat(`${dest}.part`)).size, 300);
    },
  );
});

Deno.test("a server that accepts but never answers: the connect timeout ends it in one line", async () => {
  await withServer(faultServer((_c, _r, closed) => stall(10_000, closed)), async (server, tmp) => {
    await assert.rejects(
      downloadFile(`${server.url}/f.bin`, join(tmp, "f.bin"), { ...quick, retries: 1 }),
      /was interrupted \(no response within 0.3 s\)/,
    );
    assert.equal(server.requests.length, 2);
  });
});

Deno.test("a server that trickles forever: the total timeout stops it and keeps the bytes so far", async () => {
  await withServer(
    faultServer(async (conn, _r, closed) => {
      await send(conn, head("200 OK", "content-length: 1000\r\n"));
      for (let i = 0; i < 1000; i++) {
        await send(conn, BODY.subarray(i, i + 1));
        await stall(20, closed);
      }
    }),
    async (server, tmp) => {
      const dest = join(tmp, "f.bin");
      await assert.rejects(
        downloadFile(`${server.url}/f.bin`, dest, { ...quick, totalTimeoutMs: 400 }),
        (e: Error) =>
          e instanceof UserError &&
          /took longer than the 0.4 s limit; \d+ bytes are kept in .*\.part: run again to resume/
            .test(e.message),
      );
      assert.ok((await Deno.stat(`${dest}.part`)).size > 0);
    },
  );
});
