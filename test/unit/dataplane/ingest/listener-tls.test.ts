import { copyFileSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import tls from "node:tls";
import { afterEach, describe, expect, it } from "vitest";
import { ListenerCounters } from "../../../../dataplane/ingest/listener-counters.ts";
import { ListenerTls } from "../../../../dataplane/ingest/listener-tls.ts";
import { captureLog } from "../../../fixtures/capture-log.ts";
import { createTestPki } from "../../../fixtures/tls.ts";

// Rotation as docs/protocols.md promises it: files that do not load together
// (a key written before its certificate) keep the current certificate, with a
// warning; the matching pair is loaded once it is there.

const cleanup: Array<() => void> = [];
afterEach(() => {
  for (const f of cleanup.splice(0).reverse()) f();
});

function serial(port: number, ca: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = tls.connect({ port, host: "127.0.0.1", ca, servername: "localhost" }, () => {
      resolve(s.getPeerCertificate().serialNumber);
      s.end();
    });
    s.on("error", reject);
  });
}

describe("ListenerTls rotation", () => {
  it("keeps the current certificate while the files do not match, then loads the new pair", async () => {
    const pki = createTestPki();
    const other = createTestPki();
    cleanup.push(
      () => pki.close(),
      () => other.close(),
    );
    const dir = mkdtempSync(path.join(tmpdir(), "polymur-tls-rotate-"));
    cleanup.push(() => rmSync(dir, { recursive: true, force: true }));
    const certFile = path.join(dir, "cert.pem");
    const keyFile = path.join(dir, "key.pem");
    copyFileSync(pki.certFile, certFile);
    copyFileSync(pki.keyFile, keyFile);
    const { log, lines } = captureLog();
    const t = new ListenerTls(
      { certFile, keyFile, clientCaFile: null, handshakeTimeoutMs: 5_000 },
      log,
    );
    cleanup.push(() => t.close());
    const server = t.createServer(new ListenerCounters("plaintext", "plaintext", "tls"), (s) =>
      s.end(),
    );
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
    cleanup.push(() => server.close());
    const port = (server.address() as { port: number }).port;
    const before = await serial(port, pki.ca);

    // Mid-rotation: the new key is there, its certificate not yet.
    copyFileSync(other.keyFile, keyFile);
    t.reload();
    expect(lines.some((l) => l.level === 40 && /cannot be used/.test(l.msg))).toBe(true);
    expect(await serial(port, pki.ca)).toBe(before);

    // The certificate follows: the pair is loaded for new connections.
    copyFileSync(other.certFile, certFile);
    t.reload();
    expect(lines.some((l) => /TLS certificate reloaded/.test(l.msg))).toBe(true);
    expect(await serial(port, other.ca)).not.toBe(before);
  });
});
