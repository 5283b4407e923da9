import { describe, expect, it } from "vitest";
import { ErrorCode, PolymurError } from "../../../../common/errors.ts";
import { parseDestinationList } from "../../../../dataplane/forward/destination-spec.ts";
import { createHashRouter } from "../../../../dataplane/route/hash/hash-router.ts";
import {
  MIN_QUEUE_BYTES,
  type Router,
  raisedQueueBounds,
} from "../../../../dataplane/route/router.ts";
import { captureLog } from "../../../fixtures/capture-log.ts";
import { ejectionCase } from "../../../fixtures/ejection-case.ts";
import { datapoints, freePort } from "../../../fixtures/line-sink.ts";
import { relayConfig } from "../../../fixtures/relay-config.ts";
import { feed, routerHarness } from "../../../fixtures/router-harness.ts";
import { until } from "../../../fixtures/until.ts";

const harness = routerHarness();
const { router, sink } = harness;

function dest(r: Router, suffix: string) {
  const d = r.stats().destinations.find((x) => x.spec.endsWith(suffix));
  if (d === undefined) throw new Error(`no destination ${suffix}`);
  return d;
}

const sorted = (xs: readonly string[]): string[] => [...xs].sort();

describe("Router hash-route with ejectAfter", () => {
  it("takes a dead destination out of the ring, re-routes its queue, and takes it back", async () => {
    const { a, b, deadPort, dests, r, names } = await ejectionCase(harness);
    await until(() => a.lines.length + b.lines.length === names.length);
    expect(sorted([...a.lines, ...b.lines])).toEqual(sorted(names));
    expect(dest(r, ":c")).toMatchObject({ ejected: true, queuedLines: 0 });
    // The ring without c is carbon's: a and b keep exactly the names they had.
    const ring = createHashRouter(parseDestinationList(dests), {});
    const home = (n: string) => ring.routeName(n.split(" ")[0]!)[0]!;
    for (const l of a.lines) expect(home(l)).not.toBe(1);
    for (const l of b.lines) expect(home(l)).not.toBe(0);
    // c comes back: it rejoins, and its names go to it again.
    const c = await sink(deadPort);
    await until(() => dest(r, ":c").ejected === false);
    feed(r, names);
    const forC = names.filter((n) => home(n) === 2);
    await c.waitForLines(forC.length);
    expect(sorted(c.lines)).toEqual(sorted(forC));
  });
});

describe("Router.apply", () => {
  it("keeps a destination that stays: same connection, lines accumulated before are delivered once", async () => {
    const [a, b] = [await sink(), await sink()];
    // Instances: carbon's ring identifies a member by host and instance, not port.
    const [specA, specB] = [`${a.address}:a`, `${b.address}:b`];
    const r = router(relayConfig(specA, { distribution: "hash-route" }));
    await until(() => dest(r, specA).state === "connected");
    const before = datapoints("before", 50);
    // Hash routing accumulates until the end of the turn; the apply comes first.
    feed(r, before);
    r.apply(relayConfig(`${specA},${specB}`, { distribution: "hash-route" }));
    // The old table's accumulators went to a's queue before the switch.
    expect(dest(r, specA).queuedLines).toBe(before.length);
    expect(r.stats().destinations.map((d) => d.spec)).toEqual([specA, specB]);
    const after = datapoints("after", 200);
    feed(r, after);
    const ring = createHashRouter(parseDestinationList(`${specA},${specB}`), {});
    const forA = after.filter((l) => ring.routeName(l.split(" ")[0]!)[0] === 0);
    const forB = after.filter((l) => ring.routeName(l.split(" ")[0]!)[0] === 1);
    expect(forA.length).toBeGreaterThan(0);
    expect(forB.length).toBeGreaterThan(0);
    await a.waitForLines(before.length + forA.length);
    await b.waitForLines(forB.length);
    await until(() => dest(r, specA).forwarded === before.length + forA.length);
    expect(sorted(a.lines)).toEqual(sorted([...before, ...forA]));
    expect(sorted(b.lines)).toEqual(sorted(forB));
    // The same Destination: one connection, and its counters went on.
    expect(a.connections).toBe(1);
  });

  it("removes a destination: it stops receiving at once and drains what it had queued", async () => {
    const [a, b] = [await sink(), await sink()];
    const r = router(relayConfig(`${a.address},${b.address}`));
    const first = datapoints("first", 20);
    feed(r, first); // queued for both, not yet written (writes wait for the end of the turn)
    r.apply(relayConfig(a.address));
    // b is still in the stats, as removed: its counters stay in the totals.
    expect(r.stats().destinations.map((d) => [d.spec, d.removed ?? false])).toEqual([
      [a.address, false],
      [b.address, true],
    ]);
    const second = datapoints("second", 10);
    feed(r, second);
    await b.waitForLines(first.length);
    await a.waitForLines(first.length + second.length);
    expect(b.lines).toEqual(first);
    expect(a.lines).toEqual([...first, ...second]);
    await until(() => dest(r, b.address).state === "closed");
    expect(dest(r, b.address)).toMatchObject({
      removed: true,
      routed: first.length,
      forwarded: first.length,
      undelivered: 0,
      queuedLines: 0,
    });
    expect(r.stats().routed).toBe(first.length + second.length);
  });

  it("counts what a removed destination could not deliver by the drain deadline as undelivered", async () => {
    const deadPort = await freePort();
    const r = router(relayConfig(`127.0.0.1:${deadPort}`));
    feed(r, datapoints("lost", 20));
    r.apply(relayConfig(""), 50);
    expect(r.stats().destinations.map((d) => d.removed)).toEqual([true]);
    await until(() => dest(r, `:${deadPort}`).undelivered === 20);
    expect(dest(r, `:${deadPort}`)).toMatchObject({
      state: "closed",
      removed: true,
      routed: 20,
      queuedLines: 0,
      undelivered: 20,
    });
    expect(r.stats()).toMatchObject({ routed: 20, noDestination: 0 });
  });

  it("throws on a configuration whose routing cannot be built, and changes nothing", async () => {
    const [a, b] = [await sink(), await sink()];
    const good = relayConfig(a.address, { distribution: "hash-route" });
    const r = router(good);
    const invalid = [
      relayConfig("", { distribution: "hash-route" }), // no members
      // mmh3_ch exists only under carbon compat; b would be new.
      relayConfig(`${a.address},${b.address}`, {
        distribution: "hash-route",
        hash: { compat: "carbon-c-relay", algo: "mmh3_ch" },
      }),
    ];
    for (const c of invalid) {
      let err: unknown;
      try {
        r.apply(c);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(PolymurError);
      expect((err as PolymurError).code).toBe(ErrorCode.HashConfig);
    }
    expect(r.config).toBe(good);
    expect(r.stats().destinations.map((d) => d.spec)).toEqual([a.address]);
    feed(r, ["still.routed 1 1700000000"]);
    await a.waitForLines(1);
    expect(a.lines).toEqual(["still.routed 1 1700000000"]);
    expect(b.connections).toBe(0);
  });

  it("an invalid configuration leaves an ejected destination ejected", async () => {
    const [a, b] = [await sink(), await sink()];
    const deadPort = await freePort();
    const dests = `${a.address}:a,${b.address}:b,127.0.0.1:${deadPort}:c`;
    const r = router(relayConfig(dests, { distribution: "hash-route", ejectAfter: 2 }));
    await until(() => dest(r, ":c").ejected === true);
    expect(() => r.apply(relayConfig("", { distribution: "hash-route" }))).toThrow(PolymurError);
    expect(dest(r, ":c").ejected).toBe(true);
    // And it rejoins the ring once it is back.
    const c = await sink(deadPort);
    await until(() => dest(r, ":c").state === "connected");
    const ring = createHashRouter(parseDestinationList(dests), {});
    const names = Array.from({ length: 300 }, (_, i) => `rejoin.m${i} 1 1700000000`);
    const forC = names.filter((n) => ring.routeName(n.split(" ")[0]!)[0] === 2);
    await until(() => dest(r, ":c").ejected === false, 2_000);
    feed(r, names);
    await c.waitForLines(forC.length, 2_000);
  });
});

describe("Router under the block policy", () => {
  it('emits and logs "blocked" when a queue goes over its bound and "unblocked" once it drains, dropping nothing', async () => {
    const deadPort = await freePort();
    const captured = captureLog();
    // 64 KiB is the smallest bound a process gets.
    const r = router(
      relayConfig(`127.0.0.1:${deadPort}`, { overflow: "block", queueBytes: 64 * 1024 }),
      captured.log,
    );
    const events: string[] = [];
    r.on("blocked", () => events.push("blocked"));
    r.on("unblocked", () => events.push("unblocked"));
    const lines = datapoints("block.padding.padding.padding", 2_000); // about 90 KiB
    for (let i = 0; i < lines.length; i += 100) feed(r, lines.slice(i, i + 100));
    expect(events).toEqual(["blocked"]);
    expect(r.blocking).toBe(true);
    const s = await sink(deadPort);
    await until(() => events.length === 2);
    expect(events).toEqual(["blocked", "unblocked"]);
    expect(r.blocking).toBe(false);
    // Every node that feeds a router (relay listener, gateway streams) holds its senders meanwhile.
    expect(
      captured.lines.filter((l) => l.paused !== undefined).map((l) => [l.msg, l.paused]),
    ).toEqual([
      ["queue full under block policy: ingest paused", true],
      ["ingest resumed", false],
    ]);
    await s.waitForLines(lines.length);
    expect(s.lines).toEqual(lines);
    expect(r.stats().destinations[0]!.dropped).toBe(0);
  });
});

describe("Router.drain", () => {
  it("delivers what it can by the deadline and reports the rest per destination", async () => {
    const a = await sink();
    const deadPort = await freePort();
    const r = router(relayConfig(`${a.address},127.0.0.1:${deadPort}`));
    await until(() => dest(r, a.address).state === "connected");
    feed(r, datapoints("drain", 10));
    const left = await r.drain(300);
    expect(left).toEqual({ [a.address]: 0, [`127.0.0.1:${deadPort}`]: 10 });
    expect(a.lines).toHaveLength(10);
    expect(dest(r, a.address)).toMatchObject({ forwarded: 10, undelivered: 0 });
    expect(dest(r, `:${deadPort}`)).toMatchObject({ forwarded: 0, undelivered: 10 });
  });
});

describe("raisedQueueBounds", () => {
  it("names the bounds that a split over processes would take below 64 KiB each", () => {
    const config = relayConfig("127.0.0.1:1,127.0.0.1:2", {
      queueBytes: 100 * 1024,
      queueBytesFor: { "127.0.0.1:2": 1024 * 1024 },
    });
    expect(raisedQueueBounds(config, 1)).toEqual({});
    expect(raisedQueueBounds(config, 1 / 2)).toEqual({ default: 100 * 1024 });
    expect(raisedQueueBounds(config, 1 / 32)).toEqual({
      default: 100 * 1024,
      "127.0.0.1:2": 1024 * 1024,
    });
    expect(MIN_QUEUE_BYTES).toBe(64 * 1024);
  });
});
