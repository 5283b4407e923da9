import http2 from "node:http2";
import type { AddressInfo } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { drainWhenAnswered } from "../../../common/drain-when-answered.ts";

const MiB = 1024 * 1024;
const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/**
 * An h2c server that answers every request at once, with trailers, without
 * reading its body (as a call refused early is); with `drainMax`, through
 * drainWhenAnswered.
 */
async function serve(drainMax: number): Promise<string> {
  const server = http2.createServer((req, res) => {
    drainWhenAnswered(req, drainMax);
    res.writeHead(200, { "content-type": "application/grpc" });
    res.addTrailers({ "grpc-status": "8" });
    res.end();
  });
  const sessions = new Set<http2.ServerHttp2Session>();
  server.on("session", (s) => {
    sessions.add(s);
    s.once("close", () => sessions.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  cleanups.push(async () => {
    for (const s of sessions) s.destroy();
    await new Promise((r) => server.close(r));
  });
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

/** Writes `total` bytes as the stream takes them, until done or the stream ends. */
function send(url: string, total: number, chunkBytes = 64 * 1024) {
  const session = http2.connect(url);
  session.on("error", () => {});
  cleanups.push(() => {
    session.destroy();
  });
  const stream = session.request({ ":method": "POST", ":path": "/", te: "trailers" });
  let sent = 0;
  let writeError: Error | null = null;
  let trailers: http2.IncomingHttpHeaders | undefined;
  stream.on("error", () => {});
  stream.on("trailers", (t) => {
    trailers = t;
  });
  stream.resume();
  const chunk = Buffer.alloc(chunkBytes);
  const pump = (): void => {
    while (sent < total && !stream.closed && !stream.destroyed) {
      sent += chunk.length;
      const ok = stream.write(chunk, (err) => {
        if (err) writeError ??= err;
      });
      if (!ok) {
        stream.once("drain", pump);
        return;
      }
    }
    if (!stream.closed) stream.end();
  };
  pump();
  const closed = new Promise<void>((resolve) => stream.once("close", () => resolve()));
  return {
    closed: closed.then(() => ({
      sent,
      rstCode: stream.rstCode,
      trailers,
      writeError,
    })),
  };
}

describe("drainWhenAnswered", () => {
  it("releases a caller still sending once the answer is whole: reads up to its bound, then NO_ERROR", async () => {
    const url = await serve(1 * MiB);
    const r = await send(url, 1024 * MiB).closed;
    expect(r.trailers?.["grpc-status"]).toBe("8");
    expect(r.rstCode).toBe(http2.constants.NGHTTP2_NO_ERROR);
    // Its bound, the 64 KiB windows and what sits in this side's buffers: nowhere near 1 GiB.
    expect(r.sent).toBeLessThan(4 * MiB);
  });

  it("lets a caller finish a write smaller than its bound, and read the answer", async () => {
    const url = await serve(8 * MiB);
    // One 3 MiB write, as connect-node makes one write per message.
    const r = await send(url, 3 * MiB, 3 * MiB).closed;
    expect(r.writeError).toBeNull();
    expect(r.sent).toBe(3 * MiB);
    expect(r.trailers?.["grpc-status"]).toBe("8");
    expect(r.rstCode).toBe(http2.constants.NGHTTP2_NO_ERROR);
  });
});
