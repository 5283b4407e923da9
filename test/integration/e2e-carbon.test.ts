// Real Graphite end to end: plaintext into a real polymur relay, out to real
// carbon-cache instances (test/fixtures/carbon.ts), proven by reading back
// what carbon stored in its whisper files (and cache). Four scenarios:
//  - broadcast to two caches: exact values, old/fractional/negative
//    timestamps, `-1` = now, tagged series;
//  - one of two caches stopped and restarted in the middle of a steady stream;
//  - hash routing over three caches, compared instance by instance with the
//    reference, carbon-relay, routing the same names into three other caches.
import { execFile } from "node:child_process";
import net from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  type CarbonCache,
  type CarbonRelay,
  carbonMode,
  DEFAULT_RETENTIONS,
  LONG_RETENTIONS,
  startCarbonCache,
  startCarbonRelay,
} from "../fixtures/carbon.ts";
import { sendLines } from "../fixtures/line-sink.ts";
import { PolymurProcess, type StatsJson, waitForStats } from "../fixtures/polymur.ts";

// ---------------------------------------------------------------------------
// Bookkeeping: everything started here is stopped relays first (a relay whose
// destination vanished first would spend its shutdown timeout retrying), then
// carbon-relays, then caches; and nothing may outlive the file.

const relays: PolymurProcess[] = [];
const carbonRelays: CarbonRelay[] = [];
const caches: CarbonCache[] = [];
const carbonDirs: string[] = [];
const polymurPids: number[] = [];

async function cache(opts: Parameters<typeof startCarbonCache>[0]): Promise<CarbonCache> {
  const c = await startCarbonCache(opts);
  caches.push(c);
  carbonDirs.push(c.dir);
  return c;
}

async function polymur(args: string[]): Promise<PolymurProcess> {
  const p = await PolymurProcess.relay(args);
  relays.push(p);
  if (p.child.pid !== undefined) polymurPids.push(p.child.pid);
  return p;
}

async function teardown(): Promise<void> {
  await Promise.all(relays.splice(0).map((p) => p.stop()));
  await Promise.all(carbonRelays.splice(0).map((r) => r.close()));
  await Promise.all(caches.splice(0).map((c) => c.close()));
}

beforeAll(async () => {
  // The fixture logs the mode (process or container) and why, once.
  console.info(`[e2e-carbon] carbon mode: ${await carbonMode()}`);
});

afterAll(async () => {
  await teardown();
  const ps = await new Promise<string>((resolve, reject) =>
    execFile("ps", ["-eo", "pid,args"], (err, out) => (err ? reject(err) : resolve(out))),
  );
  const rows = ps.split("\n").slice(1);
  const leakedCarbon = rows.filter((row) => carbonDirs.some((d) => row.includes(d)));
  const leakedPolymur = rows.filter((row) =>
    polymurPids.includes(Number(row.trim().split(/\s+/)[0])),
  );
  expect([...leakedCarbon, ...leakedPolymur]).toEqual([]);
});

// ---------------------------------------------------------------------------
// Helpers

const nowSec = (): number => Math.floor(Date.now() / 1000);
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function send(port: number, lines: readonly string[]): Promise<void> {
  return sendLines(port, lines.map((l) => `${l}\n`).join(""));
}

/** carbon-cache's tag normalisation (TaggedSeries): tags sorted by key. */
function normaliseTags(name: string): string {
  const [path, ...tags] = name.split(";");
  if (tags.length === 0) return name;
  const byKey = new Map(tags.map((t) => [t.slice(0, t.indexOf("=")), t] as const));
  return [path, ...[...byKey.keys()].sort().map((k) => byKey.get(k)!)].join(";");
}

/** Polls metrics() of the caches until they list `total` names in all; returns them. */
async function waitForFiles(
  group: readonly CarbonCache[],
  total: () => number,
  timeoutMs = 30_000,
): Promise<string[][]> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const found = await Promise.all(group.map((c) => c.metrics()));
    const n = found.flat().length;
    if (n >= total()) return found;
    if (Date.now() > deadline) {
      throw new Error(`${n} of ${total()} whisper files after ${timeoutMs} ms`);
    }
    await sleep(100);
  }
}

const sum = (xs: readonly number[]): number => xs.reduce((a, b) => a + b, 0);

function drained(s: StatsJson, perDestination: number | null, total?: number): boolean {
  const queued = s.destinations.every((d) => d.queuedLines === 0);
  if (perDestination !== null && !s.destinations.every((d) => d.forwarded >= perDestination)) {
    return false;
  }
  if (total !== undefined && sum(s.destinations.map((d) => d.forwarded)) < total) return false;
  return queued;
}

// ---------------------------------------------------------------------------

describe("e2e: polymur broadcast into two real carbon-caches", () => {
  let a: CarbonCache;
  let b: CarbonCache;
  let p: PolymurProcess;

  beforeAll(async () => {
    // LONG_RETENTIONS (1s:1h, 60s:1d, 1d:60y) so old timestamps (back to
    // 1970) are stored too, at day steps; recent ones land in the 1 s archive
    // with their exact second.
    [a, b] = await Promise.all([
      cache({ instance: "a", retentions: LONG_RETENTIONS }),
      cache({ instance: "b", retentions: LONG_RETENTIONS }),
    ]);
    p = await polymur(["--destinations", `${a.destination},${b.destination}`]);
  });

  afterAll(teardown);

  it("stores every value exactly, in both caches", async () => {
    const t = nowSec() - 30;
    const cases: Array<[metric: string, text: string, expected: number]> = [
      ["e2e.val.tiny", "1e-11", 1e-11],
      ["e2e.val.max", "1.7976931348623157e308", Number.MAX_VALUE],
      ["e2e.val.negzero", "-0.0", -0],
      // The nearest double, as both Python float() and Number() read it.
      ["e2e.val.long", "123456789.123456789", 123456789.12345679],
      ["e2e.val.denormal", "5e-324", 5e-324],
      ["e2e.val.negative", "-42.5", -42.5],
      ["e2e.val.zero", "0", 0],
      ["e2e.val.inf", "inf", Number.POSITIVE_INFINITY],
      ["e2e.val.neginf", "-Infinity", Number.NEGATIVE_INFINITY],
      // Other spellings Python's float() accepts, so carbon does too.
      ["e2e.val.plus", "+1.5", 1.5],
      ["e2e.val.underscore", "1_000.25", 1000.25],
      ["e2e.val.dot", ".5", 0.5],
      ["e2e.val.trailingdot", "6.", 6],
      ["e2e.val.exp", "1E-3", 0.001],
    ];
    // Mostly single spaces; a tab-separated line and a CRLF line as well
    // (carbon splits on any whitespace and strips the line).
    await send(
      p.port,
      cases.map(([m, v], i) =>
        i === 1 ? `${m}\t${v}\t${t}` : i === 2 ? `${m}  ${v} ${t}\r` : `${m} ${v} ${t}`,
      ),
    );
    for (const c of [a, b]) {
      for (const [metric, text, value] of cases) {
        const points = await c.waitForPoints(metric, (x) => x.has(t));
        expect([...points], `${metric} (${text}) in ${c.instance}`).toEqual([[t, value]]);
        // toEqual treats -0 and 0 as different already; say so explicitly.
        expect(Object.is(points.get(t), value), `${metric} sign/bits`).toBe(true);
      }
    }
  });

  it("stores fractional and old timestamps as carbon does, and drops what whisper cannot hold", async () => {
    const t = nowSec() - 20;
    const day = 86_400;
    const old = 999_993_600; // 2001-09-09, a multiple of the 1d step
    await send(p.port, [
      // Recent, fractional or with an exponent: carbon int()s it, the 1 s
      // archive keeps that second.
      `e2e.ts.fraction 1.5 ${t}.75`,
      `e2e.ts.fraction 2.5 ${t + 1}.001`,
      `e2e.ts.fraction 3.5 ${t + 2}e0`,
      // Old (1d archive): fractional and unaligned timestamps align down to the day.
      `e2e.ts.old 3 ${2 * day}.25`,
      `e2e.ts.old 4 ${old}.5`,
      `e2e.ts.old 5 ${old + 3 * day + 7}`,
      // Negative timestamps that do not mean "now". Whisper stores timestamps
      // as unsigned 32-bit: with retentions reaching before 1970 it raises on
      // them and carbon drops the metric's batch ("Error writing to ..." in
      // carbon.log); -0.5 int()s to 0, which whisper writes as an empty slot;
      // with the default 30-day retention they would all be dropped as too
      // old. Either way nothing is readable, but the file carbon created shows
      // polymur forwarded them.
      `e2e.ts.negative 6 -${day}`,
      "e2e.ts.negative 7 -2",
      "e2e.ts.negative 8 -1000000.5",
      "e2e.ts.negative 9 -0.5",
    ]);
    for (const c of [a, b]) {
      expect(await c.waitForPoints("e2e.ts.fraction", (x) => x.size === 3)).toEqual(
        new Map([
          [t, 1.5],
          [t + 1, 2.5],
          [t + 2, 3.5],
        ]),
      );
      expect(await c.waitForPoints("e2e.ts.old", (x) => x.size === 3)).toEqual(
        new Map([
          [2 * day, 3],
          [old, 4],
          [old + 3 * day, 5],
        ]),
      );
    }
    for (const c of [a, b]) {
      const deadline = Date.now() + 20_000;
      while (!(await c.metrics()).includes("e2e.ts.negative")) {
        if (Date.now() > deadline) throw new Error(`no e2e.ts.negative file in ${c.instance}`);
        await sleep(100);
      }
      expect(await c.points("e2e.ts.negative")).toEqual(new Map());
    }
  });

  it("stamps -1 (and anything in (-2,-1]) with polymur's receive time", async () => {
    const lines = [
      "e2e.now.int 1 -1",
      "e2e.now.float 2 -1.0",
      "e2e.now.half 3 -1.5",
      "e2e.now.almost2 4 -1.999999",
    ];
    const before = nowSec();
    await send(p.port, lines);
    const after = nowSec();
    for (const c of [a, b]) {
      for (const [i, line] of lines.entries()) {
        const metric = line.split(" ")[0]!;
        const points = await c.waitForPoints(metric, (x) => x.size === 1);
        const [[ts, value]] = [...points] as [[number, number]];
        expect(value, metric).toBe(i + 1);
        expect(ts, `${metric} stamped ${ts}, sent in [${before}, ${after}]`).toBeGreaterThanOrEqual(
          before - 2,
        );
        expect(ts, `${metric} stamped ${ts}, sent in [${before}, ${after}]`).toBeLessThanOrEqual(
          after + 2,
        );
      }
    }
  });

  it("delivers tagged series, which carbon normalises (tags sorted)", async () => {
    const t = nowSec() - 10;
    const sent = [
      ["e2e.tagged.cpu;zone=eu-west;host=web01;dc=ams", 3.25],
      ["e2e.tagged.mem;b=2;a=1", 7],
      ["e2e.tagged.sorted;a=1;b=x.y", 0.5],
    ] as const;
    await send(
      p.port,
      sent.map(([m, v]) => `${m} ${v} ${t}`),
    );
    const expected = sent.map(([m]) => normaliseTags(m));
    expect(expected).toEqual([
      "e2e.tagged.cpu;dc=ams;host=web01;zone=eu-west",
      "e2e.tagged.mem;a=1;b=2",
      "e2e.tagged.sorted;a=1;b=x.y",
    ]);
    for (const c of [a, b]) {
      for (const [i, [metric, value]] of sent.entries()) {
        // Readable under carbon's normalised name, and (carbon normalises the
        // query too) under the name as sent.
        expect(
          await c.waitForPoints(expected[i]!, (x) => x.size === 1),
          `${expected[i]} in ${c.instance}`,
        ).toEqual(new Map([[t, value]]));
        expect(await c.points(metric)).toEqual(new Map([[t, value]]));
      }
      // Once written to whisper, listed by the normalised name only.
      const deadline = Date.now() + 20_000;
      let names: string[] = [];
      for (;;) {
        names = (await c.metrics()).filter((n) => n.startsWith("e2e.tagged."));
        if (names.length >= expected.length || Date.now() > deadline) break;
        await sleep(100);
      }
      expect(names).toEqual([...expected].sort());
    }
  });
});

/**
 * Runs start (which spawns carbon) with POLYMUR_CARBON_STOCK_SHUTDOWN=1 in the
 * environment the fixture hands to carbon: that carbon-cache then shuts down
 * as stock carbon does, dropping what it accepted in its last second.
 */
async function stockShutdown<T>(start: () => Promise<T>): Promise<T> {
  process.env["POLYMUR_CARBON_STOCK_SHUTDOWN"] = "1";
  try {
    return await start();
  } finally {
    delete process.env["POLYMUR_CARBON_STOCK_SHUTDOWN"];
  }
}

describe("e2e: a carbon-cache stopped and restarted mid-stream", () => {
  it("ends up holding every datapoint, and -1 sent during the outage keeps its send time", async () => {
    // Broadcast to two caches; "victim" is stopped and restarted, "steady" is
    // the control. The victim shuts down like stock carbon-cache, dropping what
    // it accepted (TCP-acknowledged) in its last second: only polymur's resend
    // window (default 4 MiB) brings those points back. With the fixture's
    // graceful stop nothing in flight is lost and the window goes untested;
    // with --resend-window 0 this test loses the ~30 ticks before the stop.
    const steady = await cache({ instance: "steady", retentions: DEFAULT_RETENTIONS });
    const victim = await stockShutdown(() =>
      cache({ instance: "victim", retentions: DEFAULT_RETENTIONS }),
    );
    // Short reconnect backoff: the test should not wait up to 10 s for the
    // relay to notice the cache is back.
    const p = await polymur([
      "--destinations",
      `${steady.destination},${victim.destination}`,
      "--backoff-max",
      "0.5",
    ]);

    const metrics = Array.from({ length: 15 }, (_, j) => `e2e.stream.m${j}`);
    // Every metric gets one datapoint per tick, at timestamp base + tick: all
    // distinct, all within the 1 s archive, so each must be stored exactly.
    const base = nowSec() - 900;
    const value = (j: number, k: number): number => j * 1000 + k + 0.5;
    const tickMs = 25;
    const stopAtTick = 30;
    const minTicks = 200; // 15 x 200 = 3000 datapoints over about 5 s
    const extraTicks = 40; // keep streaming after the cache is back
    const maxTicks = 800;

    let outageDone = false;
    let lastTick = -1;
    const nowSent = { before: 0, after: 0 };
    let restartedAt = 0;
    const outage = async (): Promise<void> => {
      await victim.stop();
      nowSent.before = nowSec();
      await send(p.port, ["e2e.stream.now 1 -1"]);
      nowSent.after = nowSec();
      // Keep the cache down for a few seconds on purpose (the outage is the
      // scenario, not a wait for a result): delivery of the -1 line then
      // happens well after it was sent, so the timestamp tells who stamped it.
      await sleep(3500);
      await stockShutdown(() => victim.start());
      restartedAt = nowSec();
      outageDone = true;
    };

    const socket = net.connect(p.port, "127.0.0.1");
    await new Promise<void>((resolve, reject) => {
      socket.once("connect", resolve);
      socket.once("error", reject);
    });
    let outagePromise: Promise<void> | undefined;
    let doneAtTick = Number.POSITIVE_INFINITY;
    for (let k = 0; k < maxTicks; k++) {
      if (k === stopAtTick) outagePromise = outage();
      const chunk = metrics.map((m, j) => `${m} ${value(j, k)} ${base + k}\n`).join("");
      if (!socket.write(chunk)) await new Promise((r) => socket.once("drain", r));
      lastTick = k;
      if (outageDone && doneAtTick === Number.POSITIVE_INFINITY) doneAtTick = k + extraTicks;
      if (k >= minTicks && k >= doneAtTick) break;
      await sleep(tickMs);
    }
    await new Promise<void>((resolve) => socket.end(resolve));
    await outagePromise;
    expect(outageDone, `outage not over after ${maxTicks} ticks`).toBe(true);
    const ticks = lastTick + 1;
    const total = ticks * metrics.length;
    console.info(
      `[e2e-carbon] streamed ${total} datapoints (${ticks} ticks); ` +
        `victim stopped at tick ${stopAtTick}, back ${restartedAt - nowSent.after} s after the -1 line`,
    );

    // Everything forwarded (the stream and the -1 line, to both), then every
    // metric's last point stored: resends come before the queued points, so
    // by then all of them are in.
    const s = await waitForStats(p, (x) => drained(x, total + 1), 30_000);
    const d = s.destinations.find((x) => x.spec === victim.destination);
    console.info(`[e2e-carbon] victim destination after the outage: ${JSON.stringify(d)}`);
    const expected = (j: number): Map<number, number> =>
      new Map(Array.from({ length: ticks }, (_, k) => [base + k, value(j, k)] as const));
    const last = base + ticks - 1;
    for (const c of [steady, victim]) {
      for (const [j, m] of metrics.entries()) {
        const points = await c.waitForPoints(m, (x) => x.has(last), 30_000);
        const missing = [...expected(j).keys()].filter((ts) => !points.has(ts));
        expect(
          missing.length,
          `${m} in ${c.instance}: missing timestamps ${missing.slice(0, 10).join(",")}...`,
        ).toBe(0);
        expect(points, `${m} in ${c.instance}`).toEqual(expected(j));
      }
      const now = await c.waitForPoints("e2e.stream.now", (x) => x.size === 1, 30_000);
      const [[ts, v]] = [...now] as [[number, number]];
      expect(v).toBe(1);
      // Stamped by polymur when it received the line (within a couple of
      // seconds), not by carbon on delivery after the restart.
      expect(ts).toBeGreaterThanOrEqual(nowSent.before - 2);
      expect(ts).toBeLessThanOrEqual(nowSent.after + 2);
    }
    expect(restartedAt).toBeGreaterThan(nowSent.after + 2);
    for (const x of s.destinations) expect(x.dropped, x.spec).toBe(0);
  });

  afterAll(teardown);
});

describe("e2e: hash-route over three carbon-caches matches carbon-relay", () => {
  it("stores each metric in the instance carbon-relay chose", async () => {
    const instances = ["a", "b", "c"] as const;
    const [mine, theirs] = await Promise.all([
      Promise.all(instances.map((instance) => cache({ instance }))),
      Promise.all(instances.map((instance) => cache({ instance }))),
    ]);
    // carbon's ring is keyed by (host, instance), not port: both rings are the
    // same although the ports differ.
    const reference = await startCarbonRelay({
      destinations: theirs.map((c) => c.destination),
      method: "consistent-hashing",
      hashType: "carbon_ch",
      replicationFactor: 1,
    });
    carbonRelays.push(reference);
    carbonDirs.push(reference.dir);
    const p = await polymur([
      "--distribution",
      "hash-route",
      "--hash",
      "carbon_ch",
      "--compat",
      "carbon",
      "--replication",
      "1",
      "--destinations",
      mine.map((c) => `127.0.0.1:${c.linePort}:${c.instance}`).join(","),
      // Two worker processes, each with its own ring: they must agree.
      "--workers",
      "2",
    ]);

    // ~300 names of the shapes people send: dotted paths, odd characters,
    // non-ASCII, deep and shallow, tagged with unsorted tags (hashed as sent:
    // carbon's TAG_RELAY_NORMALIZED and polymur's --hash-normalize are both off).
    const names: string[] = [];
    for (let i = 0; i < 100; i++) names.push(`servers.web${i}.cpu.user`);
    for (let i = 0; i < 80; i++) names.push(`app_${i}.requests-count.p99`);
    for (let i = 0; i < 40; i++) names.push(`e2e.hash.x${i * 7919}`);
    for (let i = 0; i < 40; i++) names.push(`dc${i % 4}.rack${i}.host-${i}.disk.sda${i % 3}.io`);
    for (let i = 0; i < 40; i++) names.push(`e2e.hash.tagged${i};env=prod;dc=d${i % 3};az=${i}`);
    for (let i = 0; i < 20; i++) names.push(`e2e.hash.ünï${i}.日本.ç`);
    const t = nowSec() - 5;
    const lines = names.map((n, i) => `${n} ${i} ${t}`);
    // Over several connections, which SO_REUSEPORT spreads over the workers.
    const parts = [0, 1, 2, 3].map((k) => lines.filter((_, i) => i % 4 === k));
    await Promise.all([
      ...parts.map((part) => send(p.port, part)),
      send(reference.linePort, lines),
    ]);

    // Everything polymur forwarded (counted per copy) must become a file.
    const s = await waitForStats(p, (x) => drained(x, null, names.length), 30_000);
    const copies = sum(s.destinations.map((d) => d.forwarded));
    const [mineFound, theirsFound] = await Promise.all([
      waitForFiles(mine, () => copies),
      waitForFiles(theirs, () => names.length),
    ]);
    const owner = (found: string[][]): Map<string, string[]> => {
      const m = new Map<string, string[]>();
      found.forEach((list, i) => {
        for (const n of list) m.set(n, [...(m.get(n) ?? []), instances[i]!]);
      });
      return m;
    };
    const polymurOwner = owner(mineFound);
    const carbonOwner = owner(theirsFound);
    const expectedNames = names.map(normaliseTags).sort();
    expect([...carbonOwner.keys()].sort(), "carbon-relay stored every name once").toEqual(
      expectedNames,
    );
    const mismatches = expectedNames
      .filter((n) => String(polymurOwner.get(n)) !== String(carbonOwner.get(n)))
      .map((n) => `${n}: polymur=${polymurOwner.get(n) ?? "-"} carbon-relay=${carbonOwner.get(n)}`);
    expect(mismatches, "metrics stored in a different instance than carbon-relay's").toEqual([]);
    expect(copies).toBe(names.length);
    expect([...polymurOwner.keys()].sort()).toEqual(expectedNames);
    // Sanity: the names really spread over the three instances.
    for (const list of mineFound) expect(list.length).toBeGreaterThan(30);
    console.info(
      `[e2e-carbon] hash-route: ${mineFound.map((l, i) => `${instances[i]}=${l.length}`).join(" ")}`,
    );
  });

  afterAll(teardown);
});
