// The proxy → gateway link with real processes on 127.0.0.1: every datapoint
// is counted at the far end, through link cuts, dead paths, gateway and
// proxy restarts; wrong, deleted and rotated keys; malformed batches; and
// the Go polymur-proxy's HTTP/1.1 protocol on the same listener.
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { writeFileSync } from "node:fs";
import http from "node:http";
import http2 from "node:http2";
import https from "node:https";
import { gzipSync, zstdCompressSync } from "node:zlib";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import type { ProxyStats } from "../../dataplane/link/proxy/proxy-stats.ts";
import {
  Health,
  HealthCheckResponse_ServingStatus as ServingStatus,
} from "../../gen/grpc/health/v1/health_pb.ts";
import {
  Compression,
  IngestService,
  type StreamRequestSchema,
  type StreamResponse,
} from "../../gen/polymur/ingest/v1/ingest_pb.ts";
import { startCarbonCache } from "../fixtures/carbon.ts";
import {
  adminClient,
  ControlPlaneProcess,
  NODE_TOKEN,
  retrying,
} from "../fixtures/control-plane.ts";
import { freePort, LineSink, sendLines } from "../fixtures/line-sink.ts";
import type { PolymurProcess } from "../fixtures/polymur.ts";
import {
  Feeder,
  startGateway,
  startProxy,
  TempDir,
  waitForDistinct,
} from "../fixtures/proxy-gateway.ts";
import { TcpProxy } from "../fixtures/tcp-proxy.ts";
import { createTestPki } from "../fixtures/tls.ts";

const KEY = "product-A";
const SECRET = "s3cret-product-A-0123456789";

const procs: PolymurProcess[] = [];
const cleanups: Array<() => Promise<unknown>> = [];
const pids: number[] = [];

afterEach(async () => {
  // Proxies first (they would wait for a gateway), then gateways, then the rest.
  const all = procs.splice(0);
  const isProxy = (p: PolymurProcess): boolean => p.child.spawnargs.includes("proxy");
  await Promise.all(all.filter(isProxy).map((p) => p.stop()));
  await Promise.all(all.filter((p) => !isProxy(p)).map((p) => p.stop()));
  while (cleanups.length > 0) await cleanups.pop()!();
});

afterAll(async () => {
  const ps = await new Promise<string>((resolve, reject) =>
    execFile("ps", ["-eo", "pid"], (err, out) => (err ? reject(err) : resolve(out))),
  );
  const alive = ps.split("\n").map((s) => Number(s.trim()));
  expect(pids.filter((p) => alive.includes(p))).toEqual([]);
});

function track(p: PolymurProcess): PolymurProcess {
  procs.push(p);
  if (p.child.pid !== undefined) pids.push(p.child.pid);
  return p;
}

async function gateway(args: string[], env: NodeJS.ProcessEnv = {}): Promise<PolymurProcess> {
  return track(await startGateway(args, env));
}

async function proxy(
  gw: string,
  args: string[] = [],
  secret = SECRET,
  env: NodeJS.ProcessEnv = {},
): Promise<PolymurProcess> {
  return track(await startProxy(gw, secret, args, env));
}

async function sink(port = 0): Promise<LineSink> {
  const s = await LineSink.start(port);
  cleanups.push(() => s.close());
  return s;
}

function tmp(): TempDir {
  const t = new TempDir();
  cleanups.push(async () => t.close());
  return t;
}

function keysFile(t: TempDir, text = `${KEY} ${SECRET}\n`): string {
  return t.file("keys", text);
}

/** `<tag>.m<i % 50> <i> 1700000000` for i in 0..n-1, as one string. */
function numbered(tag: string, n: number): string {
  const out: string[] = [];
  for (let i = 0; i < n; i++) out.push(`${tag}.m${i % 50} ${i} 1700000000\n`);
  return out.join("");
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * /stats of a proxy or a gateway (the part each has). Both run one process
 * per core by default: their worker processes report counters to the
 * primary once a second, so a test polls (`until`) for counts that may come
 * from a worker, then checks them exactly.
 */
interface NodeStats {
  received: number;
  proxy: ProxyStats;
  gateway: {
    keys: Record<string, { streams: number; lines: number; duplicates: number }>;
    rejectedBatches: Record<string, number>;
    authFailures: { stream: number; legacy: number };
    streamsCut: { key_revoked: number; shutdown: number };
    clients: Record<string, { lines: number }>;
    legacyRequests: Record<string, number>;
  };
}

async function stats(p: PolymurProcess): Promise<NodeStats> {
  const res = await fetch(`http://127.0.0.1:${p.statsPort}/stats`);
  return (await res.json()) as NodeStats;
}

async function until<T>(f: () => Promise<T>, pred: (v: T) => boolean, ms = 20_000): Promise<T> {
  const t0 = Date.now();
  for (;;) {
    const v = await f();
    if (pred(v)) return v;
    if (Date.now() - t0 > ms)
      throw new Error(`condition not met in ${ms} ms: ${JSON.stringify(v).slice(0, 2000)}`);
    await sleep(50);
  }
}

/** Every live process of a proxy has its stream to a gateway open (and has reported so). */
function allLinksOpen(s: NodeStats): boolean {
  const live = s["proxy"].processes.filter((p) => p.alive).length;
  return live > 0 && s["proxy"].linksOpen === live;
}

// ---------------------------------------------------------------------------

describe("gateway health", () => {
  it("answers the gRPC health checking protocol on the proxy listener, NOT_SERVING once stopping", async () => {
    const t = tmp();
    const out = await sink();
    const gw = await gateway(["--keys-file", keysFile(t), "--destinations", out.address]);
    const health = createClient(
      Health,
      createGrpcTransport({ baseUrl: `http://127.0.0.1:${gw.port}` }),
    );
    expect((await health.check({ service: "" })).status).toBe(ServingStatus.SERVING);
    expect((await health.check({ service: "polymur.ingest.v1.IngestService" })).status).toBe(
      ServingStatus.SERVING,
    );
    await expect(health.check({ service: "nope" })).rejects.toThrow(/not_found|NotFound/i);
    const watch = health.watch({ service: "" });
    const seen: number[] = [];
    const done = (async () => {
      try {
        for await (const r of watch) seen.push(r.status);
      } catch {}
    })();
    await until(
      async () => seen.length,
      (n) => n >= 1,
    );
    gw.kill("SIGTERM");
    await done;
    expect(seen).toEqual([ServingStatus.SERVING, ServingStatus.NOT_SERVING]);
  });
});

describe("proxy → gateway over cleartext HTTP/2", () => {
  it("delivers every datapoint, prefixed with the key's name", async () => {
    const t = tmp();
    const out = await sink();
    const gw = await gateway([
      "--keys-file",
      keysFile(t),
      "--destinations",
      out.address,
      "--key-prefix",
    ]);
    const px = await proxy(`http://127.0.0.1:${gw.port}`);
    const f = await Feeder.start(px.port, "basic", 500);
    await sleep(500);
    const n = await f.stop();
    const r = await waitForDistinct(out, "basic", n);
    expect(r.duplicates).toBe(0);
    expect(out.lines.every((l) => l.startsWith(`${KEY}.basic.m`))).toBe(true);
    const s = await until(
      () => stats(px),
      (s) => s["proxy"].pendingBatches === 0 && s["proxy"].link.linesAcked >= n,
    );
    expect(s["proxy"].link.linesAcked).toBe(n);
    expect(s["proxy"].payloadBytes).toBeLessThan(s["proxy"].rawBytes / 2);
    const g = await until(
      () => stats(gw),
      (g) => (g["gateway"].keys[KEY]?.lines ?? 0) >= n,
    );
    expect(g["gateway"].keys[KEY]?.lines).toBe(n);
  });

  it("survives the link being cut and restored mid-stream: nothing lost", async () => {
    const t = tmp();
    const out = await sink();
    const gw = await gateway(["--keys-file", keysFile(t), "--destinations", out.address]);
    const path = await TcpProxy.start(gw.port);
    cleanups.push(() => path.close());
    const px = await proxy(`http://127.0.0.1:${path.port}`);
    const f = await Feeder.start(px.port, "cut", 300);
    await sleep(400);
    path.cut(); // reset every connection, refuse new ones
    await sleep(700);
    path.restore();
    await sleep(400);
    path.cut(false); // and once more, reconnecting at once
    await sleep(400);
    const n = await f.stop();
    const r = await waitForDistinct(out, "cut", n);
    const s = await until(
      () => stats(px),
      (s) => s["proxy"].pendingBatches === 0 && s["proxy"].link.linesAcked >= n,
    );
    expect(s["proxy"].link.failures).toBeGreaterThanOrEqual(2);
    // Duplicates only for batches queued whose Ack the cut swallowed.
    const g = await until(
      () => stats(gw),
      (g) => (g["gateway"].keys[KEY]?.lines ?? 0) >= n,
    );
    expect(r.duplicates).toBe(0); // the gateway recognised every resend
    expect(s["proxy"].link.batchesResent).toBeGreaterThanOrEqual(
      g["gateway"].keys[KEY]?.duplicates ?? 0,
    );
  });

  it("notices a dead path by keepalive pings and resends on a new connection", async () => {
    const t = tmp();
    const out = await sink();
    const gw = await gateway(["--keys-file", keysFile(t), "--destinations", out.address]);
    const path = await TcpProxy.start(gw.port);
    cleanups.push(() => path.close());
    const px = await proxy(`http://127.0.0.1:${path.port}`, [
      "--ping-interval",
      "300ms",
      "--ping-timeout",
      "300ms",
    ]);
    const f = await Feeder.start(px.port, "dead", 200);
    await sleep(300);
    path.blackhole(); // bytes vanish, connections stay up
    await px.waitForLog((l) => String(l.msg).includes("failed"), 10_000);
    path.cut(false); // drop the black-holed connections
    path.restore();
    await sleep(300);
    const n = await f.stop();
    const r = await waitForDistinct(out, "dead", n);
    expect(r.duplicates).toBe(0);
  });

  it("rotates through its list of gateways when one goes away", async () => {
    const t = tmp();
    const out = await sink();
    const keys = keysFile(t);
    const dead = await freePort(); // nobody listens there
    const a = await gateway(["--keys-file", keys, "--destinations", out.address]);
    const b = await gateway(["--keys-file", keys, "--destinations", out.address]);
    const list = [dead, a.port, b.port].map((p) => `http://127.0.0.1:${p}`).join(",");
    const px = await proxy(list);
    const f = await Feeder.start(px.port, "rotate", 300);
    const urlA = `http://127.0.0.1:${a.port}`;
    const urlB = `http://127.0.0.1:${b.port}`;
    // The dead one first, then a (or, on a loaded machine where a was slow to
    // answer, already b): wait for a live link rather than guess a time.
    const on = await until(
      () => stats(px),
      (s) => s["proxy"].link.state === "open" && [urlA, urlB].includes(s["proxy"].link.gateway),
    );
    const [current, other] = on["proxy"].link.gateway === urlA ? [a, b] : [b, a];
    await current.stop(); // the proxy moves on to the other (after trying the dead one again)
    const otherUrl = `http://127.0.0.1:${other.port}`;
    await until(
      () => stats(px),
      (s) => s["proxy"].link.state === "open" && s["proxy"].link.gateway === otherUrl,
    );
    await sleep(300);
    const n = await f.stop();
    const r = await waitForDistinct(out, "rotate", n);
    const s = await stats(px);
    expect(s["proxy"].link.gateway).toBe(otherUrl);
    // The other gateway cannot know what the stopped one queued: batches whose
    // Ack its shutdown swallowed are queued again. At most the batches resent,
    // never a gap.
    expect(r.duplicates).toBeLessThanOrEqual(s["proxy"].link.batchesResent * 10_000);
    await until(
      () => stats(other),
      (g) => (g["gateway"].keys[KEY]?.lines ?? 0) > 0,
    );
  });

  it("loses nothing when the gateway restarts mid-stream", async () => {
    const t = tmp();
    const out = await sink();
    const port = await freePort();
    const args = [
      "--keys-file",
      keysFile(t),
      "--destinations",
      out.address,
      "--listen-addr",
      `127.0.0.1:${port}`,
    ];
    let gw = await gateway(args);
    const px = await proxy(`http://127.0.0.1:${port}`);
    const f = await Feeder.start(px.port, "gwrestart", 300);
    await sleep(500);
    await gw.stop();
    await sleep(300);
    gw = await gateway(args);
    await sleep(500);
    const n = await f.stop();
    const r = await waitForDistinct(out, "gwrestart", n);
    // A batch queued by the old gateway whose Ack was lost in the shutdown is
    // resent to the new one, which cannot know it: the only duplicates.
    const s = await until(
      () => stats(px),
      (s) => s["proxy"].pendingBatches === 0 && s["proxy"].link.linesAcked >= n,
    );
    expect(r.duplicates).toBeLessThanOrEqual(s["proxy"].link.batchesResent * 10_000);
    console.info(
      `[gateway restart] ${n} datapoints, ${r.duplicates} duplicates, ${s["proxy"].link.batchesResent} batches resent`,
    );
  });
});

describe("proxy spool and backpressure", () => {
  it("keeps batches across kill -9 of the proxy with a spool, and sends them after the restart", async () => {
    const t = tmp();
    const out = await sink();
    const gwPort = await freePort();
    const gwUrl = `http://127.0.0.1:${gwPort}`;
    const spool = ["--spool-dir", t.path("spool")];
    let px = await proxy(gwUrl, spool); // the gateway is not there yet
    const id = (await stats(px))["proxy"].proxyId as string;
    const n = 20_000;
    await sendLines(px.port, numbered("spool", n));
    await until(
      () => stats(px),
      (s) => s["proxy"].pendingLines === n,
    );
    px.kill("SIGKILL");
    await px.exited();
    px = await proxy(gwUrl, spool);
    expect((await stats(px))["proxy"].proxyId).toBe(id);
    expect((await stats(px))["proxy"].pendingLines).toBe(n);
    // A graceful stop keeps them too, and says so.
    await px.stop();
    expect(px.logs.some((l) => String(l.msg).includes("kept in the spool"))).toBe(true);
    px = await proxy(gwUrl, spool);
    await gateway([
      "--keys-file",
      keysFile(t),
      "--destinations",
      out.address,
      "--listen-addr",
      `127.0.0.1:${gwPort}`,
    ]);
    const r = await waitForDistinct(out, "spool", n);
    expect(r.duplicates).toBe(0);
    await until(
      () => stats(px),
      (s) => s["proxy"].pendingBatches === 0 && s["proxy"].spoolBytes === 0,
    );
  });

  it("stops reading from senders when its buffer is full, and loses nothing", async () => {
    const t = tmp();
    const out = await sink();
    const gwPort = await freePort();
    const px = await proxy(`http://127.0.0.1:${gwPort}`, [
      "--buffer-size",
      "1MiB",
      "--batch-size",
      "256KiB",
      "--compression",
      "none",
    ]);
    const n = 200_000; // 6 MB of lines against a 1 MiB buffer
    const sending = sendLines(px.port, numbered("full", n));
    const held = await until(
      () => stats(px),
      (s) => s["proxy"].held === true,
    );
    // Each process holds its share of --buffer-size (1 MiB at least), and may
    // pass it by the batch being cut when it fills.
    const processes = (held["proxy"].processes as unknown[]).length;
    expect(processes).toBeGreaterThan(0);
    expect(held["proxy"].memoryBytes).toBeLessThan(processes * (1024 + 256) * 1024);
    await gateway([
      "--keys-file",
      keysFile(t),
      "--destinations",
      out.address,
      "--listen-addr",
      `127.0.0.1:${gwPort}`,
    ]);
    await sending;
    const r = await waitForDistinct(out, "full", n);
    expect(r.duplicates).toBe(0);
  });
});

describe("API keys", () => {
  it("an unknown key: the proxy exits 2 with a one-line reason", async () => {
    const t = tmp();
    const gw = await gateway(["--keys-file", keysFile(t)]);
    const px = await proxy(`http://127.0.0.1:${gw.port}`, [], "not-a-known-key-000000");
    expect(await px.exited()).toBe(2);
    const lines = px.stderr.trim().split("\n");
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(
      /^polymur proxy: POLYMUR_ERR_AUTH: gateway .* does not accept the API key .*unknown API key/,
    );
    expect(px.stdout).not.toContain("not-a-known-key");
    await until(
      () => stats(gw),
      (g) => g["gateway"].authFailures.stream >= 1,
    );
  });

  it("a deleted key cuts its streams within seconds; other keys carry on", async () => {
    const t = tmp();
    const out = await sink();
    const other = "other-key-secret-0123456789";
    const file = keysFile(t, `${KEY} ${SECRET}\nteam-B ${other}\n`);
    const gw = await gateway(["--keys-file", file, "--destinations", out.address]);
    const a = await proxy(`http://127.0.0.1:${gw.port}`);
    const b = await proxy(`http://127.0.0.1:${gw.port}`, [], other);
    // Every process of the proxy streams on its own: one stream each to cut.
    const { processes } = (await until(() => stats(a), allLinksOpen))["proxy"];
    await b.waitForLog((l) => String(l.msg).startsWith("connected to gateway"));
    const t0 = Date.now();
    writeFileSync(file, `team-B ${other}\n`);
    expect(await a.exited()).toBe(2);
    expect(Date.now() - t0).toBeLessThan(5_000);
    expect(a.stderr).toMatch(/API key revoked/);
    await sendLines(b.port, numbered("teamb", 1000));
    await waitForDistinct(out, "teamb", 1000);
    const g = await until(
      () => stats(gw),
      (g) => g["gateway"].streamsCut.key_revoked >= processes.length,
    );
    expect(g["gateway"].streamsCut.key_revoked).toBe(processes.length);
  });

  it("a rotated key cuts streams using the old secret; the new secret connects", async () => {
    const t = tmp();
    const out = await sink();
    const file = keysFile(t);
    const gw = await gateway(["--keys-file", file, "--destinations", out.address]);
    const old = await proxy(`http://127.0.0.1:${gw.port}`);
    await old.waitForLog((l) => String(l.msg).startsWith("connected to gateway"));
    const rotated = "rotated-secret-for-product-A-42";
    // Digest form: the gateway never needs the secret itself.
    const digest = createHash("sha256").update(rotated).digest("hex");
    writeFileSync(file, `${KEY} sha256:${digest}\n`);
    expect(await old.exited()).toBe(2);
    const fresh = await proxy(`http://127.0.0.1:${gw.port}`, [], rotated);
    await sendLines(fresh.port, numbered("rotated", 500));
    await waitForDistinct(out, "rotated", 500);
  });
});

type RequestInit = MessageInitShape<typeof StreamRequestSchema>;

/** A hand-driven IngestService.Stream client: send what a broken proxy would. */
class RawStream {
  readonly responses: StreamResponse[] = [];
  readonly ended: Promise<ConnectError | null>;
  readonly #queue: RequestInit[] = [];
  #wake: (() => void) | null = null;
  #closed = false;

  constructor(url: string, secret: string) {
    const client = createClient(IngestService, createGrpcTransport({ baseUrl: url }));
    const self = this;
    async function* requests(): AsyncGenerator<RequestInit> {
      for (;;) {
        const next = self.#queue.shift();
        if (next !== undefined) {
          yield next;
          continue;
        }
        if (self.#closed) return;
        await new Promise<void>((r) => {
          self.#wake = r;
        });
      }
    }
    this.ended = (async () => {
      try {
        for await (const r of client.stream(requests(), {
          headers: { authorization: `Bearer ${secret}` },
        })) {
          this.responses.push(r);
        }
        return null;
      } catch (err) {
        return ConnectError.from(err);
      }
    })();
  }

  send(req: RequestInit): void {
    this.#queue.push(req);
    this.#wake?.();
  }

  batch(seq: number, payload: Uint8Array, over: Partial<Record<string, unknown>> = {}): void {
    this.send({
      msg: {
        case: "batch",
        value: { seq: BigInt(seq), compression: Compression.NONE, payload, ...over },
      },
    });
  }

  close(): void {
    this.#closed = true;
    this.#wake?.();
  }

  async waitFor(n: number, ms = 10_000): Promise<StreamResponse[]> {
    const t0 = Date.now();
    while (this.responses.length < n) {
      if (Date.now() - t0 > ms) {
        throw new Error(
          `${this.responses.length} of ${n} responses: ${JSON.stringify(this.responses.map((r) => r.msg))}`,
        );
      }
      await sleep(20);
    }
    return this.responses;
  }
}

function lines(tag: string, from: number, n: number): Buffer {
  return Buffer.from(
    numbered(tag, from + n)
      .split("\n")
      .slice(from, from + n)
      .join("\n") + "\n",
  );
}

function summary(r: StreamResponse): string {
  switch (r.msg.case) {
    case "welcome":
      return `welcome ${r.msg.value.keyName} ${r.msg.value.ackedSeq}`;
    case "ack":
      return `ack ${r.msg.value.seq}`;
    case "reject":
      return `reject ${r.msg.value.seq} ${r.msg.value.reason.split(":")[0]}`;
    default:
      return "?";
  }
}

describe("malformed batches", () => {
  it("rejects each with a reason, keeps the stream, queues nothing twice", async () => {
    const t = tmp();
    const out = await sink();
    const gw = await gateway([
      "--keys-file",
      keysFile(t),
      "--destinations",
      out.address,
      "--max-batch-bytes",
      "64KiB",
    ]);
    const url = `http://127.0.0.1:${gw.port}`;
    // A well-behaved proxy on the same gateway all along, its batches within
    // the gateway's --max-batch-bytes even when its lines come in bursts (a
    // batch holds up to --batch-size, 1MiB by default, or 200 ms of lines).
    const px = await proxy(url, ["--batch-size", "32KiB"]);
    const f = await Feeder.start(px.port, "bystander", 100);
    const s = new RawStream(url, SECRET);
    s.send({ msg: { case: "hello", value: { proxyId: "raw-1" } } });
    const good = lines("raw", 0, 10);
    const zgood = zstdCompressSync(good);
    s.batch(1, zgood, { compression: Compression.ZSTD, lines: 10, rawBytes: good.length });
    s.batch(2, Buffer.from("not zstd at all"), {
      compression: Compression.ZSTD,
      lines: 1,
      rawBytes: 16,
    });
    s.batch(3, good, { lines: 10, rawBytes: good.length - 1 }); // size mismatch
    s.batch(4, good.subarray(0, good.length - 5), { lines: 10, rawBytes: good.length - 5 }); // cut mid-line
    s.batch(5, good, { lines: 11, rawBytes: good.length }); // line count mismatch
    const big = Buffer.alloc(100 * 1024, 0x61);
    s.batch(6, big, { lines: 1, rawBytes: big.length }); // over --max-batch-bytes
    // A decompression bomb: 64 MiB of zeros in a few KiB, claiming to be small.
    const bomb = zstdCompressSync(Buffer.alloc(64 * 1024 * 1024));
    s.batch(7, bomb, { compression: Compression.ZSTD, lines: 1, rawBytes: 100 });
    s.batch(8, good, { compression: Compression.UNSPECIFIED, lines: 10, rawBytes: good.length });
    const second = lines("raw", 10, 10);
    s.batch(9, gzipSync(second), {
      compression: Compression.GZIP,
      lines: 10,
      rawBytes: second.length,
    });
    s.batch(1, zgood, { compression: Compression.ZSTD, lines: 10, rawBytes: good.length }); // resent
    s.batch(0, good, { lines: 10, rawBytes: good.length });
    const rs = await s.waitFor(12);
    expect(rs.map(summary)).toEqual([
      `welcome ${KEY} 0`,
      "ack 1",
      "reject 2 corrupt",
      "reject 3 truncated",
      "reject 4 truncated",
      "reject 5 truncated",
      "reject 6 too_large",
      "reject 7 too_large",
      "reject 8 bad_compression",
      "ack 9",
      "ack 1",
      "reject 0 bad_seq",
    ]);
    s.close();
    expect(await s.ended).toBeNull();
    const r = await waitForDistinct(out, "raw", 20);
    expect(r.duplicates).toBe(0);
    const g = await until(
      () => stats(gw),
      (g) =>
        Object.values(g["gateway"].rejectedBatches).reduce((a, b) => a + b, 0) >= 8 &&
        (g["gateway"].keys[KEY]?.duplicates ?? 0) >= 1,
    );
    expect(g["gateway"].rejectedBatches).toEqual({
      too_large: 2,
      corrupt: 1,
      bad_compression: 1,
      truncated: 3,
      bad_seq: 1,
    });
    expect(g["gateway"].keys[KEY]?.duplicates ?? 0).toBe(1);
    const metrics = await (await fetch(`http://127.0.0.1:${gw.statsPort}/metrics`)).text();
    expect(metrics).toContain('polymur_gateway_rejected_batches_total{reason="truncated"} 3');
    // The bystander never noticed.
    const n = await f.stop();
    expect((await waitForDistinct(out, "bystander", n)).duplicates).toBe(0);
    expect((await stats(px))["proxy"].link.failures).toBe(0);
  });

  it("a message far over the limit ends only its own stream; a stream must start with Hello", async () => {
    const t = tmp();
    // A destination: a gateway without one reads no batch at all.
    const out = await sink();
    const gw = await gateway([
      "--keys-file",
      keysFile(t),
      "--max-batch-bytes",
      "64KiB",
      "--destinations",
      out.address,
    ]);
    const url = `http://127.0.0.1:${gw.port}`;
    const huge = new RawStream(url, SECRET);
    const other = new RawStream(url, SECRET);
    huge.send({ msg: { case: "hello", value: { proxyId: "huge" } } });
    other.send({ msg: { case: "hello", value: { proxyId: "other" } } });
    await huge.waitFor(1);
    await other.waitFor(1);
    huge.batch(1, Buffer.alloc(1024 * 1024, 0x61), { lines: 1, rawBytes: 1024 * 1024 });
    expect((await huge.ended)?.code).toBe(Code.ResourceExhausted);
    const good = lines("other", 0, 5);
    other.batch(1, good, { lines: 5, rawBytes: good.length });
    expect((await other.waitFor(2)).map(summary)).toEqual([`welcome ${KEY} 0`, "ack 1"]);
    other.close();
    const noHello = new RawStream(url, SECRET);
    noHello.batch(1, good, { lines: 5, rawBytes: good.length });
    expect((await noHello.ended)?.code).toBe(Code.InvalidArgument);
  });
});

/** One HTTP/1.1 request as the Go polymur-proxy makes it. */
function post1(
  url: string,
  path: string,
  body: Buffer | string,
  headers: Record<string, string>,
  agent: http.Agent,
  ca?: string,
): Promise<{ status: number; body: string }> {
  const u = new URL(path, url);
  const mod = u.protocol === "https:" ? https : http;
  return new Promise((resolve, reject) => {
    const req = mod.request(
      u,
      {
        method: "POST",
        headers: { ...headers, "content-length": String(body.length) },
        agent,
        ...(ca === undefined ? {} : { ca }),
      },
      (res) => {
        let text = "";
        res.setEncoding("utf8");
        res.on("data", (d: string) => {
          text += d;
        });
        res.on("end", () => resolve({ status: res.statusCode ?? 0, body: text }));
      },
    );
    req.on("error", reject);
    req.end(body);
  });
}

describe("the Go polymur-proxy protocol on the same listener", () => {
  it("POST /ping and /ingest over cleartext HTTP/1.1: answered after queueing, keys checked, X-Forwarded-For from trusted hops", async () => {
    const t = tmp();
    const out = await sink();
    const gw = await gateway([
      "--keys-file",
      keysFile(t),
      "--destinations",
      out.address,
      "--key-prefix",
      "--trusted-proxies",
      "127.0.0.1,10.0.0.0/8",
      "--max-batch-bytes",
      "64KiB",
    ]);
    const url = `http://127.0.0.1:${gw.port}`;
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    cleanups.push(async () => agent.destroy());
    const key = { "X-polymur-key": SECRET };
    expect(await post1(url, "/ping", "", key, agent)).toEqual({
      status: 200,
      body: "key is valid\n",
    });
    expect(await post1(url, "/ping", "", { "X-Polymur-Key": "nope" }, agent)).toEqual({
      status: 401,
      body: "invalid key",
    });
    // As the Go proxy packs a batch: every line newline-terminated, gzip, no content-encoding.
    for (let b = 0; b < 5; b++) {
      const body = gzipSync(lines("legacy", b * 100, 100));
      const xff = { "X-Forwarded-For": "203.0.113.9, 10.1.2.3" };
      expect(await post1(url, "/ingest", body, { ...key, ...xff }, agent)).toEqual({
        status: 200,
        body: "Batch Received\n",
      });
    }
    // Answered only once queued: the lines are on their way already.
    const r = await waitForDistinct(out, "legacy", 500);
    expect(r.duplicates).toBe(0);
    expect(out.lines.every((l) => l.startsWith(`${KEY}.legacy.m`))).toBe(true);
    expect(
      await post1(url, "/ingest", gzipSync("x 1 1\n"), { "X-Polymur-Key": "nope" }, agent),
    ).toEqual({
      status: 401,
      body: "invalid key",
    });
    expect(await post1(url, "/ingest", Buffer.from("not gzip"), key, agent)).toEqual({
      status: 400,
      body: "Batch Malformed\n",
    });
    expect(
      (await post1(url, "/ingest", gzipSync(Buffer.alloc(1 << 20, 0x0a)), key, agent)).status,
    ).toBe(413);
    expect((await post1(url, "/ingest", Buffer.alloc(100 * 1024), key, agent)).status).toBe(413);
    const g = await until(
      () => stats(gw),
      (g) =>
        (g["gateway"].clients["203.0.113.9"]?.lines ?? 0) >= 500 &&
        (g["gateway"].legacyRequests["413"] ?? 0) >= 2,
    );
    expect(Object.keys(g["gateway"].clients)).toContain("203.0.113.9");
    expect(g["gateway"].clients["203.0.113.9"]?.lines).toBe(500);
    expect(g["gateway"].legacyRequests).toMatchObject({ "200": 5, "400": 1, "401": 1, "413": 2 });
  });

  it("over TLS: HTTP/1.1 and HTTP/2 (what Go's default client negotiates), beside proxy streams", async () => {
    const t = tmp();
    const pki = createTestPki();
    cleanups.push(async () => pki.close());
    const out = await sink();
    const gw = await gateway([
      "--keys-file",
      keysFile(t),
      "--destinations",
      out.address,
      "--tls-cert",
      pki.certFile,
      "--tls-key",
      pki.keyFile,
    ]);
    const url = `https://localhost:${gw.port}`;
    const agent = new https.Agent({ keepAlive: true, ca: pki.ca });
    cleanups.push(async () => agent.destroy());
    const key = { "X-Polymur-Key": SECRET };
    expect(
      await post1(url, "/ingest", gzipSync(lines("tls1", 0, 100)), key, agent, pki.ca),
    ).toEqual({
      status: 200,
      body: "Batch Received\n",
    });
    const session = http2.connect(url, { ca: pki.ca });
    cleanups.push(async () => void session.close());
    const h2 = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = session.request({
        ":method": "POST",
        ":path": "/ingest",
        "x-polymur-key": SECRET,
      });
      let status = 0;
      let body = "";
      req.on("response", (h) => {
        status = Number(h[":status"]);
      });
      req.setEncoding("utf8");
      req.on("data", (d: string) => {
        body += d;
      });
      req.on("end", () => resolve({ status, body }));
      req.on("error", reject);
      req.end(gzipSync(lines("tls2", 0, 100)));
    });
    expect(h2).toEqual({ status: 200, body: "Batch Received\n" });
    const px = await proxy(url, ["--ca", pki.caFile]);
    await sendLines(px.port, numbered("tls3", 1000));
    await waitForDistinct(out, "tls1", 100);
    await waitForDistinct(out, "tls2", 100);
    await waitForDistinct(out, "tls3", 1000);
  });
});

describe("TLS end to end into a real carbon-cache", () => {
  it("proxy → https gateway (custom CA) → carbon-cache: every point stored, under the key's name", async () => {
    const cache = await startCarbonCache({});
    cleanups.push(() => cache.close());
    const t = tmp();
    const pki = createTestPki();
    cleanups.push(async () => pki.close());
    const gw = await gateway([
      "--keys-file",
      keysFile(t),
      "--destinations",
      cache.destination,
      "--key-prefix",
      "--tls-cert",
      pki.certFile,
      "--tls-key",
      pki.keyFile,
    ]);
    // A proxy that does not trust the gateway's CA gets nowhere, and says why.
    const wrong = await proxy(`https://localhost:${gw.port}`, ["--ca", pki.otherCaFile]);
    await wrong.waitForLog((l) => /certificate/i.test(String(l.msg)), 10_000);
    const px = await proxy(`https://localhost:${gw.port}`, ["--ca", pki.caFile]);
    const t0 = Math.floor(Date.now() / 1000) - 120;
    const metrics = ["e2e.pg.cpu", "e2e.pg.mem", "e2e.pg.disk"];
    const text: string[] = [];
    for (const m of metrics) for (let i = 0; i < 60; i++) text.push(`${m} ${i * 1.5} ${t0 + i}\n`);
    await sendLines(px.port, text.join(""));
    for (const m of metrics) {
      const points = await cache.waitForPoints(`${KEY}.${m}`, (p) => p.size === 60, 30_000);
      expect([...points].sort((a, b) => a[0] - b[0])).toEqual(
        Array.from({ length: 60 }, (_, i) => [t0 + i, i * 1.5]),
      );
    }
    expect((await stats(wrong))["proxy"].link.linesAcked).toBe(0);
  });
});

describe("a gateway managed by the control plane", () => {
  it("takes destinations and key digests from snapshots; a rotated or deleted key cuts its streams within seconds", async () => {
    const t = tmp();
    const out = await sink();
    const cp = await ControlPlaneProcess.start(["--state-dir", t.path("cp")]);
    cleanups.push(async () => cp.stop());
    const admin = adminClient(cp.url);
    const all = { target: { case: "all" as const, value: true } };
    await retrying(
      () => admin.addDestination({ destination: { spec: out.address, scope: all } }),
      10_000,
    );
    const created = await admin.createKey({ name: KEY });
    const gw = await gateway(
      ["--control-plane", cp.url, "--key-prefix", "--state-dir", t.path("gw")],
      { POLYMUR_NODE_TOKEN: NODE_TOKEN },
    );
    const px = await proxy(`http://127.0.0.1:${gw.port}`, [], created.secret);
    await sendLines(px.port, numbered("managed", 1000));
    await waitForDistinct(out, "managed", 1000);
    expect(out.lines.every((l) => l.startsWith(`${KEY}.managed.`))).toBe(true);
    // Rotation: the old secret stops working at once, the stream using it is cut.
    const t0 = Date.now();
    const rotated = await admin.rotateKey({ name: KEY });
    expect(await px.exited()).toBe(2);
    expect(Date.now() - t0).toBeLessThan(5_000);
    expect(px.stderr).toMatch(/API key revoked/);
    const px2 = await proxy(`http://127.0.0.1:${gw.port}`, [], rotated.secret);
    await sendLines(px2.port, numbered("rotated2", 500));
    await waitForDistinct(out, "rotated2", 500);
    // Deletion: the same.
    const t1 = Date.now();
    await admin.deleteKey({ name: KEY });
    expect(await px2.exited()).toBe(2);
    expect(Date.now() - t1).toBeLessThan(5_000);
  });
});
