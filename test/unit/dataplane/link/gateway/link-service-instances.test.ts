// The link service and proxy instances: two processes claiming one proxy id
// (a copied spool directory) are refused while one is connected, and never
// have one's batches acknowledged or dropped for the other's seqs.
import { Code, type ConnectError } from "@connectrpc/connect";
import { afterEach, describe, expect, it } from "vitest";
import type { GatewayCounters } from "../../../../../dataplane/link/gateway/gateway-counters.ts";
import { type CapturedLine, captureLog } from "../../../../fixtures/capture-log.ts";
import { LineSink } from "../../../../fixtures/line-sink.ts";
import {
  ackedSeq,
  batchRequest as batch,
  helloRequest as hello,
  LinkServiceHarness,
  type LinkStream as Stream,
} from "../../../../fixtures/link-service-harness.ts";
import { refusal } from "../../../../fixtures/refusal.ts";
import { relayConfig } from "../../../../fixtures/relay-config.ts";
import { until } from "../../../../fixtures/until.ts";

const cleanup: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f();
});

/**
 * A gateway's link service in memory (LinkServiceHarness), with a real
 * destination, a captured log, and `alive` answering what the test says
 * for each stream (by its client, which the test names).
 */
async function gateway(): Promise<{
  out: LineSink;
  counters: GatewayCounters;
  lines: CapturedLine[];
  dead: Set<string>;
  probes: string[];
  /** A stream from `client`, with tenant-a's key. */
  open(client: string): Stream;
  /** A stream from `client` that has sent its Hello, and its Welcome's acked seq. */
  connect(
    client: string,
    proxyId: string,
    instance?: string,
  ): Promise<{ s: Stream; acked: bigint }>;
}> {
  const out = await LineSink.start();
  cleanup.push(() => out.close());
  const { log, lines } = captureLog();
  const dead = new Set<string>();
  const probes: string[] = [];
  const h = new LinkServiceHarness({
    config: relayConfig(out.address),
    log,
    keysFile: "tenant-a secret-a\n",
    clientOf: (ctx) => ctx.requestHeader.get("x-test-client") ?? "?",
    alive: async (ctx) => {
      const who = ctx.requestHeader.get("x-test-client") ?? "?";
      probes.push(who);
      return !dead.has(who);
    },
    probeTimeoutMs: 50,
  });
  cleanup.push(() => h.close());
  const headers = (client: string) => ({
    authorization: "Bearer secret-a",
    "x-test-client": client,
  });
  return {
    out,
    counters: h.counters,
    lines,
    dead,
    probes,
    open: (client) => h.open(headers(client)),
    connect: async (client, proxyId, instance) => {
      const { stream, acked } = await h.connect(headers(client), proxyId, instance);
      return { s: stream, acked };
    },
  };
}

/**
 * Sends one batch per seq, each the one line `<name> <seq> 1700000000`,
 * all before reading; then the seqs of the Acks, one per batch.
 */
async function send(s: Stream, name: string, ...seqs: number[]): Promise<bigint[]> {
  for (const seq of seqs) s.requests.push(batch(seq, `${name} ${seq} 1700000000\n`));
  const acked: bigint[] = [];
  for (const _ of seqs) acked.push(ackedSeq(await s.next()));
  return acked;
}

async function closed(s: Stream): Promise<void> {
  s.requests.end();
  expect(await s.next()).toBe("end");
}

describe("link service: one proxy id, one instance at a time", () => {
  it("refuses a second instance while the first is connected (AlreadyExists), counted and logged; the first carries on", async () => {
    const g = await gateway();
    const a = await g.connect("10.0.0.1", "p1", "inst-A");
    const b = g.open("10.0.0.2");
    b.requests.push(hello("p1", "inst-B"));
    const e: ConnectError = await refusal(b.next());
    expect(e.code).toBe(Code.AlreadyExists);
    expect(e.rawMessage).toMatch(
      /^proxy id "p1" is in use by another connected proxy \(instance inst-A from 10\.0\.0\.1, since .*\): two proxies share one proxy id/,
    );
    expect(g.counters.streamsRefused.proxy_id_in_use).toBe(1);
    const warn = g.lines.find((l) => String(l.msg).startsWith("proxy stream refused"));
    expect(warn).toMatchObject({
      level: 40,
      proxyId: "p1",
      instance: "inst-B",
      client: "10.0.0.2",
      connected: { instance: "inst-A", client: "10.0.0.1" },
    });
    // The refused stream is not left open; the connected one still works.
    await until(() => g.counters.openStreams() === 1);
    expect(await send(a.s, "a.x", 1)).toEqual([1n]);
    // Once the first is gone, the second is taken.
    await closed(a.s);
    const b2 = await g.connect("10.0.0.2", "p1", "inst-B");
    expect(b2.acked).toBe(0n);
  });

  it("the same instance may open a second stream (a reconnect racing a half-dead one)", async () => {
    const g = await gateway();
    const a = await g.connect("10.0.0.1", "p1", "inst-A");
    expect(await send(a.s, "a.x", 1)).toEqual([1n]);
    const again = await g.connect("10.0.0.1", "p1", "inst-A");
    expect(again.acked).toBe(1n);
    expect(g.counters.streamsRefused.proxy_id_in_use).toBe(0);
  });

  it("other keys' and other ids' streams are not in the way", async () => {
    const g = await gateway();
    await g.connect("10.0.0.1", "p1", "inst-A");
    await g.connect("10.0.0.2", "p2", "inst-B");
    expect(g.counters.streamsRefused.proxy_id_in_use).toBe(0);
  });

  it("asks the connected stream for a PING; cuts it if none comes back, and the waiting instance gets in", async () => {
    const g = await gateway();
    const a = await g.connect("10.0.0.1", "p1", "inst-A");
    // Alive: refused, and the connected stream stays.
    const b = g.open("10.0.0.2");
    b.requests.push(hello("p1", "inst-B"));
    expect((await refusal(b.next())).code).toBe(Code.AlreadyExists);
    await until(() => g.probes.length === 1);
    expect(g.probes).toEqual(["10.0.0.1"]);
    expect(g.counters.streamsCut.unresponsive).toBe(0);
    // Its proxy died without closing the connection: the next attempt's probe cuts it.
    g.dead.add("10.0.0.1");
    const b2 = g.open("10.0.0.2");
    b2.requests.push(hello("p1", "inst-B"));
    expect((await refusal(b2.next())).code).toBe(Code.AlreadyExists);
    const cut = await refusal(a.s.next());
    expect(cut.code).toBe(Code.Unavailable);
    expect(cut.rawMessage).toMatch(/did not answer a PING/);
    expect(g.counters.streamsCut.unresponsive).toBe(1);
    expect(
      g.lines.some((l) => l.msg.startsWith("proxy stream cut: its connection did not answer")),
    ).toBe(true);
    await until(() => g.counters.openStreams() === 0);
    const b3 = await g.connect("10.0.0.2", "p1", "inst-B");
    expect(b3.acked).toBe(0n);
  });
});

describe("link service: each instance's batches are its own", () => {
  it("a copy behind the other: its batches at seqs the other already sent are queued, not dropped as duplicates", async () => {
    const g = await gateway();
    const a = await g.connect("10.0.0.1", "p1", "inst-A");
    expect(await send(a.s, "a.m", 1, 2, 3)).toEqual([1n, 2n, 3n]);
    await closed(a.s);
    // B, a copy of A's spool, made batches 1 and 2 of its own.
    const b = await g.connect("10.0.0.2", "p1", "inst-B");
    expect(b.acked).toBe(0n); // nothing of B's is freed by A's seqs
    expect(g.counters.proxyInstances.new).toBe(1);
    expect(g.lines.find((l) => String(l.msg).startsWith("proxy id taken over"))).toMatchObject({
      instance: "inst-B",
      previous: "inst-A",
    });
    expect(await send(b.s, "b.m", 1, 2)).toEqual([1n, 2n]);
    await g.out.waitForLines(5);
    expect(g.out.lines).toEqual([
      "a.m 1 1700000000",
      "a.m 2 1700000000",
      "a.m 3 1700000000",
      "b.m 1 1700000000",
      "b.m 2 1700000000",
    ]);
    expect(g.counters.json()["keys"]).toMatchObject({ "tenant-a": { duplicates: 0 } });
  });

  it("a copy ahead of the other: the other's later Welcome does not acknowledge what it never sent", async () => {
    const g = await gateway();
    const b = await g.connect("10.0.0.2", "p1", "inst-B");
    expect(await send(b.s, "b.m", 1, 2, 3, 4, 5)).toEqual([1n, 2n, 3n, 4n, 5n]);
    await closed(b.s);
    // A holds its own unsent batches 1..3: a Welcome saying 5 would free them.
    const a = await g.connect("10.0.0.1", "p1", "inst-A");
    expect(a.acked).toBe(0n);
    expect(await send(a.s, "a.m", 1)).toEqual([1n]);
    await g.out.waitForLines(6);
    expect(g.out.lines.filter((l) => l.startsWith("a.m"))).toEqual(["a.m 1 1700000000"]);
  });

  it("two instances taking turns: 'returning' is logged and counted, and each keeps its own de-duplication", async () => {
    const g = await gateway();
    const a = await g.connect("10.0.0.1", "p1", "inst-A");
    expect(await send(a.s, "a.m", 1, 2)).toEqual([1n, 2n]);
    await closed(a.s);
    const b = await g.connect("10.0.0.2", "p1", "inst-B");
    expect(await send(b.s, "b.m", 1)).toEqual([1n]);
    await closed(b.s);
    const a2 = await g.connect("10.0.0.1", "p1", "inst-A");
    expect(a2.acked).toBe(2n);
    expect(g.counters.proxyInstances).toEqual({ new: 1, returning: 1 });
    const warn = g.lines.find((l) => String(l.msg).startsWith("two live proxy instances"));
    expect(warn).toMatchObject({ level: 40, instance: "inst-A", previous: "inst-B" });
    // A's resend of 2 (its Ack lost) is a duplicate of its own; 3 is new.
    expect(await send(a2.s, "a.m", 2, 3)).toEqual([2n, 3n]);
    await g.out.waitForLines(4);
    expect(g.out.lines).toEqual([
      "a.m 1 1700000000",
      "a.m 2 1700000000",
      "b.m 1 1700000000",
      "a.m 3 1700000000",
    ]);
    expect(g.counters.json()["keys"]).toMatchObject({ "tenant-a": { duplicates: 1 } });
  });

  it("proxies that send no instance id are one instance, as before", async () => {
    const g = await gateway();
    const a = await g.connect("10.0.0.1", "p1");
    expect(await send(a.s, "a.m", 1)).toEqual([1n]);
    const again = await g.connect("10.0.0.2", "p1");
    expect(again.acked).toBe(1n);
    expect(g.counters.streamsRefused.proxy_id_in_use).toBe(0);
    expect(g.counters.proxyInstances).toEqual({ new: 0, returning: 0 });
  });

  it("an instance id over 256 characters ends the stream: InvalidArgument", async () => {
    const g = await gateway();
    const s = g.open("10.0.0.1");
    s.requests.push(hello("p1", "i".repeat(257)));
    const e = await refusal(s.next());
    expect(e.code).toBe(Code.InvalidArgument);
    expect(e.rawMessage).toBe("Hello.instance_id must be at most 256 characters");
  });
});
