// TLS to destinations end to end, against real peers:
// * a polymur relay (default worker count: every process connects) with
//   `--destinations tls://…` into a real carbon-c-relay 3.7.3 listening with
//   `transport plain ssl` (its server certificate and key in one PEM), which
//   forwards in plaintext to a LineSink: every datapoint arrives, exactly;
//   and the same relay given a CA that did not sign carbon-c-relay's
//   certificate sends nothing and says why;
// * a managed relay whose destination comes from `polymurctl dest add
//   tls://…`, into a Node TLS server asking for a client certificate (mutual
//   TLS, which carbon-c-relay 3.7.3 cannot ask for).
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import net from "node:net";
import { availableParallelism, tmpdir } from "node:os";
import { join } from "node:path";
import tls from "node:tls";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { ControlPlaneProcess, NODE_TOKEN, runCtl } from "../fixtures/control-plane.ts";
import { freePort, LineSink, sendLines } from "../fixtures/line-sink.ts";
import { PolymurProcess, waitForStats } from "../fixtures/polymur.ts";
import { ccrBinary } from "../fixtures/references.ts";
import { skipUnlessAvailable } from "../fixtures/requires.ts";
import { createTestPki, type TestPki } from "../fixtures/tls.ts";
import { waitFor } from "../fixtures/until.ts";

let pki: TestPki;
beforeAll(() => {
  pki = createTestPki();
});
afterAll(() => pki.close());

const done: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  while (done.length > 0) await done.pop()!();
});

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(port, "127.0.0.1");
    s.once("connect", () => {
      s.destroy();
      resolve(true);
    });
    s.once("error", () => resolve(false));
  });
}

/**
 * carbon-c-relay with a TLS linemode listener on a free port (the test PKI's
 * server certificate: localhost and 127.0.0.1), forwarding everything to
 * `sinkPort` in plaintext.
 */
async function startCcrTls(sinkPort: number): Promise<{ port: number; stderr: () => string }> {
  const dir = await mkdtemp(join(tmpdir(), "polymur-tls-out-ccr-"));
  done.push(() => rm(dir, { recursive: true, force: true }));
  const port = await freePort();
  const conf = join(dir, "relay.conf");
  await writeFile(
    conf,
    [
      `listen type linemode transport plain ssl ${pki.combinedFile} 127.0.0.1:${port} proto tcp ;`,
      "statistics submit every 900 seconds ;",
      `cluster sink forward 127.0.0.1:${sinkPort} ;`,
      "match * send to sink ;",
      "",
    ].join("\n"),
  );
  const relay: ChildProcess = spawn(ccrBinary!, ["-f", conf, "-w", "1"], {
    stdio: ["ignore", "ignore", "pipe"],
  });
  let stderr = "";
  relay.stderr!.on("data", (c: Buffer) => {
    stderr += c.toString();
  });
  done.push(async () => {
    if (relay.exitCode !== null || relay.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => relay.once("exit", () => resolve()));
    relay.kill("SIGKILL");
    await exited;
  });
  await waitFor(
    "carbon-c-relay listening",
    async () => ((await canConnect(port)) ? true : undefined),
    20_000,
    50,
  ).catch((err: unknown) => {
    throw new Error(`${String(err)}; stderr: ${stderr}`);
  });
  return { port, stderr: () => stderr };
}

/** `n` datapoints with distinct names, values and timestamps, as lines without newline. */
function datapoints(prefix: string, n: number): string[] {
  const t0 = Math.floor(Date.now() / 1000) - 3_600;
  return Array.from({ length: n }, (_, i) => `${prefix}.m${i % 50}.x${i} ${i / 4} ${t0 + i}`);
}

describe.skipIf(skipUnlessAvailable("carbon-c-relay", ccrBinary !== undefined))(
  "tls:// destination into a real carbon-c-relay 3.7.3 TLS listener",
  () => {
    it("delivers every datapoint, exactly", async () => {
      const sink = await LineSink.start();
      done.push(() => sink.close());
      const ccr = await startCcrTls(sink.port);
      const dest = `tls://127.0.0.1:${ccr.port}`;
      const p = await PolymurProcess.relay([
        "--destinations",
        dest,
        "--destination-tls-ca",
        pki.caFile,
      ]);
      done.push(() => p.stop());
      const lines = datapoints("tls.out", 20_000);
      // Several connections, so that several worker processes take some.
      for (let i = 0; i < 4; i++) {
        await sendLines(p.port, `${lines.slice(i * 5_000, (i + 1) * 5_000).join("\n")}\n`);
      }
      const mine = (): string[] => sink.lines.filter((l) => l.startsWith("tls.out."));
      await waitFor(
        "every datapoint through carbon-c-relay",
        () => (mine().length >= lines.length ? true : undefined),
        30_000,
        50,
      ).catch((err: unknown) => {
        throw new Error(`${String(err)}; got ${mine().length}; ccr: ${ccr.stderr()}`);
      });
      // A moment for anything extra (a duplicate) to show.
      await new Promise((r) => setTimeout(r, 300));
      expect(mine().sort()).toEqual([...lines].sort());
      const stats = await waitForStats(p, (s) => s.destinations[0]?.forwarded === lines.length);
      expect(stats.destinations[0]).toMatchObject({
        spec: dest,
        forwarded: lines.length,
        dropped: 0,
        failures: 0,
        queuedLines: 0,
      });
      // Every process that ran (the primary, and the workers the load
      // started: at this rate, most likely none) connected with the settings
      // it was sent, none failed.
      const connects = stats.destinations[0]!.connects;
      expect(connects).toBeGreaterThanOrEqual(1);
      expect(connects).toBeLessThanOrEqual(availableParallelism());
    });

    it("refuses carbon-c-relay's certificate when the CA did not sign it: nothing sent, the reason in /stats", async () => {
      const sink = await LineSink.start();
      done.push(() => sink.close());
      const ccr = await startCcrTls(sink.port);
      const p = await PolymurProcess.relay([
        "--destinations",
        `tls://127.0.0.1:${ccr.port}`,
        "--destination-tls-ca",
        pki.otherCaFile,
        "--workers",
        "1",
        // What it holds cannot be delivered: no drain at the end.
        "--shutdown-timeout",
        "0.5",
      ]);
      done.push(() => p.stop());
      await sendLines(p.port, `${datapoints("tls.refused", 10).join("\n")}\n`);
      const stats = await waitForStats(p, (s) => (s.destinations[0]?.failures ?? 0) >= 3);
      expect(stats.destinations[0]!.connects).toBe(0);
      expect(stats.destinations[0]!.forwarded).toBe(0);
      expect(stats.destinations[0]!.lastError).toMatch(/unable to (verify|get local issuer)/);
      expect(sink.lines.filter((l) => l.startsWith("tls.refused."))).toEqual([]);
    });
  },
);

/** A Node TLS server requiring a client certificate signed by the test CA; keeps the lines it gets. */
async function mutualTlsSink(): Promise<{ port: number; lines: string[]; clients: string[] }> {
  const [key, cert, ca] = await Promise.all([
    readFile(pki.keyFile),
    readFile(pki.certFile),
    readFile(pki.caFile),
  ]);
  const out = { port: 0, lines: [] as string[], clients: [] as string[] };
  const sockets = new Set<tls.TLSSocket>();
  const server = tls.createServer(
    { key, cert, ca, requestCert: true, rejectUnauthorized: true },
    (s) => {
      sockets.add(s);
      const cn = s.getPeerCertificate().subject?.CN;
      out.clients.push(typeof cn === "string" ? cn : "");
      let partial = "";
      s.setEncoding("utf8");
      s.on("data", (d: string) => {
        const parts = (partial + d).split("\n");
        partial = parts.pop() ?? "";
        out.lines.push(...parts);
      });
      s.on("error", () => {});
      s.on("close", () => sockets.delete(s));
    },
  );
  server.on("tlsClientError", () => {});
  out.port = await freePort();
  await new Promise<void>((r) => server.listen(out.port, "127.0.0.1", r));
  done.push(
    () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  );
  return out;
}

describe("a managed relay's tls:// destination from polymurctl dest add", () => {
  it("reaches a mutual-TLS sink with the relay's client certificate", async () => {
    const stateDir = await mkdtemp(join(tmpdir(), "polymur-tls-out-cp-"));
    done.push(() => rm(stateDir, { recursive: true, force: true }));
    const cp = await ControlPlaneProcess.start(["--state-dir", stateDir]);
    done.push(() => cp.stop());
    const sink = await mutualTlsSink();
    const dest = `tls://localhost:${sink.port}`;
    const added = await waitFor(
      "polymurctl dest add",
      async () => {
        const r = await runCtl(cp.url, ["dest", "add", dest, "--all"]);
        return r.code === 0 ? r : undefined;
      },
      20_000,
      200,
    );
    expect(added.code).toBe(0);
    const ls = await runCtl(cp.url, ["dest", "ls"]);
    expect(ls.stdout).toContain(dest);

    const relay = await PolymurProcess.relay(
      [
        "--control-plane",
        cp.url,
        "--group",
        "edge",
        "--destination-tls-ca",
        pki.caFile,
        "--destination-tls-cert",
        pki.client.certFile,
        "--destination-tls-key",
        pki.client.keyFile,
      ],
      { POLYMUR_NODE_TOKEN: NODE_TOKEN },
    );
    done.push(() => relay.stop());
    const lines = datapoints("tls.managed", 2_000);
    await sendLines(relay.port, `${lines.join("\n")}\n`);
    await waitFor(
      "every datapoint at the mutual-TLS sink",
      () => (sink.lines.length >= lines.length ? true : undefined),
      30_000,
      50,
    );
    expect([...sink.lines].sort()).toEqual([...lines].sort());
    expect(new Set(sink.clients)).toEqual(new Set(["polymur test client"]));
    // The worker processes report their counters once a second.
    const stats = await waitForStats(
      relay,
      (x) => x.destinations.find((y) => y.spec === dest)?.forwarded === lines.length,
    ).catch((err: Error) => {
      throw new Error(`${err.message}\nrelay log: ${relay.stdout.slice(-3000)}`);
    });
    const d = stats.destinations.find((x) => x.spec === dest);
    expect(d).toMatchObject({ forwarded: lines.length, failures: 0, dropped: 0 });
  });
});
