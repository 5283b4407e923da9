import { describe, expect, it } from "vitest";
import type { DestinationStats } from "../../../../dataplane/forward/destination-stats.ts";
import type { Router } from "../../../../dataplane/route/router.ts";
import { captureLog } from "../../../fixtures/capture-log.ts";
import { ejectionCase } from "../../../fixtures/ejection-case.ts";
import { datapoints, freePort } from "../../../fixtures/line-sink.ts";
import { relayConfig } from "../../../fixtures/relay-config.ts";
import { feed, routerHarness } from "../../../fixtures/router-harness.ts";
import { until } from "../../../fixtures/until.ts";

/**
 * What the router counts (RouterStats): lines routed or with no
 * destination, and every destination it has had, removed ones included,
 * each with routed = forwarded + queued + dropped + undelivered + rerouted.
 */

const harness = routerHarness();
const { router, sink } = harness;

function rows(r: Router, suffix: string): DestinationStats[] {
  return r.stats().destinations.filter((x) => x.spec.endsWith(suffix));
}

function dest(r: Router, suffix: string): DestinationStats {
  const found = rows(r, suffix);
  if (found.length !== 1) throw new Error(`${found.length} rows for destination ${suffix}`);
  return found[0]!;
}

/** Destinations whose account does not hold, with their counters. */
function unbalanced(r: Router): string[] {
  return r.stats().destinations.flatMap((d) => {
    const sum = d.forwarded + d.queuedLines + d.dropped + d.undelivered + d.rerouted;
    return d.routed === sum ? [] : [`${d.spec}: routed ${d.routed} != ${sum}`];
  });
}

describe("Router: lines with no destination", () => {
  it("counts them as noDestination, not routed, and says so in the log at drain", async () => {
    const captured = captureLog();
    const r = router(relayConfig(""), captured.log);
    expect(r.routable).toBe(false);
    feed(r, datapoints("nowhere", 7));
    feed(r, datapoints("nowhere", 3));
    expect(r.stats()).toEqual({
      routed: 0,
      noDestination: 10,
      noMatch: 0,
      blackhole: 0,
      validate: 0,
      aggregation: null,
      destinations: [],
    });
    expect(await r.drain(0)).toEqual({});
    expect(
      captured.lines
        .filter((l) => l.reason === "no_destination")
        .map((l) => [l.level, l.unrouted, l.total]),
    ).toEqual([[40, 10, 10]]);
  });

  it("counts lines routed once they have a destination, and keeps the earlier count", async () => {
    const a = await sink();
    const r = router(relayConfig(""));
    feed(r, datapoints("early", 4));
    r.apply(relayConfig(a.address));
    feed(r, datapoints("later", 6));
    expect(r.stats()).toMatchObject({ routed: 6, noDestination: 4 });
    await a.waitForLines(6);
  });
});

describe("Router.routable", () => {
  it('is true while there are destinations; "routable" is emitted when some come after none', async () => {
    const [a, b] = [await sink(), await sink()];
    const r = router(relayConfig(""));
    let events = 0;
    r.on("routable", () => events++);
    expect(r.routable).toBe(false);
    r.apply(relayConfig(""));
    expect([r.routable, events]).toEqual([false, 0]);
    r.apply(relayConfig(a.address));
    expect([r.routable, events]).toEqual([true, 1]);
    // More destinations, or others: still routable, no new event.
    r.apply(relayConfig(`${a.address},${b.address}`));
    r.apply(relayConfig(b.address));
    expect([r.routable, events]).toEqual([true, 1]);
    r.apply(relayConfig(""));
    expect([r.routable, events]).toEqual([false, 1]);
    r.apply(relayConfig(a.address));
    expect([r.routable, events]).toEqual([true, 2]);
  });

  it("a router built with destinations is routable at once and emits nothing", async () => {
    const a = await sink();
    const r = router(relayConfig(a.address));
    let events = 0;
    r.on("routable", () => events++);
    expect(r.routable).toBe(true);
    r.apply(relayConfig(a.address));
    expect(events).toBe(0);
  });
});

describe("Router: removed destinations", () => {
  it("keep their counters in stats(), marked removed, after their drain", async () => {
    const [a, b] = [await sink(), await sink()];
    const r = router(relayConfig(`${a.address},${b.address}`));
    feed(r, datapoints("both", 12));
    await b.waitForLines(12);
    await until(() => dest(r, b.address).forwarded === 12);
    r.apply(relayConfig(a.address));
    await until(() => dest(r, b.address).state === "closed");
    expect(dest(r, b.address)).toMatchObject({
      removed: true,
      routed: 12,
      forwarded: 12,
      queuedLines: 0,
    });
    expect(dest(r, a.address).removed).toBeFalsy();
    // Later stats() calls still show it (totals never go backwards).
    feed(r, datapoints("a only", 5));
    expect(dest(r, b.address)).toMatchObject({ removed: true, routed: 12, forwarded: 12 });
    expect(unbalanced(r)).toEqual([]);
  });

  it("drain() awaits a removed destination still draining, and reports it", async () => {
    const a = await sink();
    const deadPort = await freePort();
    const dead = `127.0.0.1:${deadPort}`;
    const captured = captureLog();
    const r = router(relayConfig(`${a.address},${dead}`), captured.log);
    feed(r, datapoints("before", 20));
    // Removed with a long drain deadline: it is still draining when the router drains.
    r.apply(relayConfig(a.address), 60_000);
    expect(dest(r, dead)).toMatchObject({ removed: true, state: "draining", queuedLines: 20 });
    // The router's deadline cuts the removed destination's drain short.
    const left = await r.drain(100);
    expect(left).toEqual({ [a.address]: 0, [dead]: 20 });
    // Awaited: its removal drain has ended (and logged) before drain() resolved.
    expect(
      captured.lines.some((l) => l.destination === dead && /^removed destination/.test(l.msg)),
    ).toBe(true);
    expect(dest(r, dead)).toMatchObject({
      removed: true,
      state: "closed",
      routed: 20,
      undelivered: 20,
      queuedLines: 0,
    });
    expect(unbalanced(r)).toEqual([]);
  });

  it("a removal drain cut short by drain() counts its undelivered once, even with a peer that stops reading", async () => {
    // SIGTERM soon after a reload removed a slow destination: two drains of
    // one destination overlap while its socket is being ended.
    const s = await sink();
    const big = { queueBytes: 64 << 20 };
    const r = router(relayConfig(s.address, big));
    await until(() => dest(r, s.address).state === "connected");
    s.pause();
    // Far more than the two socket buffers hold: some is still queued at the deadlines.
    const line = (i: number): string => `m.${String(i).padStart(7, "0")} 1 1700000000`;
    for (let k = 0; k < 400; k++)
      feed(
        r,
        Array.from({ length: 1000 }, (_, i) => line(k * 1000 + i)),
      );
    r.apply(relayConfig("", big), 150);
    const left = await r.drain(50);
    const row = dest(r, s.address);
    expect(left[s.address]).toBeGreaterThan(0);
    expect(row.undelivered).toBe(left[s.address]);
    expect(unbalanced(r)).toEqual([]);
  });

  it("re-added: one row, with the counters of both lives summed", async () => {
    const a = await sink();
    const r = router(relayConfig(a.address));
    feed(r, datapoints("first", 10));
    await until(() => dest(r, a.address).forwarded === 10);
    r.apply(relayConfig(""));
    await until(() => dest(r, a.address).state === "closed");
    r.apply(relayConfig(a.address));
    feed(r, datapoints("second", 5));
    await a.waitForLines(15);
    await until(() => dest(r, a.address).forwarded === 15);
    const row = dest(r, a.address);
    expect(row).toMatchObject({ routed: 15, forwarded: 15, connects: 2, state: "connected" });
    expect(row.removed).toBeFalsy();
    expect(unbalanced(r)).toEqual([]);
  });

  it("re-added while its old self still drains: one row, summed, in the live state", async () => {
    const deadPort = await freePort();
    const dead = `127.0.0.1:${deadPort}`;
    const r = router(relayConfig(dead));
    feed(r, datapoints("old", 8));
    r.apply(relayConfig(""), 60_000);
    r.apply(relayConfig(dead));
    feed(r, datapoints("new", 3));
    const row = dest(r, dead);
    expect(row).toMatchObject({ routed: 11, queuedLines: 11 });
    expect(row.removed).toBeFalsy();
    expect(row.state).not.toBe("draining");
    expect(await r.drain(50)).toEqual({ [dead]: 11 });
    expect(dest(r, dead)).toMatchObject({ routed: 11, undelivered: 11, queuedLines: 0 });
    expect(unbalanced(r)).toEqual([]);
  });
});

describe("Router: ejection (hash-route, ejectAfter)", () => {
  it("re-routed lines keep every destination's account, and are not routed twice", async () => {
    const { a, b, r, names } = await ejectionCase(harness);
    // Queued for c before it is ejected: the flush at the end of the turn.
    await new Promise((resolve) => setImmediate(resolve));
    const forC = dest(r, ":c").routed;
    expect(forC).toBeGreaterThan(0);
    await until(() => a.lines.length + b.lines.length === names.length);
    const c = dest(r, ":c");
    expect(c).toMatchObject({
      ejected: true,
      routed: forC,
      rerouted: forC,
      forwarded: 0,
      queuedLines: 0,
    });
    await until(() => dest(r, ":a").forwarded + dest(r, ":b").forwarded === names.length);
    // a and b were routed their own lines and c's re-routed ones: over the rows, c's lines
    // count twice (routed to c, then to a or b), which c's rerouted balances…
    expect(dest(r, ":a").routed + dest(r, ":b").routed).toBe(names.length);
    const all = r.stats().destinations;
    expect(all.reduce((n, d) => n + d.routed - d.rerouted, 0)).toBe(names.length);
    expect(dest(r, ":a").forwarded).toBe(a.lines.length);
    expect(dest(r, ":b").forwarded).toBe(b.lines.length);
    // …but routed once by the router.
    expect(r.stats()).toMatchObject({ routed: names.length, noDestination: 0 });
    expect(unbalanced(r)).toEqual([]);
  });
});
