import { spawnSync } from "node:child_process";
import { copyFileSync, mkdtempSync, rmSync } from "node:fs";
import { readFile } from "node:fs/promises";
import net, { type AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import tls from "node:tls";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { Destination } from "../../../../dataplane/forward/destination.ts";
import { parseDestination } from "../../../../dataplane/forward/destination-spec.ts";
import {
  DEFAULT_DESTINATION_TLS,
  type DestinationTlsSettings,
} from "../../../../dataplane/forward/destination-tls.ts";
import { specTransport } from "../../../../dataplane/forward/pickle-destination.ts";
import { tlsTransport } from "../../../../dataplane/forward/tls-transport.ts";
import { createTestPki, type TestPki } from "../../../fixtures/tls.ts";
import { until } from "../../../fixtures/until.ts";

// Real TLS: a Node TLS server on 127.0.0.1 with the test PKI's certificate
// (CN localhost, SAN localhost and 127.0.0.1), and Destinations over
// tlsTransport connecting to it.

let pki: TestPki;
beforeAll(() => {
  pki = createTestPki();
});
afterAll(() => pki.close());

const open: Array<{ close(): Promise<void> | void }> = [];
afterEach(async () => {
  while (open.length > 0) await open.pop()!.close();
});

/** What a test TLS server saw: bytes per secure connection, the SNI and client certificate of each. */
interface TlsPeer {
  port: number;
  /** One entry per connection whose handshake the server finished. */
  connections: Array<{
    bytes: Buffer[];
    servername: string | false | null;
    clientCn: string | null;
  }>;
  /** Handshakes the server saw fail (tlsClientError). */
  clientErrors: string[];
  text(): string;
  bytes(i: number): Buffer;
}

/** A TLS server with the test PKI's server certificate; `mutual`: it requires a client certificate signed by the CA. */
async function tlsServer(mutual = false): Promise<TlsPeer> {
  const [key, cert, ca] = await Promise.all([
    readFile(pki.keyFile),
    readFile(pki.certFile),
    readFile(pki.caFile),
  ]);
  const peer: TlsPeer = {
    port: 0,
    connections: [],
    clientErrors: [],
    text: () => peer.connections.map((c) => Buffer.concat(c.bytes).toString()).join(""),
    bytes: (i) => Buffer.concat(peer.connections[i]?.bytes ?? []),
  };
  const sockets = new Set<tls.TLSSocket>();
  const server = tls.createServer(
    { key, cert, ...(mutual ? { ca, requestCert: true, rejectUnauthorized: true } : {}) },
    (s) => {
      sockets.add(s);
      const peerCert = s.getPeerCertificate();
      const clientCn = peerCert?.subject?.CN;
      const c = {
        bytes: [] as Buffer[],
        servername: s.servername,
        clientCn: typeof clientCn === "string" ? clientCn : null,
      };
      peer.connections.push(c);
      s.on("data", (b: Buffer) => c.bytes.push(b));
      s.on("error", () => {});
      s.on("close", () => sockets.delete(s));
    },
  );
  server.on("tlsClientError", (err) => peer.clientErrors.push(err.message));
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  peer.port = (server.address() as AddressInfo).port;
  open.push({
    close: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  });
  return peer;
}

function settings(s: Partial<DestinationTlsSettings>): DestinationTlsSettings {
  return { ...DEFAULT_DESTINATION_TLS, ...s };
}

/** A started Destination to `spec` over TLS with `tls`, reconnecting after `backoffMs` (quickly by default). */
function dest(
  spec: string,
  tlsSettings: DestinationTlsSettings | null,
  backoffMs = { min: 10, max: 50 },
): Destination {
  const d = new Destination(tlsTransport(parseDestination(spec), tlsSettings), {
    backoffMinMs: backoffMs.min,
    backoffMaxMs: backoffMs.max,
  });
  open.push(d);
  d.start();
  return d;
}

const lines = (n: number, prefix = "tls.m"): string =>
  Array.from({ length: n }, (_, i) => `${prefix}${i} ${i}.5 ${1_700_000_000 + i}\n`).join("");

describe("tlsTransport", () => {
  it("delivers lines over TLS to a server whose certificate chains to the CA", async () => {
    const s = await tlsServer();
    const d = dest(`tls://127.0.0.1:${s.port}`, settings({ caFile: pki.caFile }));
    expect(d.spec).toMatchObject({ id: `tls://127.0.0.1:${s.port}` });
    for (let i = 0; i < 10; i++) d.enqueue(Buffer.from(lines(100, `tls.b${i}.m`)), 100);
    await until("every line at the server", () => s.text().split("\n").length - 1 === 1_000);
    const want = Array.from({ length: 10 }, (_, i) => lines(100, `tls.b${i}.m`)).join("");
    expect(s.text()).toBe(want);
    await until(() => d.stats().forwarded === 1_000);
    expect(d.stats()).toMatchObject({ connects: 1, failures: 0, dropped: 0, queuedLines: 0 });
    // An IP address is sent as no SNI (RFC 6066).
    expect(s.connections[0]!.servername).toBe(false);
  });

  it("a server the CA did not sign is never connected to: failures counted, lastError says why, nothing sent", async () => {
    const s = await tlsServer();
    const d = dest(`tls://127.0.0.1:${s.port}`, settings({ caFile: pki.otherCaFile }));
    d.enqueue(Buffer.from(lines(5)), 5);
    await until("three failed handshakes", () => d.stats().failures >= 3);
    const st = d.stats();
    expect(st.connects).toBe(0);
    expect(st.forwarded).toBe(0);
    expect(st.queuedLines).toBe(5);
    expect(st.lastError).toMatch(/unable to (verify|get local issuer)|self[- ]signed/);
    expect(s.connections).toEqual([]);
    expect(d.state).not.toBe("connected");
  });

  it("without a CA file, Node's default trust store is used: the test CA is not in it", async () => {
    const s = await tlsServer();
    const d = dest(`tls://127.0.0.1:${s.port}`, null);
    d.enqueue(Buffer.from(lines(1)), 1);
    await until(() => d.stats().failures >= 2);
    expect(d.stats()).toMatchObject({ connects: 0, forwarded: 0 });
    expect(d.stats().lastError).toMatch(/unable to (verify|get local issuer)|self[- ]signed/);
    expect(s.connections).toEqual([]);
  });

  it("checks the name: localhost matches, a server name override is checked and sent as SNI", async () => {
    const s = await tlsServer();
    const byName = dest(`tls://localhost:${s.port}`, settings({ caFile: pki.caFile }));
    byName.enqueue(Buffer.from(lines(1, "name.a")), 1);
    await until(() => byName.stats().forwarded === 1);
    await until(() => s.text().includes("name.a0"));
    expect(s.connections.at(-1)!.servername).toBe("localhost");

    // An IP destination checked against (and sending) another name.
    const override = dest(
      `tls://127.0.0.1:${s.port}`,
      settings({ caFile: pki.caFile, serverName: "localhost" }),
    );
    override.enqueue(Buffer.from(lines(1, "name.b")), 1);
    await until(() => override.stats().forwarded === 1);
    await until(() => s.text().includes("name.b0"));
    expect(s.connections.at(-1)!.servername).toBe("localhost");

    // A name the certificate does not carry: refused, and said so.
    const wrong = dest(
      `tls://127.0.0.1:${s.port}`,
      settings({ caFile: pki.caFile, serverName: "db.example.org" }),
    );
    wrong.enqueue(Buffer.from(lines(1, "name.c")), 1);
    await until(() => wrong.stats().failures >= 2);
    expect(wrong.stats()).toMatchObject({ connects: 0, forwarded: 0 });
    expect(wrong.stats().lastError).toMatch(/does not match certificate's altnames/);
    expect(s.text()).not.toContain("name.c0");
  });

  it("mutual TLS: the client certificate is presented; without it, or with one the CA did not sign, nothing gets through", async () => {
    const s = await tlsServer(true);
    const withCert = dest(
      `tls://127.0.0.1:${s.port}`,
      settings({ caFile: pki.caFile, certFile: pki.client.certFile, keyFile: pki.client.keyFile }),
    );
    withCert.enqueue(Buffer.from(lines(20, "mtls.ok")), 20);
    await until("20 lines at the server", () => s.text().split("\n").length - 1 === 20);
    expect(s.text()).toBe(lines(20, "mtls.ok"));
    expect(s.connections[0]!.clientCn).toBe("polymur test client");
    expect(withCert.stats()).toMatchObject({ connects: 1, failures: 0 });

    const before = s.connections.length;
    // Slow reconnects: lastError is read between a failure and the next connect.
    const slow = { min: 100, max: 100 };
    const without = dest(`tls://127.0.0.1:${s.port}`, settings({ caFile: pki.caFile }), slow);
    without.enqueue(Buffer.from(lines(3, "mtls.none")), 3);
    const stranger = dest(
      `tls://127.0.0.1:${s.port}`,
      settings({
        caFile: pki.caFile,
        certFile: pki.otherClient.certFile,
        keyFile: pki.otherClient.keyFile,
      }),
      slow,
    );
    stranger.enqueue(Buffer.from(lines(3, "mtls.stranger")), 3);
    // Each refused link ends (a TLSSocket stays open after an alert that comes
    // after its handshake unless it is closed) and the next one is tried.
    await until(
      "five refused links each",
      () => without.stats().failures >= 5 && stranger.stats().failures >= 5,
    );
    // TLS 1.3: the client finishes its handshake before the server checks its
    // certificate, so these links connect (which clears lastError), then fail
    // on the server's alert (which sets it): it is seen between the two.
    await until("the alert in lastError", () =>
      /certificate required/i.test(without.stats().lastError ?? ""),
    );
    // Node's TLS server closes a connection whose client certificate it
    // refuses without an alert: the stranger sees its links close, no error.
    expect(s.connections.length).toBe(before);
    // Refused without a certificate in the handshake; the stranger's, after it.
    expect(s.clientErrors.length).toBeGreaterThanOrEqual(2);
    expect(s.text()).not.toMatch(/mtls\.(none|stranger)/);
  });

  it("a TLS error after the handshake ends the link (Node leaves such a TLSSocket open); the next one delivers", async () => {
    const s = await tlsServer();
    // Between the two, a forwarder that can slip a bogus TLS record to the client.
    const clients: net.Socket[] = [];
    const proxy = net.createServer((client) => {
      clients.push(client);
      const upstream = net.connect(s.port, "127.0.0.1");
      client.pipe(upstream);
      upstream.pipe(client);
      const close = (): void => {
        client.destroy();
        upstream.destroy();
      };
      for (const sock of [client, upstream]) sock.on("error", close).on("close", close);
    });
    await new Promise<void>((r) => proxy.listen(0, "127.0.0.1", r));
    open.push({ close: () => new Promise<void>((r) => proxy.close(() => r())) });
    const port = (proxy.address() as AddressInfo).port;
    const d = dest(
      `tls://127.0.0.1:${port}`,
      settings({ caFile: pki.caFile, serverName: "localhost" }),
    );
    d.enqueue(Buffer.from(lines(1, "rec.a")), 1);
    await until(() => s.text() === lines(1, "rec.a"));
    // An application-data record that does not decrypt; the TCP connection stays open.
    clients[0]!.write(
      Buffer.concat([Buffer.from([0x17, 0x03, 0x03, 0x00, 0x20]), Buffer.alloc(32, 7)]),
    );
    await until("the failure counted", () => d.stats().failures === 1, 3_000);
    expect(d.stats().lastError).toMatch(/decrypt|bad record mac/i);
    d.enqueue(Buffer.from(lines(1, "rec.b")), 1);
    await until(() => s.text().includes("rec.b0"));
    expect(d.stats().connects).toBe(2);
  });

  it("a CA file that is missing fails the attempt and is retried; a rotated CA file is read at the next connect", async () => {
    const s = await tlsServer();
    const dir = mkdtempSync(join(tmpdir(), "polymur-dest-tls-"));
    open.push({ close: () => rmSync(dir, { recursive: true, force: true }) });
    const caFile = join(dir, "ca.pem");
    const d = dest(`tls://127.0.0.1:${s.port}`, settings({ caFile }));
    d.enqueue(Buffer.from(lines(4, "rot.a")), 4);
    await until(() => d.stats().failures >= 2);
    expect(d.stats().lastError).toMatch(
      new RegExp(`cannot read --destination-tls-ca ${caFile}: ENOENT`),
    );
    expect(d.stats().connects).toBe(0);

    // The wrong CA: read, and refused.
    copyFileSync(pki.otherCaFile, caFile);
    await until(() => /unable to|self[- ]signed/.test(d.stats().lastError ?? ""));
    const failed = d.stats().failures;
    expect(d.stats().connects).toBe(0);

    // Rotated to the right CA, in place: the next connect reads it.
    copyFileSync(pki.caFile, caFile);
    await until(() => d.stats().forwarded === 4);
    expect(s.text()).toBe(lines(4, "rot.a"));
    expect(d.stats()).toMatchObject({ connects: 1, lastError: undefined });
    expect(d.stats().failures).toBeGreaterThanOrEqual(failed);
  });

  it("a client key that does not match its certificate fails every attempt with a clear error", async () => {
    const s = await tlsServer(true);
    const d = dest(
      `tls://127.0.0.1:${s.port}`,
      settings({ caFile: pki.caFile, certFile: pki.client.certFile, keyFile: pki.keyFile }),
    );
    d.enqueue(Buffer.from(lines(1)), 1);
    await until(() => d.stats().failures >= 2);
    expect(d.stats().lastError).toMatch(/do not make a TLS context: .*key values mismatch/);
    expect(d.stats().connects).toBe(0);
    expect(s.connections).toEqual([]);
  });
});

/** Real Python: the frames' datapoints as `name value timestamp` lines. */
function unpickle(bytes: Buffer): string[] {
  const script = `
import pickle, struct, sys
data = sys.stdin.buffer.read()
i = 0
while i < len(data):
    (n,) = struct.unpack("!I", data[i:i + 4])
    for name, (ts, value) in pickle.loads(data[i + 4:i + 4 + n]):
        print("%s %r %r" % (name, value, ts))
    i += 4 + n
`;
  const r = spawnSync("python3", ["-c", script], { input: bytes });
  if (r.status !== 0) throw new Error(`python3 failed: ${r.stderr}`);
  return String(r.stdout).split("\n").filter(Boolean);
}

describe("specTransport", () => {
  it("pickle+tls:// sends pickle frames over TLS, verified as tls://", async () => {
    const s = await tlsServer();
    const spec = parseDestination(`pickle+tls://127.0.0.1:${s.port}:a`);
    const d = new Destination(specTransport(spec, settings({ caFile: pki.caFile })), {
      backoffMinMs: 10,
      backoffMaxMs: 50,
    });
    open.push(d);
    d.start();
    d.enqueue(Buffer.from(lines(600, "pk.m")), 600);
    await until(() => d.stats().forwarded === 600);
    await until(() => unpickle(s.bytes(0)).length === 600);
    expect(unpickle(s.bytes(0))).toEqual(
      Array.from({ length: 600 }, (_, i) => `pk.m${i} ${i}.5 ${1_700_000_000 + i}`),
    );
  });

  it("a Destination made from a tls:// spec takes its TLS settings from its options", async () => {
    const s = await tlsServer();
    const d = new Destination(parseDestination(`tls://127.0.0.1:${s.port}`), {
      backoffMinMs: 10,
      backoffMaxMs: 50,
      tls: settings({ caFile: pki.caFile }),
    });
    open.push(d);
    d.start();
    d.enqueue(Buffer.from(lines(3, "opt.m")), 3);
    await until(() => d.stats().forwarded === 3);
    await until(() => s.text() === lines(3, "opt.m"));
  });

  it("a plaintext spec stays plaintext TCP", () => {
    const t = specTransport(parseDestination("127.0.0.1:2003"), settings({ caFile: pki.caFile }));
    expect(t.name.id).toBe("127.0.0.1:2003");
    const link = t.open();
    // A net.Socket, not a TLS link: it has no TLS handshake to wait for.
    expect(link instanceof tls.TLSSocket).toBe(false);
    link.on("error", () => {});
    link.destroy();
  });
});
