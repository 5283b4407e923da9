// Pickle output end to end: plaintext into a real polymur relay whose
// destination is `pickle://` a real carbon-cache's pickle port
// (test/fixtures/carbon.ts), proven by reading back what carbon stored in its
// whisper files (and cache): every datapoint, exact values (carbon takes the
// pickled doubles as they are), many frames of at most 500 datapoints.
import { execFile } from "node:child_process";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type CarbonCache, carbonMode, startCarbonCache } from "../fixtures/carbon.ts";
import { sendLines } from "../fixtures/line-sink.ts";
import { PolymurProcess, waitForStats } from "../fixtures/polymur.ts";

const caches: CarbonCache[] = [];
const relays: PolymurProcess[] = [];
const carbonDirs: string[] = [];
const polymurPids: number[] = [];

async function teardown(): Promise<void> {
  await Promise.all(relays.splice(0).map((p) => p.stop()));
  await Promise.all(caches.splice(0).map((c) => c.close()));
}

beforeAll(async () => {
  console.info(`[pickle-out] carbon mode: ${await carbonMode()}`);
});

afterAll(async () => {
  await teardown();
  const ps = await new Promise<string>((resolve, reject) =>
    execFile("ps", ["-eo", "pid,args"], (err, out) => (err ? reject(err) : resolve(out))),
  );
  const rows = ps.split("\n").slice(1);
  const leaked = rows.filter(
    (row) =>
      carbonDirs.some((d) => row.includes(d)) ||
      polymurPids.includes(Number(row.trim().split(/\s+/)[0])),
  );
  expect(leaked).toEqual([]);
});

const nowSec = (): number => Math.floor(Date.now() / 1000);

describe("e2e: polymur pickle:// destination into a real carbon-cache's pickle receiver", () => {
  let c: CarbonCache;
  let p: PolymurProcess;

  beforeAll(async () => {
    c = await startCarbonCache({ instance: "a" });
    caches.push(c);
    carbonDirs.push(c.dir);
    p = await PolymurProcess.relay([
      "--destinations",
      `pickle://${c.host}:${c.picklePort}:${c.instance}`,
    ]);
    relays.push(p);
    if (p.child.pid !== undefined) polymurPids.push(p.child.pid);
  });

  afterAll(teardown);

  it("stores every datapoint, value for value, over many frames", async () => {
    // 12 metrics x 120 seconds = 1,440 datapoints: several frames of 500 at
    // least, whatever the writes' sizes; all within the 1 s archive (1 h).
    const metrics = 12;
    const seconds = 120;
    const t0 = nowSec() - 600;
    const value = (m: number, s: number): number => (m * 1000 + s) / 7 - 300;
    const lines: string[] = [];
    for (let s = 0; s < seconds; s++) {
      for (let m = 0; m < metrics; m++) {
        // String(n) is the shortest text that reads back as n: exact through float().
        lines.push(`pickle.out.m${m} ${value(m, s)} ${t0 + s}\n`);
      }
    }
    await sendLines(p.port, lines.join(""));
    const total = metrics * seconds;
    const stats = await waitForStats(
      p,
      (st) => st.destinations[0]!.forwarded === total && st.destinations[0]!.queuedLines === 0,
    );
    expect(stats.destinations[0]).toMatchObject({
      id: `pickle://${c.host}:${c.picklePort}:a`,
      spec: `pickle://${c.host}:${c.picklePort}:a`,
      forwarded: total,
      dropped: 0,
    });
    for (let m = 0; m < metrics; m++) {
      const points = await c.waitForPoints(`pickle.out.m${m}`, (x) => x.size >= seconds);
      const want = Array.from({ length: seconds }, (_, s) => [t0 + s, value(m, s)]);
      expect(
        [...points].sort((x, y) => x[0] - y[0]),
        `pickle.out.m${m}`,
      ).toEqual(want);
    }
  });

  it("exact doubles, unicode and tagged names, fractional and -1 timestamps", async () => {
    const t = nowSec() - 30;
    const cases: Array<[metric: string, line: string, stored: string, ts: number, value: number]> =
      [
        ["tiny", "pickle.val.tiny 1e-11", "pickle.val.tiny", t, 1e-11],
        ["max", "pickle.val.max 1.7976931348623157e308", "pickle.val.max", t, Number.MAX_VALUE],
        ["negzero", "pickle.val.negzero -0.0", "pickle.val.negzero", t, -0],
        ["long", "pickle.val.long 123456789.123456789", "pickle.val.long", t, 123456789.12345679],
        ["inf", "pickle.val.inf inf", "pickle.val.inf", t, Number.POSITIVE_INFINITY],
        ["underscore", "pickle.val.underscore 1_000.25", "pickle.val.underscore", t, 1000.25],
        ["unicode", "pickle.unicode.température 3.5", "pickle.unicode.température", t, 3.5],
        // carbon-cache normalises tags (sorted by key).
        ["tagged", "pickle.tagged;z=1;a=2 4.5", "pickle.tagged;a=2;z=1", t, 4.5],
      ];
    const lines = cases.map(([, l], i) =>
      // A fractional timestamp: carbon int()s it, as it does a plaintext one.
      i === 0 ? `${l} ${t}.75\n` : `${l} ${t}\n`,
    );
    await sendLines(p.port, lines.join(""));
    // -1 = now: the relay writes its clock's second in (validation), so the pickle has it.
    const before = nowSec();
    await sendLines(p.port, "pickle.ts.now 9.25 -1\n");
    const now = await c.waitForPoints("pickle.ts.now", (x) => x.size === 1);
    const [[nowTs, nowValue]] = [...now] as [[number, number]];
    expect(nowValue).toBe(9.25);
    expect(nowTs).toBeGreaterThanOrEqual(before);
    expect(nowTs).toBeLessThanOrEqual(nowSec());
    for (const [what, , stored, ts, value] of cases) {
      const points = await c.waitForPoints(stored, (x) => x.has(ts));
      expect([...points], what).toEqual([[ts, value]]);
      expect(Object.is(points.get(ts), value), `${what} sign/bits`).toBe(true);
    }
  });
});
