import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { DISK_QUEUE_DEFAULTS } from "../../../../dataplane/forward/destination-options.ts";
import { findQueues } from "../../../../dataplane/forward/queue-dir.ts";
import type { RouterConfig } from "../../../../dataplane/route/router.ts";
import { parseRules } from "../../../../dataplane/route/rules/rules-parser.ts";
import { relayConfig } from "../../../fixtures/relay-config.ts";
import { feed, routerHarness } from "../../../fixtures/router-harness.ts";
import { until, waitFor } from "../../../fixtures/until.ts";

// Registered before the harness's, so run after it (after-hooks run last first): the routers
// are drained before their directories go.
const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
});
const h = routerHarness();

function queueDir(): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), "polymur-router-disk-"));
  dirs.push(d);
  return d;
}

function withDisk(destinations: string, dir: string, over: Partial<RouterConfig> = {}) {
  return relayConfig(destinations, { disk: { ...DISK_QUEUE_DEFAULTS, dir }, ...over });
}

/** A port nothing listens on (bound, then closed). */
async function deadPort(): Promise<number> {
  const s = await h.sink();
  const port = s.port;
  await s.close();
  return port;
}

const lines = (n: number, tag: string): string[] =>
  Array.from({ length: n }, (_, i) => `${tag}.m${i} ${i} 1700000000`);

describe("Router with --queue-dir", () => {
  it("a destination that is down spills to disk; after the router is gone, a new one delivers it (recovered)", async () => {
    const dir = queueDir();
    const port = await deadPort();
    const a = h.router(withDisk(`127.0.0.1:${port}`, dir));
    await until("a connect failure", () => a.stats().destinations[0]!.failures > 0);
    feed(a, lines(500, "a"));
    await until("500 on disk", () => (a.stats().destinations[0]!.disk?.lines ?? 0) === 500);
    expect(await a.drain(5_000)).toEqual({ [`127.0.0.1:${port}`]: 0 });
    expect(findQueues(dir)).toHaveLength(1);

    const sink = await h.sink(port);
    const b = h.router(withDisk(`127.0.0.1:${port}`, dir));
    await until("every line delivered", () => sink.lines.length === 500);
    expect(sink.lines).toEqual(lines(500, "a"));
    const s = b.stats().destinations[0]!;
    expect(s.recovered).toBe(500);
    await until("queue empty", () => b.stats().destinations[0]!.queuedLines === 0);
    await until("segments deleted", () => findQueues(dir).length === 0);
  });

  it("a router with no destination yet (a managed node before its first configuration) adopts nothing; its configuration's destination opens its own queue", async () => {
    const dir = queueDir();
    const port = await deadPort();
    const a = h.router(withDisk(`127.0.0.1:${port}`, dir));
    await until("a connect failure", () => a.stats().destinations[0]!.failures > 0);
    feed(a, lines(100, "m"));
    await until("on disk", () => (a.stats().destinations[0]!.disk?.lines ?? 0) === 100);
    await a.drain(5_000);

    const b = h.router(withDisk("", dir));
    expect(b.stats().destinations).toEqual([]);
    const sink = await h.sink(port);
    b.apply(withDisk(`127.0.0.1:${port}`, dir));
    await until("delivered by the configured destination", () => sink.lines.length === 100);
    const rows = b.stats().destinations;
    expect(rows).toHaveLength(1);
    expect(rows[0]!.recovered).toBe(100);
    expect(rows[0]!.removed).toBeFalsy();
  });

  it("a destination removed and added again takes its disk queue over from its draining self", async () => {
    const dir = queueDir();
    const port = await deadPort();
    const live = await h.sink();
    const both = `127.0.0.1:${port},${live.address}`;
    const r = h.router(withDisk(both, dir));
    await until("the dead destination failed", () =>
      r.stats().destinations.some((d) => d.failures > 0),
    );
    feed(r, lines(50, "x"));
    await until("50 on the dead one's disk", () =>
      r.stats().destinations.some((d) => (d.disk?.lines ?? 0) === 50),
    );
    r.apply(withDisk(live.address, dir));
    // Removed: it drains (it is down: its disk keeps the lines), then is adopted and delivered.
    r.apply(withDisk(both, dir));
    const sink = await h.sink(port);
    await until("the dead one's lines arrive once it is up", () => sink.lines.length >= 50);
    expect(new Set(sink.lines)).toEqual(new Set(lines(50, "x")));
    expect(sink.lines).toHaveLength(50);
    const s = await waitFor("balanced row", () => {
      const row = r.stats().destinations.find((d) => d.spec === `127.0.0.1:${port}`)!;
      return row.queuedLines === 0 ? row : undefined;
    });
    expect(s.routed + s.recovered).toBe(
      s.forwarded + s.queuedLines + s.dropped + s.undelivered + s.rerouted,
    );
  });

  it("hash-route: a queue left by a destination no longer in the ring is re-routed over the ring", async () => {
    const dir = queueDir();
    const port = await deadPort();
    const a = h.router(withDisk(`127.0.0.1:${port}:c`, dir));
    await until("a connect failure", () => a.stats().destinations[0]!.failures > 0);
    feed(a, lines(300, "h"));
    await until("on disk", () => (a.stats().destinations[0]!.disk?.lines ?? 0) === 300);
    await a.drain(5_000);

    const s1 = await h.sink();
    const s2 = await h.sink();
    const b = h.router(
      withDisk(`${s1.address}:a,${s2.address}:b`, dir, { distribution: "hash-route" }),
    );
    await until("re-routed to the ring", () => s1.lines.length + s2.lines.length === 300);
    expect(new Set([...s1.lines, ...s2.lines])).toEqual(new Set(lines(300, "h")));
    await until("the left-over queue is removed", () => findQueues(dir).length === 0);
    const old = b.stats().destinations.find((d) => d.spec === `127.0.0.1:${port}:c`)!;
    expect(old.recovered).toBe(300);
    expect(old.rerouted).toBe(300);
  });

  it("a relay.conf's TCP cluster members have disk queues too", async () => {
    const dir = queueDir();
    const port = await deadPort();
    const rules = parseRules(
      `cluster down forward 127.0.0.1:${port};\nmatch * send to down;\n`,
      "relay.conf",
    );
    const a = h.router(withDisk("", dir, { rules }));
    await until("a connect failure", () => a.stats().destinations[0]!.failures > 0);
    feed(a, lines(40, "r"));
    await until("on disk", () => (a.stats().destinations[0]!.disk?.lines ?? 0) === 40);
    await a.drain(5_000);
    const sink = await h.sink(port);
    h.router(withDisk("", dir, { rules }));
    await until("delivered after the restart", () => sink.lines.length === 40);
    expect(sink.lines).toEqual(lines(40, "r"));
  });
});
