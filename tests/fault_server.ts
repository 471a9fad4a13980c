/**
 * A raw HTTP server on 127.0.0.1 that misbehaves on purpose (stalls, resets, short bodies,
 * garbage), for the download and judge fault tests. Each connection gets `behave(conn, request)`;
 * `close()` shuts every connection and the listener, so no test leaves anything running.
 */
const enc = new TextEncoder();

export interface FaultServer {
  url: string;
  /** Requests seen (their first line and headers). */
  requests: string[];
  close(): Promise<void>;
}

/** Writes a string to the connection, ignoring a peer that has gone. */
export async function send(conn: Deno.Conn, text: string | Uint8Array): Promise<void> {
  const bytes = typeof text === "string" ? enc.encode(text) : text;
  let done = 0;
  try {
    while (done < bytes.length) done += await conn.write(bytes.subarray(done));
  } catch { /* the client left */ }
}

/** Waits `ms` (a stall), resolving early when the server closes. */
export function stall(ms: number, closed: Promise<void>): Promise<void> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  return Promise.race([
    new Promise<void>((r) => (timer = setTimeout(r, ms))),
    closed,
  ]).finally(() => clearTimeout(timer));
}

async function readRequest(conn: Deno.Conn): Promise<string> {
  const buf = new Uint8Array(65536);
  let text = "";
  const dec = new TextDecoder();
  // Headers end with a blank line; a body (a POST) follows within the same few reads.
  for (let i = 0; i < 64 && !text.includes("\r\n\r\n"); i++) {
    const n = await conn.read(buf).catch(() => null);
    if (n === null) break;
    text += dec.decode(buf.subarray(0, n));
  }
  const len = Number(text.match(/content-length: *(\d+)/i)?.[1] ?? 0);
  const bodyStart = text.indexOf("\r\n\r\n") + 4;
  for (let i = 0; i < 64 && text.length - bodyStart < len; i++) {
    const n = await conn.read(buf).catch(() => null);
    if (n === null) break;
    text += dec.decode(buf.subarray(0, n));
  }
  return text;
}

/** Starts the server; `behave` gets the server's `closed` promise to end stalls early. */
export function faultServer(
  behave: (conn: Deno.Conn, request: string, closed: Promise<void>) => Promise<void>,
): FaultServer {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const conns = new Set<Deno.Conn>();
  const requests: string[] = [];
  let markClosed = () => {};
  const closed = new Promise<void>((r) => (markClosed = r));
  const handle = async (conn: Deno.Conn) => {
    conns.add(conn);
    try {
      const request = await readRequest(conn);
      requests.push(request);
      await behave(conn, request, closed);
    } finally {
      conns.delete(conn);
      try {
        conn.close();
      } catch { /* already closed */ }
    }
  };
  const loop = (async () => {
    try {
      for await (const conn of listener) handle(conn);
    } catch { /* listener closed */ }
  })();
  const { port } = listener.addr as Deno.NetAddr;
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    async close() {
      markClosed();
      listener.close();
      for (const c of conns) {
        try {
          c.close();
        } catch { /* gone */ }
      }
      await loop;
    },
  };
}
