// Two ways a gateway could lose datapoints, with real processes on 127.0.0.1:
// a keys file caught half-written by the reload poll (which used to revoke
// keys, cut every stream and stop every proxy), and two proxies sharing one
// proxy id (a copied spool), where one's acknowledgements freed the other's
// unsent batches. Every datapoint sent must reach the destination or still
// be held by the proxy that took it.
import { execFile } from "node:child_process";
import { appendFileSync, cpSync, writeFileSync } from "node:fs";
import { afterEach, describe, expect, it } from "vitest";
import { LineSink, sendLines } from "../fixtures/line-sink.ts";
import type { LogLine, PolymurProcess } from "../fixtures/polymur.ts";
import {
  Feeder,
  startGateway,
  startProxy,
  TempDir,
  waitForDistinct,
} from "../fixtures/proxy-gateway.ts";
import { waitFor } from "../fixtures/until.ts";

const KEY = "product-A";
const SECRET = "s3cret-product-A-0123456789";
const OTHER = "team-B";
const OTHER_SECRET = "s3cret-team-B-9876543210";

const procs: PolymurProcess[] = [];
const cleanups: Array<() => Promise<unknown> | undefined> = [];

afterEach(async () => {
  const all = procs.splice(0);
  for (const p of all) p.kill("SIGCONT"); // a test may leave one stopped
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

interface ProxyJson {
  proxy: {
    proxyId: string;
    pendingLines: number;
    pendingBatches: number;
    link: {
      state: string;
      connects: number;
      failures: number;
      linesAcked: number;
      lastError?: string;
    };
    /** Streams open, one per process when all are up. */
    linksOpen: number;
    /** One row per process (--workers; default one per core). */
    processes: Array<{ index: number; alive: boolean }>;
  };
}

interface GatewayJson {
  gateway: {
    streamsCut: { key_revoked: number; shutdown: number; unresponsive: number };
    streamsRefused: { proxy_id_in_use: number };
    proxyInstances: { new: number; returning: number };
    keysReloads: { applied: number; failed: Record<string, number> };
    keys: Record<string, { streams: number; lines: number; duplicates: number }>;
  };
}

async function json<T>(p: PolymurProcess): Promise<T> {
  const res = await fetch(`http://127.0.0.1:${p.statsPort}/stats`);
  return (await res.json()) as T;
}

/**
 * Polls a process's /stats until `pred` holds; fails with the last value
 * seen. Proxies and gateways run one process per core by default, whose
 * workers report their counters to /stats once a second: counts that may
 * come from a worker are polled for, then checked exactly.
 */
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

/** Waits until `p` has logged `n` lines matching `pred` (n counted from the start of its life). */
async function logged(
  p: PolymurProcess,
  pred: (l: LogLine) => boolean,
  n = 1,
  ms = 20_000,
): Promise<LogLine[]> {
  return waitFor(
    `${n} log line(s) matching ${pred}`,
    () => {
      const hits = p.logs.filter(pred);
      return hits.length >= n ? hits : undefined;
    },
    ms,
    20,
  );
}

/** Waits until every process of proxy `p` has its stream open; resolves with how many there are. */
async function allLinksOpen(p: PolymurProcess): Promise<number> {
  const s = await statsUntil<ProxyJson>(p, (s) => {
    const live = s.proxy.processes.filter((r) => r.alive).length;
    return live > 0 && s.proxy.linksOpen === live;
  });
  return s.proxy.processes.length;
}

const notApplied =
  (reason: string) =>
  (l: LogLine): boolean =>
    l.msg.startsWith("API keys file not applied") && l["reason"] === reason;

describe("keys file caught half-written by the reload poll", () => {
  it("rewritten in place, slowly, under load: no stream cut, no datapoint lost", async () => {
    const t = tmp();
    const out = await sink();
    const keys = t.file("keys", `${KEY} ${SECRET}\n${OTHER} ${OTHER_SECRET}\n`);
    const gw = track(await startGateway(["--keys-file", keys, "--destinations", out.address]));
    const url = `http://127.0.0.1:${gw.port}`;
    const a = track(await startProxy(url, SECRET));
    const b = track(await startProxy(url, OTHER_SECRET));
    await allLinksOpen(a);
    await allLinksOpen(b);
    const fa = await Feeder.start(a.port, "rewrite.a", 100, 10);
    const fb = await Feeder.start(b.port, "rewrite.b", 100, 10);

    // The rewrite a config tool or `cat new > keys` does: truncate, then
    // write, here in pieces cut in the middle of lines, each left in place
    // until the gateway has read it (so the poll is sure to see every one).
    const next = `${KEY} ${SECRET}\n${OTHER} ${OTHER_SECRET}\nteam-C s3cret-team-C-5555555555\n`;
    const cuts = [next.indexOf(SECRET) + 5, next.indexOf(OTHER_SECRET) + 3];
    writeFileSync(keys, "");
    await logged(gw, notApplied("empty"));
    let at = 0;
    for (const [i, cut] of cuts.entries()) {
      appendFileSync(keys, next.slice(at, cut));
      at = cut;
      await logged(gw, notApplied("incomplete"), i + 1);
    }
    appendFileSync(keys, next.slice(at));
    const reloaded = await logged(gw, (l) => l.msg === "API keys reloaded");
    expect(reloaded[0]).toMatchObject({ added: ["team-C"], removed: [], rotated: [] });

    const na = await fa.stop();
    const nb = await fb.stop();
    expect((await waitForDistinct(out, "rewrite.a", na)).missing).toEqual([]);
    expect((await waitForDistinct(out, "rewrite.b", nb)).missing).toEqual([]);
    // No stream was ever cut: one connection per proxy process, no failure
    // (read once every process has reported its acknowledgements).
    for (const [p, n] of [
      [a, na],
      [b, nb],
    ] as const) {
      const s = (await statsUntil<ProxyJson>(p, (s) => s.proxy.link.linesAcked >= n)).proxy;
      expect(s.link).toMatchObject({
        state: "open",
        connects: s.processes.length,
        failures: 0,
        linesAcked: n,
      });
    }
    const g = (
      await statsUntil<GatewayJson>(
        gw,
        (s) => (s.gateway.keys[KEY]?.lines ?? 0) >= na && (s.gateway.keys[OTHER]?.lines ?? 0) >= nb,
      )
    ).gateway;
    expect(g.streamsCut.key_revoked).toBe(0);
    expect(g.keysReloads.failed["empty"]).toBeGreaterThanOrEqual(1);
    expect(g.keysReloads.failed["incomplete"]).toBeGreaterThanOrEqual(2);
    expect(g.keysReloads.applied).toBeGreaterThanOrEqual(1);
    // Why each state was not applied is in the warning: file, line, what.
    const cutOff = gw.logs.find(notApplied("incomplete"))!;
    expect(cutOff).toMatchObject({ level: "warn", file: keys, line: 1 });
    expect(cutOff.msg).toMatch(/keys:1: the last line has no newline at the end/);
    expect(JSON.stringify(gw.logs)).not.toContain(SECRET);
  });

  it("`: > keys` keeps the keys in force and says why; the explicit no-keys line revokes them", async () => {
    const t = tmp();
    const out = await sink();
    const keys = t.file("keys", `${KEY} ${SECRET}\n`);
    const gw = track(await startGateway(["--keys-file", keys, "--destinations", out.address]));
    const url = `http://127.0.0.1:${gw.port}`;
    const a = track(await startProxy(url, SECRET));
    // One stream per proxy process: each is cut when the key goes.
    const streams = await allLinksOpen(a);
    await new Promise<void>((resolve, reject) =>
      execFile("sh", ["-c", ': > "$0"', keys], (err) => (err ? reject(err) : resolve())),
    );
    const [w] = await logged(gw, notApplied("empty"));
    expect(w).toMatchObject({ level: "warn", file: keys, keys: [KEY] });
    expect(w!.msg).toContain('write the line "# polymur: no keys"');
    // The proxy is still streaming, and a new one with the key gets in.
    await sendLines(a.port, numbered("kept", 500));
    await waitForDistinct(out, "kept", 500);
    const late = track(await startProxy(url, SECRET));
    const lateStreams = await allLinksOpen(late);
    await sendLines(late.port, numbered("late", 500));
    await waitForDistinct(out, "late", 500);
    const kept = await statsUntil<GatewayJson>(
      gw,
      (s) => (s.gateway.keys[KEY]?.lines ?? 0) >= 1000,
    );
    expect(kept.gateway.streamsCut.key_revoked).toBe(0);
    // Meant: every key goes, and every stream with it.
    writeFileSync(keys, "# polymur: no keys\n");
    expect(await a.exited()).toBe(2);
    expect(await late.exited()).toBe(2);
    // (Whether the revocation or the reconnect that follows it is what the
    // proxy reads first, it stops: the key is gone.)
    expect(a.stderr).toMatch(/API key revoked|unknown API key/);
    const g = (
      await statsUntil<GatewayJson>(
        gw,
        (s) => s.gateway.streamsCut.key_revoked >= streams + lateStreams,
      )
    ).gateway;
    expect(g.streamsCut.key_revoked).toBe(streams + lateStreams);
  });
});

describe("two proxies with one proxy id (a copied spool directory)", () => {
  it("the second is refused while the first is connected; none frees the other's batches; every datapoint arrives", async () => {
    const t = tmp();
    const out = await sink();
    const keys = t.file("keys", `${KEY} ${SECRET}\n`);
    const gw = track(await startGateway(["--keys-file", keys, "--destinations", out.address]));
    const url = `http://127.0.0.1:${gw.port}`;

    // A runs a while with its spool, stops; its spool is copied for B.
    // One process per proxy (--workers 1): the test is about two proxy
    // processes with one proxy id, and freezes A with SIGSTOP to its one pid
    // (a proxy of several processes streams under one id per process, and a
    // worker left running would keep holding its id).
    const spoolA = t.path("spool-a");
    const spoolB = t.path("spool-b");
    const one = ["--workers", "1"];
    let a = track(await startProxy(url, SECRET, ["--spool-dir", spoolA, ...one]));
    await sendLines(a.port, numbered("first", 1000));
    await waitForDistinct(out, "first", 1000);
    await a.stop();
    cpSync(spoolA, spoolB, { recursive: true });

    a = track(await startProxy(url, SECRET, ["--spool-dir", spoolA, ...one]));
    await a.waitForLog((l) => l.msg.startsWith("connected to gateway"));
    const b = track(await startProxy(url, SECRET, ["--spool-dir", spoolB, ...one]));
    const id = (await json<ProxyJson>(a)).proxy.proxyId;
    expect((await json<ProxyJson>(b)).proxy.proxyId).toBe(id);

    // B is refused while A is connected: counted and logged at both ends.
    const [refused] = await logged(gw, (l) => l.msg.startsWith("proxy stream refused"));
    expect(refused).toMatchObject({ level: "warn", proxyId: id, key: KEY });
    await b.waitForLog((l) => /failed: AlreadyExists: proxy id .* is in use/.test(l.msg));
    // Both take datapoints: A delivers, B holds its own.
    await sendLines(a.port, numbered("a1", 3000));
    await sendLines(b.port, numbered("b1", 2000));
    await waitForDistinct(out, "a1", 3000);
    await statsUntil<ProxyJson>(a, (s) => s.proxy.pendingLines === 0);
    await statsUntil<ProxyJson>(b, (s) => s.proxy.pendingLines === 2000);
    expect(out.lines.some((l) => l.startsWith("b1."))).toBe(false);
    await statsUntil<GatewayJson>(gw, (s) => s.gateway.streamsRefused.proxy_id_in_use > 0);

    // A freezes without closing its connection: when B is next refused, A's
    // connection is asked for a PING, does not answer, and its stream is cut;
    // then B gets in and delivers what it held.
    a.kill("SIGSTOP");
    await logged(gw, (l) => l.msg.startsWith("proxy stream cut: its connection did not answer"));
    await waitForDistinct(out, "b1", 2000);
    await sendLines(b.port, numbered("b2", 2000));
    await waitForDistinct(out, "b2", 2000);

    // A wakes up: now it is the one refused, and it keeps what it takes.
    a.kill("SIGCONT");
    await a.waitForLog((l) => /failed: AlreadyExists/.test(l.msg));
    await sendLines(a.port, numbered("a2", 2000));
    await statsUntil<ProxyJson>(a, (s) => s.proxy.pendingLines === 2000);
    expect(out.lines.some((l) => l.startsWith("a2."))).toBe(false);

    // B stops; A comes back, and delivers its own batches although B's seqs ran ahead.
    expect(await b.stop()).toBe(0);
    await waitForDistinct(out, "a2", 2000);
    const [turns] = await logged(gw, (l) => l.msg.startsWith("two live proxy instances"));
    expect(turns).toMatchObject({ level: "warn", proxyId: id });
    await statsUntil<ProxyJson>(a, (s) => s.proxy.pendingLines === 0);

    // (The gateway's processes report their counts once a second.)
    const g = (
      await statsUntil<GatewayJson>(
        gw,
        (s) =>
          s.gateway.streamsCut.unresponsive >= 1 &&
          s.gateway.proxyInstances.returning >= 1 &&
          s.gateway.proxyInstances.new >= 2,
      )
    ).gateway;
    expect(g.streamsCut.unresponsive).toBe(1);
    expect(g.proxyInstances.returning).toBe(1);
    expect(g.proxyInstances.new).toBeGreaterThanOrEqual(2);
    for (const [tag, n] of [
      ["first", 1000],
      ["a1", 3000],
      ["b1", 2000],
      ["b2", 2000],
      ["a2", 2000],
    ] as const) {
      expect((await waitForDistinct(out, tag, n)).missing, tag).toEqual([]);
    }
  });
});
