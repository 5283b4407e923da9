// TLS at both ends of a remote site's path: senders into a proxy over TLS
// (the proxy takes the relay's --tls-cert, --tls-key, --tls-client-ca and
// --pickle-addr),
// and a gateway forwarding to a tls:// destination (it takes the relay's
// --destination-tls-* options). Every datapoint arrives, and the sender's
// connection and the destination's are both TLS.
import { readFileSync } from "node:fs";
import tls from "node:tls";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { encodePickleFrames } from "../../dataplane/forward/pickle-encoder.ts";
import type { PolymurProcess } from "../fixtures/polymur.ts";
import { startGateway, startProxy, TempDir } from "../fixtures/proxy-gateway.ts";
import { createTestPki, type TestPki } from "../fixtures/tls.ts";
import { waitFor } from "../fixtures/until.ts";

const KEY = "site-1";
const SECRET = "s3cret-site-1-0123456789abcdef";

let pki: TestPki;
beforeAll(() => {
  pki = createTestPki();
});
afterAll(() => pki.close());

const done: Array<() => Promise<unknown> | unknown> = [];
afterEach(async () => {
  while (done.length > 0) await done.pop()!();
});

/** A TLS server keeping the lines it receives, and the client certificates it saw. */
async function tlsSink(): Promise<{ port: number; lines: string[]; connections: () => number }> {
  const lines: string[] = [];
  let connections = 0;
  const server = tls.createServer(
    { cert: readFileSync(pki.certFile), key: readFileSync(pki.keyFile) },
    (socket) => {
      connections++;
      let partial = "";
      socket.setEncoding("utf8");
      socket.on("data", (d: string) => {
        const parts = (partial + d).split("\n");
        partial = parts.pop() ?? "";
        lines.push(...parts);
      });
      socket.on("error", () => {});
    },
  );
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  done.push(() => new Promise<void>((r) => server.close(() => r())));
  return {
    port: (server.address() as { port: number }).port,
    lines,
    connections: () => connections,
  };
}

describe("TLS at a proxy's listener and at a gateway's destinations", () => {
  it("senders → proxy over TLS → gateway → tls:// destination: every datapoint arrives", async () => {
    const t = new TempDir();
    done.push(() => t.close());
    const out = await tlsSink();
    const gw: PolymurProcess = await startGateway([
      "--keys-file",
      t.file("keys", `${KEY} ${SECRET}\n`),
      "--destinations",
      `tls://localhost:${out.port}`,
      "--destination-tls-ca",
      pki.caFile,
    ]);
    done.push(() => gw.stop());
    const px: PolymurProcess = await startProxy(`http://127.0.0.1:${gw.port}`, SECRET, [
      "--tls-cert",
      pki.certFile,
      "--tls-key",
      pki.keyFile,
      "--tls-client-ca",
      pki.caFile,
      "--pickle-addr",
      "127.0.0.1:0",
    ]);
    done.push(() => px.stop());
    expect(px.logs.find((l) => l.msg === "listening")?.["tls"]).toBe("mutual");

    const n = 5_000;
    const lines = Array.from({ length: n }, (_, i) => `site.tls.m${i % 50} ${i} 1700000000`);
    // Plaintext lines to the TLS listener; the last thousand pickled, to the
    // pickle listener (TLS too).
    const pickled = lines.slice(4_000);
    const send = async (port: number, data: string | Buffer): Promise<void> => {
      const socket = tls.connect({
        port,
        host: "127.0.0.1",
        ca: pki.ca,
        servername: "localhost",
        cert: readFileSync(pki.client.certFile),
        key: readFileSync(pki.client.keyFile),
      });
      await new Promise<void>((resolve, reject) => {
        socket.once("secureConnect", () => resolve());
        socket.once("error", reject);
      });
      socket.end(data);
    };
    await send(px.port, `${lines.slice(0, 4_000).join("\n")}\n`);
    const { bytes } = encodePickleFrames(Buffer.from(`${pickled.join("\n")}\n`));
    await send(px.picklePort!, bytes);
    await waitFor(
      "every datapoint at the TLS destination",
      () => (out.lines.length >= n ? true : undefined),
      30_000,
    );
    expect([...out.lines].sort()).toEqual([...lines].sort());
    expect(out.connections()).toBeGreaterThan(0);
    // The proxy runs one process per core; a connection lands on any of them,
    // and workers report their counters to /stats once a second.
    type Listeners = { listeners: Array<{ name: string; transport: string; accepted: number }> };
    const accepted = (s: Listeners, name: string): number =>
      s.listeners.find((l) => l.name === name)?.accepted ?? 0;
    const ps = await waitFor(
      "the proxy's /stats to count every datapoint accepted",
      async () => {
        const res = await fetch(`http://127.0.0.1:${px.statsPort}/stats`);
        const s = (await res.json()) as Listeners;
        return accepted(s, "plaintext") >= 4_000 && accepted(s, "pickle") >= 1_000 ? s : undefined;
      },
      10_000,
      50,
    );
    expect(ps.listeners.find((l) => l.name === "plaintext")).toMatchObject({
      transport: "tls",
      accepted: 4_000,
    });
    expect(ps.listeners.find((l) => l.name === "pickle")).toMatchObject({
      transport: "tls",
      accepted: 1_000,
    });
  });
});
