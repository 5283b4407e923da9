// TLS into polymur's data listeners (--tls-cert, --tls-key, --tls-client-ca),
// with real peers and real TLS clients:
// * a real carbon-c-relay 3.7.3 sending over `transport plain ssl` into a
//   relay (default worker count): every datapoint arrives;
// * the same carbon-c-relay distrusting the relay's certificate retries at
//   once, thousands of times a second (peer-wire-notes.md): the relay counts
//   the failures and throttles the address, logs a bounded number of lines,
//   and another sender's datapoints all arrive meanwhile;
// * mutual TLS with `openssl s_client` and Node's TLS client: accepted with
//   the right client certificate; refused without one, with one from another
//   CA, and in plaintext, each counted under its reason;
// * a client that never finishes its handshake is closed at
//   --tls-handshake-timeout and counted; pickle over TLS; a rotated
//   certificate is served to new connections without a restart.
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import tls from "node:tls";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { encodePickleFrames } from "../../dataplane/forward/pickle-encoder.ts";
import { freePort, LineSink, sendLines } from "../fixtures/line-sink.ts";
import { PolymurProcess, type StatsJson, waitForStats } from "../fixtures/polymur.ts";
import { ccrBinary } from "../fixtures/references.ts";
import { skipUnlessAvailable } from "../fixtures/requires.ts";
import { createTestPki, type TestPki } from "../fixtures/tls.ts";
import { waitFor } from "../fixtures/until.ts";

let pki: TestPki;
beforeAll(() => {
  pki = createTestPki();
});
afterAll(() => pki.close());

const done: Array<() => Promise<unknown> | unknown> = [];
afterEach(async () => {
  while (done.length > 0) await done.pop()!();
});

async function sink(): Promise<LineSink> {
  const s = await LineSink.start();
  done.push(() => s.close());
  return s;
}

async function relay(args: string[]): Promise<PolymurProcess> {
  const p = await PolymurProcess.relay(args);
  done.push(() => p.stop());
  return p;
}

function tlsArgs(extra: string[] = []): string[] {
  return ["--tls-cert", pki.certFile, "--tls-key", pki.keyFile, ...extra];
}

/** `n` datapoints with distinct names, values and timestamps (lines without newline). */
function datapoints(prefix: string, n: number): string[] {
  const t0 = Math.floor(Date.now() / 1000) - 3_600;
  return Array.from({ length: n }, (_, i) => `${prefix}.m${i % 50}.x${i} ${i / 4} ${t0 + i}`);
}

/** The plaintext listener's row of /stats `listeners`. */
function plain(s: StatsJson) {
  return s.listeners.find((l) => l.name === "plaintext")!;
}

/** Sends `text` over TLS (Node's client) and ends; resolves once the server closed. */
async function sendTls(port: number, text: string | Buffer, options: tls.ConnectionOptions = {}) {
  const socket = tls.connect({
    port,
    host: "127.0.0.1",
    ca: pki.ca,
    servername: "localhost",
    ...options,
  });
  await new Promise<void>((resolve, reject) => {
    socket.once("secureConnect", () => resolve());
    socket.once("error", reject);
  });
  await new Promise<void>((resolve) => socket.end(text, () => resolve()));
  await new Promise<void>((resolve) => {
    socket.on("data", () => {});
    socket.on("error", () => {});
    socket.once("close", () => resolve());
  });
}

/** A Node TLS client's fate: "ok" once its data was written and the server closed cleanly, else the error code. */
function tryTls(port: number, options: tls.ConnectionOptions, text: string): Promise<string> {
  return new Promise((resolve) => {
    const socket = tls.connect({
      port,
      host: "127.0.0.1",
      ca: pki.ca,
      servername: "localhost",
      ...options,
    });
    let err = "";
    socket.on("error", (e: NodeJS.ErrnoException) => {
      err ||= e.code ?? e.message;
    });
    socket.once("secureConnect", () => socket.end(text));
    socket.on("data", () => {});
    socket.once("close", () => resolve(err || "ok"));
  });
}

/** carbon-c-relay forwarding everything it gets on a plaintext port to `target` over TLS, trusting `caFile`. */
async function ccrTlsClient(
  target: number,
  caFile: string,
): Promise<{ port: number; child: ChildProcess }> {
  const dir = mkdtempSync(join(tmpdir(), "polymur-tls-in-ccr-"));
  done.push(() => rmSync(dir, { recursive: true, force: true }));
  const port = await freePort();
  const conf = join(dir, "relay.conf");
  writeFileSync(
    conf,
    [
      `listen type linemode 127.0.0.1:${port} proto tcp ;`,
      "statistics submit every 900 seconds ;",
      `cluster polymur forward 127.0.0.1:${target} transport plain ssl ;`,
      "match * send to polymur ;",
      "",
    ].join("\n"),
  );
  const child = spawn(ccrBinary!, ["-f", conf, "-w", "1", "-C", caFile], {
    stdio: ["ignore", "ignore", "ignore"],
  });
  done.push(async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
    child.kill("SIGKILL");
    await exited;
  });
  await waitFor(
    "carbon-c-relay listening",
    () =>
      new Promise<true | undefined>((resolve) => {
        const s = net.connect(port, "127.0.0.1");
        s.once("connect", () => {
          s.destroy();
          resolve(true);
        });
        s.once("error", () => resolve(undefined));
      }),
    20_000,
    50,
  );
  return { port, child };
}

const ccr = skipUnlessAvailable("carbon-c-relay", ccrBinary !== undefined);

describe.skipIf(ccr)("TLS from a real carbon-c-relay 3.7.3 (transport plain ssl)", () => {
  it("every datapoint it sends over TLS arrives", async () => {
    const out = await sink();
    const p = await relay(tlsArgs(["--destinations", out.address]));
    const c = await ccrTlsClient(p.port, pki.caFile);
    const lines = datapoints("tls.in.ccr", 20_000);
    for (let i = 0; i < 4; i++) {
      await sendLines(c.port, `${lines.slice(i * 5_000, (i + 1) * 5_000).join("\n")}\n`);
    }
    await waitFor(
      "every datapoint",
      () => (out.lines.length >= lines.length ? true : undefined),
      30_000,
    );
    await new Promise((r) => setTimeout(r, 300));
    expect(out.lines.filter((l) => l.startsWith("tls.in.ccr.")).sort()).toEqual([...lines].sort());
    const s = await waitForStats(p, (x) => plain(x).accepted === lines.length);
    expect(plain(s)).toMatchObject({ transport: "tls", rejected: 0 });
    expect(plain(s).connectionsTotal).toBeGreaterThan(0);
    expect(s.datapoints.rejected).toBe(0);
  });

  it("a carbon-c-relay that distrusts the certificate retries thousands of times a second: counted, throttled, logged a few times; another sender is unharmed", async () => {
    const out = await sink();
    const p = await relay(tlsArgs(["--destinations", out.address]));
    // It trusts another CA: every handshake fails on its side, and it retries at once.
    const c = await ccrTlsClient(p.port, pki.otherCaFile);
    // Something for it to send, so that it keeps connecting.
    const feeder = setInterval(() => {
      sendLines(c.port, "tls.in.distrust 1 1700000000\n").catch(() => {});
    }, 100);
    done.push(() => clearInterval(feeder));
    const storm = await waitForStats(
      p,
      (x) => plain(x).tlsRejectedBy!.throttled > 0 && plain(x).tlsRejectedBy!.handshake_failed > 0,
      20_000,
    );
    // Meanwhile a sender on another address (127.0.0.2: the storm's own
    // address is throttled) with the right trust delivers everything.
    const lines = datapoints("tls.in.bystander", 5_000);
    // (tls.connect passes localAddress on to its TCP socket; its type does not say so.)
    await sendTls(p.port, `${lines.join("\n")}\n`, {
      localAddress: "127.0.0.2",
    } as tls.ConnectionOptions);
    await waitFor(
      "the bystander's datapoints",
      () => (out.lines.length >= lines.length ? true : undefined),
      20_000,
    );
    expect(out.lines.sort()).toEqual([...lines].sort());
    await new Promise((r) => setTimeout(r, 3_000));
    clearInterval(feeder);
    const s = await p.stats();
    const r = plain(s).tlsRejectedBy!;
    console.info(
      `[tls-in] distrusting carbon-c-relay: ${JSON.stringify(r)} (at the first look: ${JSON.stringify(plain(storm).tlsRejectedBy)})`,
    );
    // Nothing it sent got through, and no line was taken from it.
    expect(out.lines.some((l) => l.startsWith("tls.in.distrust"))).toBe(false);
    expect(plain(s).accepted).toBe(lines.length);
    // Logged per reason at most once per 10 s per process: a handful of lines, whatever the count.
    const tlsWarnings = p.logs.filter((l) => /TLS sender connections closed/.test(l.msg));
    const processes = new Set(p.logs.map((l) => l.pid)).size;
    expect(tlsWarnings.length).toBeLessThanOrEqual(2 * 2 * processes);
    expect(r.handshake_failed + r.throttled).toBeGreaterThan(tlsWarnings.length);
    expect((await p.get("/healthz")).status).toBe(200);
  });
});

describe("mutual TLS (--tls-client-ca) with real TLS clients", () => {
  it("accepts the right client certificate; refuses none, another CA's and plaintext, each counted", async () => {
    const out = await sink();
    const p = await relay(tlsArgs(["--tls-client-ca", pki.caFile, "--destinations", out.address]));
    // openssl s_client, a TLS client that is not Node's, with the client certificate.
    const good = datapoints("mtls.openssl", 100);
    execFileSync(
      "openssl",
      [
        "s_client",
        "-quiet",
        "-no_ign_eof",
        "-connect",
        `127.0.0.1:${p.port}`,
        "-CAfile",
        pki.caFile,
        "-cert",
        pki.client.certFile,
        "-key",
        pki.client.keyFile,
      ],
      { input: `${good.join("\n")}\n`, stdio: ["pipe", "ignore", "ignore"], timeout: 10_000 },
    );
    // Node's client with it, and an open connection that must outlive the refusals.
    const node = datapoints("mtls.node", 100);
    const keep = tls.connect({
      port: p.port,
      host: "127.0.0.1",
      ca: pki.ca,
      servername: "localhost",
      cert: readFileSync(pki.client.certFile),
      key: readFileSync(pki.client.keyFile),
    });
    keep.on("error", () => {});
    await new Promise<void>((r) => keep.once("secureConnect", () => r()));
    keep.write(`${node.slice(0, 50).join("\n")}\n`);

    const refusedNone = await tryTls(p.port, {}, "mtls.none 1 1700000000\n");
    const refusedOther = await tryTls(
      p.port,
      { cert: readFileSync(pki.otherClient.certFile), key: readFileSync(pki.otherClient.keyFile) },
      "mtls.stranger 1 1700000000\n",
    );
    await sendLines(p.port, "mtls.plaintext 1 1700000000\n").catch(() => {});
    // (A TLS 1.3 client finishes its side of the handshake before the
    // server has checked its certificate: it may see a clean close. What it
    // sent never arrives, below, and each refusal is counted.)
    console.info(`[tls-in] refused clients saw: ${refusedNone}, ${refusedOther}`);

    keep.end(`${node.slice(50).join("\n")}\n`);
    const all = [...good, ...node];
    await waitFor(
      "the accepted clients' datapoints",
      () => (out.lines.length >= all.length ? true : undefined),
      20_000,
    );
    const s = await waitForStats(
      p,
      (x) =>
        plain(x).tlsRejectedBy!.client_cert_refused === 2 &&
        plain(x).tlsRejectedBy!.not_tls === 1 &&
        plain(x).accepted === all.length,
    );
    await new Promise((r) => setTimeout(r, 300));
    expect(out.lines.sort()).toEqual([...all].sort());
    expect(plain(s)).toMatchObject({ transport: "tls", accepted: all.length, rejected: 0 });
    expect(s.datapoints.rejected).toBe(0);
    // Each refusal is in the log with its reason and why.
    const refusals = p.logs
      .filter((l) => l["reason"] === "client_cert_refused")
      .map((l) => String(l["detail"]));
    expect(refusals.some((d) => d === "no client certificate" || /refused/.test(d))).toBe(true);
    const metrics = (await p.get("/metrics")).body;
    expect(metrics).toMatch(
      /polymur_listener_tls_rejected_total\{listener="plaintext",reason="client_cert_refused"\} 2/,
    );
    expect(metrics).toMatch(
      /polymur_listener_accepted_total\{listener="plaintext",protocol="plaintext",transport="tls"\} 200/,
    );
  });
});

describe("TLS listeners: hostile handshakes, pickle, rotation", () => {
  it("a client that never finishes its handshake is closed at --tls-handshake-timeout and counted; others go on", async () => {
    const out = await sink();
    const p = await relay(
      tlsArgs(["--destinations", out.address, "--tls-handshake-timeout", "1", "--workers", "1"]),
    );
    // Half a ClientHello, then silence.
    const stall = net.connect(p.port, "127.0.0.1");
    stall.on("error", () => {});
    await new Promise((r) => stall.once("connect", r));
    stall.write(Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00]));
    const closed = new Promise<void>((r) => stall.once("close", () => r()));
    const lines = datapoints("tls.in.meanwhile", 1_000);
    await sendTls(p.port, `${lines.join("\n")}\n`);
    await closed;
    const s = await waitForStats(p, (x) => plain(x).tlsRejectedBy!.handshake_timeout === 1);
    await waitFor("the other sender's datapoints", () =>
      out.lines.length >= lines.length ? true : undefined,
    );
    expect(out.lines).toHaveLength(lines.length);
    expect(plain(s).connections).toBe(0);
  });

  it("carbon's pickle over TLS (--pickle-addr with --tls-cert): every datapoint arrives", async () => {
    const out = await sink();
    const p = await relay(tlsArgs(["--destinations", out.address, "--pickle-addr", "127.0.0.1:0"]));
    const lines = datapoints("tls.in.pickle", 2_000);
    const { bytes, skipped } = encodePickleFrames(Buffer.from(`${lines.join("\n")}\n`));
    expect(skipped).toBe(0);
    await sendTls(p.picklePort!, bytes);
    await waitFor("every pickled datapoint", () =>
      out.lines.length >= lines.length ? true : undefined,
    );
    // Every process takes pickle connections; the workers report once a second.
    const s = await waitForStats(
      p,
      (x) => x.listeners.find((l) => l.name === "pickle")?.accepted === lines.length,
    );
    const row = s.listeners.find((l) => l.name === "pickle")!;
    expect(row).toMatchObject({
      protocol: "pickle",
      transport: "tls",
      accepted: lines.length,
      rejected: 0,
    });
    expect(out.lines).toHaveLength(lines.length);
  });

  it("serves a rotated certificate to new connections without a restart; open connections keep going", async () => {
    const dir = mkdtempSync(join(tmpdir(), "polymur-tls-rotate-"));
    done.push(() => rmSync(dir, { recursive: true, force: true }));
    const cert = join(dir, "cert.pem");
    const key = join(dir, "key.pem");
    copyFileSync(pki.certFile, cert);
    copyFileSync(pki.keyFile, key);
    const out = await sink();
    const p = await relay(["--tls-cert", cert, "--tls-key", key, "--destinations", out.address]);
    const serial = (): Promise<string> =>
      new Promise((resolve, reject) => {
        const s = tls.connect({
          port: p.port,
          host: "127.0.0.1",
          ca: pki.ca,
          servername: "localhost",
        });
        s.once("secureConnect", () => {
          resolve(s.getPeerCertificate().serialNumber);
          s.end();
        });
        s.once("error", reject);
      });
    const before = await serial();
    const open = tls.connect({
      port: p.port,
      host: "127.0.0.1",
      ca: pki.ca,
      servername: "localhost",
    });
    open.on("error", () => {});
    await new Promise<void>((r) => open.once("secureConnect", () => r()));
    // A new certificate and key from the same CA, written over the old files.
    const ossl = (...args: string[]) => execFileSync("openssl", args, { cwd: dir, stdio: "pipe" });
    ossl(
      "req",
      "-newkey",
      "ec",
      "-pkeyopt",
      "ec_paramgen_curve:prime256v1",
      "-nodes",
      "-keyout",
      "new.key",
      "-out",
      "new.csr",
      "-subj",
      "/CN=localhost",
    );
    writeFileSync(join(dir, "ext.cnf"), "subjectAltName=DNS:localhost,IP:127.0.0.1\n");
    ossl(
      "x509",
      "-req",
      "-in",
      "new.csr",
      "-CA",
      pki.caFile,
      "-CAkey",
      join(pki.dir, "ca.key"),
      "-CAcreateserial",
      "-out",
      "new.pem",
      "-days",
      "1",
      "-extfile",
      "ext.cnf",
    );
    copyFileSync(join(dir, "new.key"), key);
    copyFileSync(join(dir, "new.pem"), cert);
    const after = await waitFor(
      "the new certificate served",
      async () => {
        const s = await serial();
        return s !== before ? s : undefined;
      },
      20_000,
      200,
    );
    expect(after).not.toBe(before);
    expect(p.logs.some((l) => /TLS certificate reloaded/.test(l.msg))).toBe(true);
    // The connection opened before the rotation still delivers.
    open.end("tls.in.rotated 1 1700000000\n");
    await waitFor("the open connection's datapoint", () =>
      out.lines.includes("tls.in.rotated 1 1700000000") ? true : undefined,
    );
  });
});
