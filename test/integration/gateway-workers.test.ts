// A gateway of several processes (--workers, by default one per core): real
// proxies, a real gateway and a line sink on 127.0.0.1. Proxies' connections
// land on whichever process the kernel picks (SO_REUSEPORT); de-duplication,
// key revocation and /stats must hold across them as in one process. Each
// stream's process is read from the gateway's "proxy connected" log lines
// (a worker's carry its `worker` number; the primary's none).
import { writeFileSync } from "node:fs";
import net from "node:net";
import { availableParallelism } from "node:os";
import { afterEach, describe, expect, it } from "vitest";
import { LineSink, sendLines } from "../fixtures/line-sink.ts";
import type { LogLine, PolymurProcess } from "../fixtures/polymur.ts";
import {
  Feeder,
  startGateway,
  startProxy,
  TempDir,
  tally,
  waitForDistinct,
} from "../fixtures/proxy-gateway.ts";
import { waitFor } from "../fixtures/until.ts";

const KEY = "site-a";
const SECRET = "s3cret-site-a-0123456789";
const OTHER = "site-b";
const OTHER_SECRET = "s3cret-site-b-9876543210";
const CORES = availableParallelism();
/** Proxies of one process: one stream each (a proxy of several has one per process). */
const ONE = ["--workers", "1"];

const procs: PolymurProcess[] = [];
const cleanups: Array<() => Promise<unknown> | undefined> = [];

afterEach(async () => {
  const all = procs.splice(0);
  const isProxy = (p: PolymurProcess): boolean => p.child.spawnargs.includes("proxy");
  await Promise.all(all.filter(isProxy).map((p) => p.stop()));
  await Promise.all(all.filter((p) => !isProxy(p)).map((p) => p.stop()));
  while (cleanups.length > 0) await cleanups.pop()!();
});

function track(p: PolymurProcess): PolymurProcess {
  procs.push(p);
  return p;
}

async function sink(): Promise<LineSink> {
  const s = await LineSink.start();
  cleanups.push(() => s.close());
  return s;
}

function tmp(): TempDir {
  const t = new TempDir();
  cleanups.push(async () => t.close());
  return t;
}

/** `<tag>.m<i % 50> <i> 1700000000` for i in 0..n-1. */
function numbered(tag: string, n: number): string {
  const out: string[] = [];
  for (let i = 0; i < n; i++) out.push(`${tag}.m${i % 50} ${i} 1700000000\n`);
  return out.join("");
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

interface GatewayJson {
  received: number;
  routed: number;
  gateway: {
    workers: number;
    keys: Record<string, { streams: number; lines: number; batches: number; duplicates: number }>;
    streamsCut: { key_revoked: number; moved: number; unresponsive: number };
    authFailures: { stream: number };
  };
}

interface ProxyJson {
  proxy: { proxyId: string; pendingBatches: number; link: { connects: number } };
}

async function json<T>(p: PolymurProcess): Promise<T> {
  const res = await fetch(`http://127.0.0.1:${p.statsPort}/stats`);
  return (await res.json()) as T;
}

async function statsUntil<T>(p: PolymurProcess, pred: (s: T) => boolean, ms = 30_000): Promise<T> {
  let last: T | undefined;
  try {
    return await waitFor(
      "stats condition",
      async () => {
        last = await json<T>(p);
        return pred(last) ? last : undefined;
      },
      ms,
      50,
    );
  } catch {
    throw new Error(`stats condition not met in ${ms} ms: ${JSON.stringify(last).slice(0, 3000)}`);
  }
}

/** The gateway process (0: the primary, n: worker n) of each "proxy connected" line of `proxyId`. */
function servedBy(gw: PolymurProcess, proxyId?: string): number[] {
  return gw.logs
    .filter((l: LogLine) => l.msg === "proxy connected")
    .filter((l) => proxyId === undefined || l["proxyId"] === proxyId)
    .map((l) => (l["worker"] as number | undefined) ?? 0);
}

/**
 * How many times `proxyId` connected to another process than the last with
 * a Welcome acknowledging batches (ackedSeq > 0): the new process knew what
 * the other had queued.
 */
function handedOver(gw: PolymurProcess, proxyId: string): number {
  const lines = gw.logs.filter((l) => l.msg === "proxy connected" && l["proxyId"] === proxyId);
  let n = 0;
  for (let i = 1; i < lines.length; i++) {
    const at = (l: LogLine): number => (l["worker"] as number | undefined) ?? 0;
    if (at(lines[i]!) !== at(lines[i - 1]!) && Number(lines[i]!["ackedSeq"]) > 0) n++;
  }
  return n;
}

async function proxyId(p: PolymurProcess): Promise<string> {
  return (await json<ProxyJson>(p)).proxy.proxyId;
}

/**
 * A TCP forwarder whose connections can be frozen one generation at a time:
 * `freeze()` makes the connections open now lose everything the gateway
 * sends (Acks, PINGs' answers) while the proxy's bytes still pass for
 * 150 ms (batches queued, never acknowledged), then lose everything; when
 * the proxy gives up on such a connection, its gateway side stays open (a
 * path that died without the gateway noticing: its stream still holds the
 * proxy id). New connections pass both ways.
 */
class FreezingPath {
  port = 0;
  #server: net.Server | null = null;
  #live = new Set<[net.Socket, net.Socket, { frozen: number }]>();

  static async start(target: number): Promise<FreezingPath> {
    const p = new FreezingPath();
    p.#server = net.createServer((client) => {
      const upstream = net.connect(target, "127.0.0.1");
      const state = { frozen: 0 };
      const entry: [net.Socket, net.Socket, { frozen: number }] = [client, upstream, state];
      p.#live.add(entry);
      client.on("data", (d: Buffer) => {
        if (state.frozen < 2) upstream.write(d);
      });
      upstream.on("data", (d: Buffer) => {
        if (!state.frozen) client.write(d);
      });
      const close = (): void => {
        // A frozen path tells the gateway nothing: its side stays open.
        if (state.frozen) return;
        p.#live.delete(entry);
        client.destroy();
        upstream.destroy();
      };
      for (const s of [client, upstream]) {
        s.on("error", close);
        s.on("close", close);
      }
    });
    await new Promise<void>((resolve) => p.#server!.listen(0, "127.0.0.1", resolve));
    p.port = (p.#server.address() as net.AddressInfo).port;
    return p;
  }

  freeze(): void {
    const now = [...this.#live].map(([, , s]) => s);
    for (const s of now) s.frozen = 1;
    setTimeout(() => {
      for (const s of now) s.frozen = 2;
    }, 150);
  }

  async close(): Promise<void> {
    for (const [a, b] of this.#live) {
      a.destroy();
      b.destroy();
    }
    await new Promise<void>((resolve) => this.#server?.close(() => resolve()) ?? resolve());
  }
}

describe.skipIf(CORES < 2)(
  "a gateway of several processes (--workers, default: one per core)",
  () => {
    it("several proxies: every datapoint arrives exactly once, and /stats sums the processes", async () => {
      const t = tmp();
      const out = await sink();
      const keys = t.file("keys", `${KEY} ${SECRET}\n`);
      const gw = track(await startGateway(["--keys-file", keys, "--destinations", out.address]));
      const url = `http://127.0.0.1:${gw.port}`;
      // Proxies until both processes serve some (the kernel picks one per connection).
      const proxies: PolymurProcess[] = [];
      while (proxies.length < 4 || new Set(servedBy(gw)).size < 2) {
        expect(proxies.length, `all streams on one process: ${servedBy(gw)}`).toBeLessThan(16);
        const p = track(await startProxy(url, SECRET, ONE));
        await p.waitForLog((l) => l.msg.startsWith("connected to gateway"));
        await gw.waitForLog(() => servedBy(gw).length === proxies.length + 1, 10_000);
        proxies.push(p);
      }
      expect((await json<GatewayJson>(gw)).gateway.workers).toBe(CORES);
      const n = 5_000;
      await Promise.all(proxies.map((p, i) => sendLines(p.port, numbered(`px${i}`, n))));
      for (let i = 0; i < proxies.length; i++) {
        const r = await waitForDistinct(out, `px${i}`, n);
        expect(r.duplicates, `px${i}`).toBe(0);
      }
      // /stats of the primary: the sum over the processes (reported every second).
      const total = n * proxies.length;
      const s = await statsUntil<GatewayJson>(
        gw,
        (s) => s.gateway.keys[KEY]?.lines === total && s.received === total,
      );
      expect(s.routed).toBe(total);
      expect(s.gateway.keys[KEY]!.streams).toBe(proxies.length);
      const metrics = await (await fetch(`http://127.0.0.1:${gw.statsPort}/metrics`)).text();
      expect(metrics).toContain(`polymur_gateway_datapoints_total{key="${KEY}"} ${total}\n`);
      expect(metrics).toContain(`polymur_gateway_streams{key="${KEY}"} ${proxies.length}\n`);
    });

    it("a proxy whose path dies reconnects, often to the other process: acknowledged batches are never queued twice", async () => {
      const t = tmp();
      const out = await sink();
      const keys = t.file("keys", `${KEY} ${SECRET}\n`);
      const gw = track(await startGateway(["--keys-file", keys, "--destinations", out.address]));
      const path = await FreezingPath.start(gw.port);
      cleanups.push(() => path.close());
      const px = track(
        await startProxy(`http://127.0.0.1:${path.port}`, SECRET, [
          ...ONE,
          // Small batches, often: many are queued while their Acks are lost.
          "--batch-delay",
          "10ms",
          "--ping-interval",
          "200ms",
          "--ping-timeout",
          "300ms",
        ]),
      );
      await px.waitForLog((l) => l.msg.startsWith("connected to gateway"));
      const id = await proxyId(px);
      const f = await Feeder.start(px.port, "moves", 100, 10);
      // Freeze its path (Acks lost, the gateway side left open, its stream
      // still holding the proxy id), at least 12 times, and until its
      // reconnects have landed on both processes and a stream was taken from
      // one process by another at least twice.
      for (let round = 0; ; round++) {
        const g = await json<GatewayJson>(gw);
        const moved = g.gateway.streamsCut.moved >= 2 && new Set(servedBy(gw, id)).size >= 2;
        if (moved && round >= 12) break;
        expect(
          round,
          `served by ${servedBy(gw, id)}; moved ${g.gateway.streamsCut.moved}`,
        ).toBeLessThan(30);
        const before = servedBy(gw, id).length;
        await sleep(150);
        path.freeze();
        await gw.waitForLog(() => servedBy(gw, id).length > before, 15_000);
      }
      const n = await f.stop();
      const r = await waitForDistinct(out, "moves", n);
      await statsUntil<ProxyJson>(px, (s) => s.proxy.pendingBatches === 0);
      await sleep(300);
      // Counted exactly at the sink: every datapoint once.
      expect(tally(out, "moves", n)).toMatchObject({ distinct: n, duplicates: 0, missing: [] });
      expect(r.missing).toEqual([]);
      // Taken over by another process, the proxy was welcomed with what the
      // one before had queued (its Acks lost): it resends only beyond that.
      expect(handedOver(gw, id)).toBeGreaterThanOrEqual(1);
      expect(
        gw.logs.some(
          (l) =>
            l.msg ===
            "proxy stream ended: the proxy reconnected to another process of this gateway",
        ),
      ).toBe(true);
    });

    it("revoking a key (the keys file rewritten) cuts its streams in every process and refuses new ones", async () => {
      const t = tmp();
      const out = await sink();
      const keys = t.file("keys", `${KEY} ${SECRET}\n${OTHER} ${OTHER_SECRET}\n`);
      const gw = track(await startGateway(["--keys-file", keys, "--destinations", out.address]));
      const url = `http://127.0.0.1:${gw.port}`;
      const revoked: PolymurProcess[] = [];
      while (revoked.length < 2 || new Set(servedBy(gw)).size < 2) {
        expect(revoked.length, `all streams on one process: ${servedBy(gw)}`).toBeLessThan(16);
        const p = track(await startProxy(url, SECRET, ONE));
        await p.waitForLog((l) => l.msg.startsWith("connected to gateway"));
        await gw.waitForLog(() => servedBy(gw).length === revoked.length + 1, 10_000);
        revoked.push(p);
      }
      const kept = track(await startProxy(url, OTHER_SECRET, ONE));
      await kept.waitForLog((l) => l.msg.startsWith("connected to gateway"));

      writeFileSync(keys, `${OTHER} ${OTHER_SECRET}\n`);
      for (const p of revoked) expect(await p.exited()).toBe(2);
      const g = (
        await statsUntil<GatewayJson>(gw, (s) => s.gateway.streamsCut.key_revoked >= revoked.length)
      ).gateway;
      expect(g.streamsCut.key_revoked).toBe(revoked.length);
      // A new stream with the revoked key is refused, by every process.
      const refusedBy = (): Set<number> =>
        new Set(
          gw.logs
            .filter((l) => l.msg.startsWith("proxy stream refused: missing or unknown API key"))
            .map((l) => (l["worker"] as number | undefined) ?? 0),
        );
      let late = 0;
      while (late < 2 || refusedBy().size < 2) {
        expect(late, `refused by ${[...refusedBy()]}`).toBeLessThan(16);
        const p = track(await startProxy(url, SECRET, ONE));
        expect(await p.exited()).toBe(2);
        late++;
      }
      await statsUntil<GatewayJson>(gw, (s) => s.gateway.authFailures.stream >= late);
      // The other key carries on.
      await sendLines(kept.port, numbered("kept", 2000));
      expect((await waitForDistinct(out, "kept", 2000)).duplicates).toBe(0);
      expect(JSON.stringify(gw.logs)).not.toContain(SECRET);
    });
  },
);
