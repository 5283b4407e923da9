import { readFileSync } from "node:fs";
import http2 from "node:http2";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BatchBuffer } from "../../../../../dataplane/link/proxy/batch-buffer.ts";
import { GatewayLink } from "../../../../../dataplane/link/proxy/gateway-link.ts";
import { type CapturedLine, captureLog } from "../../../../fixtures/capture-log.ts";
import { createTestPki, type TestPki } from "../../../../fixtures/tls.ts";
import { until } from "../../../../fixtures/until.ts";

// A proxy pointed at a gateway with the wrong scheme, an untrusted CA or a
// host name its certificate does not name says what to fix, not only
// "The pending stream has been canceled" or "CANCEL (0x8)".

let pki: TestPki;
let cleartext: http2.Http2Server;
let tls: http2.Http2SecureServer;
const port = (s: { address(): unknown }): number => (s.address() as AddressInfo).port;

beforeAll(async () => {
  pki = createTestPki();
  cleartext = http2.createServer();
  cleartext.on("stream", (s) => s.respond({ ":status": 404 }, { endStream: true }));
  await new Promise<void>((r) => cleartext.listen(0, "127.0.0.1", r));
  tls = http2.createSecureServer({
    cert: readFileSync(pki.certFile),
    key: readFileSync(pki.keyFile),
  });
  tls.on("stream", (s) => s.respond({ ":status": 404 }, { endStream: true }));
  // Every loopback address: 127.0.0.2 is a host the certificate does not name.
  await new Promise<void>((r) => tls.listen(0, "0.0.0.0", r));
});

afterAll(async () => {
  await new Promise((r) => cleartext.close(r));
  await new Promise((r) => tls.close(r));
  pki.close();
});

/** The first "link to gateway … failed" line of a link to `url`. */
async function firstFailure(url: string, ca?: string): Promise<CapturedLine> {
  const { log, lines } = captureLog();
  const buffer = new BatchBuffer({ memoryBytes: 1 << 20, spool: null, spoolBytes: 0, log });
  const link = new GatewayLink({
    gateways: [url],
    apiKey: "k",
    proxyId: () => "p",
    buffer,
    log,
    backoffMinMs: 50,
    backoffMaxMs: 100,
    onAuthFailure: () => {},
    onIdConflict: () => {},
    ...(ca === undefined ? {} : { ca }),
  });
  link.start();
  try {
    const failed = (): CapturedLine | undefined =>
      lines.find((l) => l.msg.startsWith(`link to gateway ${url} failed`));
    await until("a failed attempt", () => failed() !== undefined);
    return failed()!;
  } finally {
    await link.stop();
  }
}

describe("GatewayLink: URL and TLS mistakes get a hint", () => {
  it("https:// to a cleartext gateway: use an http:// URL", async () => {
    const l = await firstFailure(`https://127.0.0.1:${port(cleartext)}`, pki.ca);
    expect(l.msg).toMatch(
      /TLS handshake failed \(\w+\); if it serves cleartext HTTP\/2, use an http:\/\/ URL; unacknowledged batches will be resent$/,
    );
  });

  it("http:// to a TLS gateway: use an https:// URL", async () => {
    const l = await firstFailure(`http://127.0.0.1:${port(tls)}`);
    expect(l.msg).toMatch(
      /; if it serves TLS, use an https:\/\/ URL; unacknowledged batches will be resent$/,
    );
  });

  it("a certificate from a CA the proxy does not trust: pass it with --ca", async () => {
    const l = await firstFailure(`https://127.0.0.1:${port(tls)}`);
    expect(l.msg).toMatch(
      /cannot verify the gateway's certificate \(UNABLE_TO_VERIFY_LEAF_SIGNATURE\); pass the CA that signed it with --ca FILE; unacknowledged/,
    );
  });

  it("a host name the certificate does not name: says which", async () => {
    const l = await firstFailure(`https://127.0.0.2:${port(tls)}`, pki.ca);
    expect(l.msg).toContain(
      "the certificate does not name 127.0.0.2: use a host name it names in the URL, or reissue it with 127.0.0.2 in its subjectAltName",
    );
  });

  it("a gateway that is simply down gets no TLS hint", async () => {
    const { freePort } = await import("../../../../fixtures/line-sink.ts");
    const l = await firstFailure(`https://127.0.0.1:${await freePort()}`, pki.ca);
    expect(l.msg).toMatch(/ECONNREFUSED/);
    expect(l.msg).not.toMatch(/use an http|certificate|https:\/\/ URL/);
  });
});
