// Proves test/fixtures/carbon.ts against the real carbon-cache / carbon-relay
// by writing plaintext lines straight to them over TCP (no polymur involved).
import { execFile } from "node:child_process";
import { connect } from "node:net";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import {
  type CarbonCache,
  type CarbonRelay,
  carbonMode,
  LONG_RETENTIONS,
  startCarbonCache,
  startCarbonRelay,
} from "../fixtures/carbon.ts";

/** Everything started here, closed after each test; dirs remembered for the leak check. */
const open: Array<CarbonCache | CarbonRelay> = [];
const dirs: string[] = [];

async function cache(opts?: Parameters<typeof startCarbonCache>[0]): Promise<CarbonCache> {
  const c = await startCarbonCache(opts);
  open.push(c);
  dirs.push(c.dir);
  return c;
}

async function relay(opts: Parameters<typeof startCarbonRelay>[0]): Promise<CarbonRelay> {
  const r = await startCarbonRelay(opts);
  open.push(r);
  dirs.push(r.dir);
  return r;
}

afterEach(async () => {
  await Promise.all(open.splice(0).map((c) => c.close()));
});

afterAll(async () => {
  if ((await carbonMode()) !== "process") return;
  // No carbon process may outlive close(): every one has its dir in its argv.
  const ps = await new Promise<string>((resolve, reject) =>
    execFile("ps", ["-eo", "pid,args"], (err, out) => (err ? reject(err) : resolve(out))),
  );
  const leaked = ps.split("\n").filter((line) => dirs.some((d) => line.includes(d)));
  expect(leaked).toEqual([]);
});

/** Writes plaintext lines to host:port and waits until the connection is closed. */
function send(port: number, lines: string[], host = "127.0.0.1"): Promise<void> {
  return new Promise((resolve, reject) => {
    const socket = connect({ port, host }, () => socket.end(lines.map((l) => l + "\n").join("")));
    socket.once("error", reject);
    socket.once("close", () => resolve());
  });
}

const now = () => Math.floor(Date.now() / 1000);

/** Polls metrics() (whisper files) of all caches until they hold `total` names in all. */
async function waitForFiles(caches: CarbonCache[], total: number): Promise<string[][]> {
  const deadline = Date.now() + 20_000;
  for (;;) {
    const found = await Promise.all(caches.map((c) => c.metrics()));
    if (found.flat().length >= total || Date.now() > deadline) return found;
    await new Promise((res) => setTimeout(res, 100));
  }
}

describe("carbon fixture", () => {
  it("stores exact values", async () => {
    const c = await cache();
    expect(c.mode).toBe(await carbonMode());
    const t = now() - 10;
    const cases: Array<[string, string, number]> = [
      ["fx.tiny", "1e-11", 1e-11],
      ["fx.max", "1.7976931348623157e308", Number.MAX_VALUE],
      ["fx.neg", "-0.5", -0.5],
      ["fx.dec", "123456789.123", 123456789.123],
      ["fx.inf", "inf", Number.POSITIVE_INFINITY],
    ];
    await send(
      c.linePort,
      cases.map(([m, v]) => `${m} ${v} ${t}`),
    );
    for (const [metric, , value] of cases) {
      const points = await c.waitForPoints(metric, (p) => p.has(t));
      expect([...points]).toEqual([[t, value]]);
    }
    // Once written to whisper (not just in carbon's cache), metrics() lists them.
    const names = cases.map(([m]) => m).sort();
    const deadline = Date.now() + 15_000;
    let listed: string[] = [];
    while (Date.now() < deadline) {
      listed = await c.metrics();
      if (names.every((n) => listed.includes(n))) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(listed).toEqual(names);
    // Read back from whisper alone (cache stopped): same exact values.
    await c.stop();
    for (const [metric, , value] of cases) {
      expect(await c.points(metric)).toEqual(new Map([[t, value]]));
    }
    expect(await c.points("fx.tiny", { from: t + 1 })).toEqual(new Map());
    expect(await c.points("fx.tiny", { until: t })).toEqual(new Map([[t, 1e-11]]));
  });

  it("restarts on the same ports and keeps its data", async () => {
    const c = await cache({ instance: "r" });
    const ports = [c.linePort, c.picklePort, c.queryPort];
    const t = now() - 5;
    await send(c.linePort, [`rs.before 1.5 ${t}`, `rs.both 1 ${t}`]);
    await c.waitForPoints("rs.before", (p) => p.get(t) === 1.5);
    // Stopped right away: the points are still in carbon's cache, and stop()
    // must have them written before carbon exits.
    await c.stop();
    expect(await c.points("rs.before")).toEqual(new Map([[t, 1.5]]));
    await expect(send(c.linePort, ["rs.lost 1 1"])).rejects.toThrow(/ECONNREFUSED/);

    await c.start();
    expect([c.linePort, c.picklePort, c.queryPort]).toEqual(ports);
    await send(c.linePort, [`rs.after 2.5 ${t + 1}`, `rs.both 2 ${t + 1}`]);
    await c.waitForPoints("rs.after", (p) => p.get(t + 1) === 2.5);
    const both = await c.waitForPoints("rs.both", (p) => p.size === 2);
    expect(both).toEqual(
      new Map([
        [t, 1],
        [t + 1, 2],
      ]),
    );
    expect(await c.points("rs.before")).toEqual(new Map([[t, 1.5]]));
  });

  it("runs two instances at once, each with its own data", async () => {
    const [a, b] = await Promise.all([cache({ instance: "a" }), cache({ instance: "b" })]);
    expect(a.instance).toBe("a");
    expect(b.instance).toBe("b");
    expect(
      new Set([a.linePort, a.picklePort, a.queryPort, b.linePort, b.picklePort, b.queryPort]).size,
    ).toBe(6);
    const t = now() - 3;
    await Promise.all([
      send(a.linePort, [`two.only_a 1 ${t}`]),
      send(b.linePort, [`two.only_b 2 ${t}`]),
    ]);
    expect(await a.waitForPoints("two.only_a", (p) => p.size === 1)).toEqual(new Map([[t, 1]]));
    expect(await b.waitForPoints("two.only_b", (p) => p.size === 1)).toEqual(new Map([[t, 2]]));
    expect(await a.points("two.only_b")).toEqual(new Map());
    expect(await b.points("two.only_a")).toEqual(new Map());
  });

  it("carbon-relay consistent-hashing puts each metric in exactly one of 3 caches", async () => {
    const caches = await Promise.all(["a", "b", "c"].map((instance) => cache({ instance })));
    const r = await relay({ destinations: caches.map((c) => c.destination) });
    const t = now() - 2;
    const metrics = Array.from({ length: 50 }, (_, i) => `ring.m${i}.value`);
    await send(
      r.linePort,
      metrics.map((m, i) => `${m} ${i + 0.25} ${t}`),
    );
    const found = await waitForFiles(caches, metrics.length);
    const all = found.flat();
    expect(all.sort()).toEqual([...metrics].sort());
    // Exactly one cache per metric (the sorted lists are equal, so no
    // duplicates), and 50 names spread over all three.
    for (const names of found) expect(names.length).toBeGreaterThan(0);
    // Values went through carbon-relay's line output unchanged here.
    const owner = new Map(found.flatMap((names, i) => names.map((n) => [n, caches[i]!] as const)));
    const stored = await Promise.all(metrics.map((m) => owner.get(m)!.points(m)));
    expect(stored).toEqual(metrics.map((_, i) => new Map([[t, i + 0.25]])));
  });

  it("carbon-relay options: pickle to destinations, fnv1a_ch, replication 2", async () => {
    const caches = await Promise.all(["a", "b", "c"].map((instance) => cache({ instance })));
    const r = await relay({
      destinations: caches.map((c) => `${c.host}:${c.picklePort}:${c.instance}`),
      destinationProtocol: "pickle",
      hashType: "fnv1a_ch",
      replicationFactor: 2,
      // DIVERSE_REPLICAS (carbon's default) puts replicas on distinct hosts:
      // with every cache on 127.0.0.1 it would keep just one copy.
      diverseReplicas: false,
    });
    const t = now() - 2;
    const metrics = Array.from({ length: 20 }, (_, i) => `rep.m${i}`);
    await send(
      r.linePort,
      metrics.map((m) => `${m} 1e-11 ${t}`),
    );
    const found = await waitForFiles(caches, 2 * metrics.length);
    const reads = metrics.flatMap((m) =>
      caches.filter((_, i) => found[i]!.includes(m)).map((c) => c.points(m)),
    );
    expect(reads.length).toBe(2 * metrics.length);
    // Pickle keeps the exact float (carbon-relay's line output would print 0).
    for (const p of await Promise.all(reads)) expect(p).toEqual(new Map([[t, 1e-11]]));
  });

  it("normalises tagged series and lists them by name", async () => {
    const c = await cache({ enableTags: true });
    const t = now() - 1;
    await send(c.linePort, [`tg.cpu;z=1;a=x.y 7 ${t}`]);
    // carbon sorts the tags; either spelling finds the series.
    expect(await c.waitForPoints("tg.cpu;a=x.y;z=1", (p) => p.size === 1)).toEqual(
      new Map([[t, 7]]),
    );
    expect(await c.points("tg.cpu;z=1;a=x.y")).toEqual(new Map([[t, 7]]));
    await c.stop(); // flushes to whisper
    expect(await c.metrics()).toEqual(["tg.cpu;a=x.y;z=1"]);
  });

  it("documents which timestamps whisper can hold", async () => {
    const c = await cache({ retentions: LONG_RETENTIONS });
    const day = 86_400;
    await send(c.linePort, [
      `ts.day ${1.5} ${2 * day}`, // multiple of the 1d step: exact
      `ts.unaligned 2 ${2 * day + 1}`, // aligned down to the 1d step
      `ts.zero 3 0`, // aligns to 0 = an empty slot: never visible
      `ts.negative 4 -${day}`, // whisper cannot store it (unsigned 32-bit)
      `ts.y2106 5 4294967295`, // future points are accepted
    ]);
    expect(await c.waitForPoints("ts.day", (p) => p.size === 1)).toEqual(new Map([[2 * day, 1.5]]));
    expect(await c.waitForPoints("ts.unaligned", (p) => p.size === 1)).toEqual(
      new Map([[2 * day, 2]]),
    );
    expect(await c.waitForPoints("ts.y2106", (p) => p.size === 1)).toEqual(
      new Map([[4294967295, 5]]),
    );
    await c.stop();
    expect(await c.points("ts.zero")).toEqual(new Map());
    expect(await c.points("ts.negative")).toEqual(new Map());
    expect(await c.metrics()).toEqual([
      "ts.day",
      "ts.negative",
      "ts.unaligned",
      "ts.y2106",
      "ts.zero",
    ]);
  });

  it("rejects retentions carbon would silently refuse", async () => {
    await expect(startCarbonCache({ retentions: "1s:1h,1d:60y" })).rejects.toThrow(/consolidate/);
  });
});
