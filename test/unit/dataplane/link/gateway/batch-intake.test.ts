import zlib from "node:zlib";
import { create } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import { createLogger } from "../../../../../common/logger.ts";
import {
  type CompressionName,
  compressBatch,
  compressionCode,
  countNewlines,
} from "../../../../../dataplane/link/batch-codec.ts";
import { type ApiKey, sha256 } from "../../../../../dataplane/link/gateway/api-keys.ts";
import {
  BATCH_REJECT_REASONS,
  type BatchRejectReason,
  type GatewayCounters,
} from "../../../../../dataplane/link/gateway/gateway-counters.ts";
import type { Router, RouterConfig } from "../../../../../dataplane/route/router.ts";
import {
  type Batch,
  BatchSchema,
  Compression,
} from "../../../../../gen/polymur/ingest/v1/ingest_pb.ts";
import {
  type GatewayIntake,
  type GatewayIntakeOptions,
  gatewayIntake,
} from "../../../../fixtures/gateway-intake.ts";
import { datapoints, freePort } from "../../../../fixtures/line-sink.ts";
import { relayConfig } from "../../../../fixtures/relay-config.ts";
import { routerHarness } from "../../../../fixtures/router-harness.ts";
import { stillPending } from "../../../../fixtures/still-pending.ts";
import { until } from "../../../../fixtures/until.ts";

const log = createLogger({ level: "silent" });
const { drainAfter, sink } = routerHarness();

const KEY: ApiKey = { name: "tenant-a", digest: sha256("secret-a") };
const CLIENT = "192.0.2.7";

/**
 * A gateway's intake and everything it counts with; its router is drained
 * after the test. Every test here gives it a destination (up, or down: the
 * router then queues): with none, nothing is acknowledged
 * (batch-intake-routable.test.ts).
 */
function gateway(config: RouterConfig, over: GatewayIntakeOptions = {}): GatewayIntake {
  const g = gatewayIntake(config, log, over);
  drainAfter(g.router);
  return g;
}

/** A proxy's Batch of `text` (whole lines), as the proxy builds it. */
function batch(
  seq: number | bigint,
  text: string,
  compression: CompressionName = "zstd",
  over: Partial<Pick<Batch, "compression" | "payload" | "lines" | "rawBytes">> = {},
): Batch {
  const raw = Buffer.from(text);
  return create(BatchSchema, {
    seq: BigInt(seq),
    compression: compressionCode(compression),
    payload: compressBatch(raw, compression),
    lines: countNewlines(raw),
    rawBytes: raw.length,
    ...over,
  });
}

const ack = (seq: number) => ({ msg: { case: "ack", value: { seq: BigInt(seq) } } });
const queuedLines = (r: Router): number =>
  r.stats().destinations.reduce((n, d) => n + d.queuedLines, 0);
const keyCounters = (c: GatewayCounters) =>
  (c.json()["keys"] as Record<string, Record<string, number>>)[KEY.name];

describe("BatchIntake.batch", () => {
  it("acks only once the valid lines are queued, and counts the rest", async () => {
    const [a, b] = [await sink(), await sink()];
    // Hash routing accumulates lines until the end of the turn: the ack must
    // not wait for that, nor come before it.
    const g = gateway(relayConfig(`${a.address}:a,${b.address}:b`, { distribution: "hash-route" }));
    const text = "a.b 1 1700000000\nbad\nc.d 2 1700000000\n";
    const r = g.intake.batch(KEY, "proxy-1", CLIENT, batch(1, text));
    expect(r).toEqual(ack(1));
    expect(queuedLines(g.router)).toBe(2);
    expect(g.ingest.accepted).toBe(2);
    expect(g.ingest.rejects.counts.field_count).toBe(1);
    expect(g.ingest.bytesIn).toBe(text.length);
    expect(g.dedup.highest(KEY.name, "proxy-1")).toBe(1);
    expect(keyCounters(g.counters)).toMatchObject({
      batches: 1,
      lines: 2,
      rejectedLines: 1,
      rawBytes: text.length,
    });
    await until(() => a.lines.length + b.lines.length === 2);
    expect([...a.lines, ...b.lines].sort()).toEqual(["a.b 1 1700000000", "c.d 2 1700000000"]);
  });

  it.each(["zstd", "gzip", "none"] as const)("takes %s payloads", async (compression) => {
    const s = await sink();
    const g = gateway(relayConfig(s.address));
    const lines = datapoints(`c.${compression}`, 20);
    const text = lines.join("\n") + "\n";
    expect(g.intake.batch(KEY, "p", CLIENT, batch(1, text, compression))).toEqual(ack(1));
    await s.waitForLines(lines.length);
    expect(s.lines).toEqual(lines);
  });

  it("prefixes the name part, before any tags, with --key-prefix", async () => {
    const s = await sink();
    const g = gateway(relayConfig(s.address), { keyPrefix: true });
    const key: ApiKey = { name: "product-A", digest: sha256("x") };
    const text = "web01.cpu 1 1700000000\nweb01.mem;dc=eu 2 1700000000\n";
    expect(g.intake.batch(key, "p", CLIENT, batch(1, text))).toEqual(ack(1));
    await s.waitForLines(2);
    expect(s.lines).toEqual([
      "product-A.web01.cpu 1 1700000000",
      "product-A.web01.mem;dc=eu 2 1700000000",
    ]);
  });

  it("frames lines with its maxLineLength, which a reload changes from the next batch", async () => {
    const s = await sink();
    const g = gateway(relayConfig(s.address), { maxLineLength: 100 });
    const long = `long.${"x".repeat(150)} 1 1700000000`;
    expect(g.intake.batch(KEY, "p", CLIENT, batch(1, `${long}\n`))).toEqual(ack(1));
    expect(g.ingest.rejects.counts.line_too_long).toBe(1);
    g.intake.maxLineLength = 1000;
    expect(g.intake.batch(KEY, "p", CLIENT, batch(2, `${long}\n`))).toEqual(ack(2));
    await s.waitForLines(1);
    expect(s.lines).toEqual([long]);
    expect(g.ingest.rejects.counts.line_too_long).toBe(1);
  });

  it("acks a resent seq again without queueing it twice", async () => {
    const s = await sink();
    const g = gateway(relayConfig(s.address));
    const one = batch(1, "d.a 1 1700000000\nd.b 2 1700000000\n");
    expect(g.intake.batch(KEY, "p", CLIENT, one)).toEqual(ack(1));
    expect(g.intake.batch(KEY, "p", CLIENT, one)).toEqual(ack(1));
    expect(queuedLines(g.router)).toBe(2);
    // Another proxy id has its own seqs.
    expect(g.intake.batch(KEY, "other", CLIENT, batch(1, "d.c 3 1700000000\n"))).toEqual(ack(1));
    expect(g.intake.batch(KEY, "p", CLIENT, batch(2, "d.d 4 1700000000\n"))).toEqual(ack(2));
    // Older than the newest: acknowledged, not queued.
    expect(g.intake.batch(KEY, "p", CLIENT, batch(1, "d.x 9 1700000000\n"))).toEqual(ack(1));
    expect(g.ingest.accepted).toBe(4);
    expect(keyCounters(g.counters)).toMatchObject({ batches: 3, lines: 4, duplicates: 2 });
    await s.waitForLines(4);
    expect(s.lines).toEqual([
      "d.a 1 1700000000",
      "d.b 2 1700000000",
      "d.c 3 1700000000",
      "d.d 4 1700000000",
    ]);
  });

  const MAX = 4096;
  const small = "r.a 1 1700000000\nr.b 2 1700000000\n";
  const big = datapoints("r.big", 200).join("\n") + "\n"; // > MAX, compresses well
  const bomb = zlib.zstdCompressSync(Buffer.alloc(1 << 20, "a"));
  const cases: Array<[string, BatchRejectReason, () => Batch]> = [
    ["seq 0", "bad_seq", () => batch(0, small)],
    ["a seq above 2^53", "bad_seq", () => batch(2n ** 53n, small)],
    ["a payload over --max-batch-bytes", "too_large", () => batch(1, big, "none")],
    ["raw_bytes over --max-batch-bytes", "too_large", () => batch(1, big)],
    [
      "a payload that decompresses beyond --max-batch-bytes",
      "too_large",
      () => batch(1, small, "zstd", { payload: bomb, rawBytes: 100 }),
    ],
    [
      "compression unset",
      "bad_compression",
      () => batch(1, small, "zstd", { compression: Compression.UNSPECIFIED }),
    ],
    [
      "an unknown compression",
      "bad_compression",
      () => batch(1, small, "zstd", { compression: 42 as Compression }),
    ],
    [
      "a payload that does not decompress",
      "corrupt",
      () => batch(1, small, "zstd", { payload: Buffer.from("not zstd at all") }),
    ],
    [
      "fewer bytes than raw_bytes",
      "truncated",
      () => batch(1, small, "zstd", { rawBytes: small.length + 1 }),
    ],
    ["a last line without newline", "truncated", () => batch(1, "r.a 1 1700000000", "none")],
    ["fewer lines than it says", "truncated", () => batch(1, small, "zstd", { lines: 3 })],
  ];

  it.each(cases)("rejects %s (%s), counts it and queues nothing", async (_, reason, make) => {
    const s = await sink();
    const g = gateway(relayConfig(s.address), { maxBatchBytes: MAX });
    const b = make();
    const r = g.intake.batch(KEY, "p", CLIENT, b);
    expect(r.msg?.case).toBe("reject");
    const value = r.msg?.value as { seq: bigint; reason: string };
    expect(value.seq).toBe(b.seq);
    expect(value.reason.startsWith(`${reason}: `)).toBe(true);
    for (const x of BATCH_REJECT_REASONS) expect(g.counters.rejected[x]).toBe(x === reason ? 1 : 0);
    const clients = g.counters.json()["clients"] as Record<string, { rejectedBatches: number }>;
    expect(clients[CLIENT]?.rejectedBatches).toBe(1);
    expect(queuedLines(g.router)).toBe(0);
    expect(g.ingest.accepted).toBe(0);
    expect(g.dedup.highest(KEY.name, "p")).toBe(0);
  });
});

describe("BatchIntake.legacy (polymur-proxy POST /ingest bodies)", () => {
  it("answers 200 once the lines are queued; a last line without newline still counts", async () => {
    const s = await sink();
    const g = gateway(relayConfig(s.address));
    const body = zlib.gzipSync("a.b 1 1700000000\nbad\nc.d 2 1700000000");
    expect(g.intake.legacy(KEY, CLIENT, body)).toEqual({ status: 200, text: "Batch Received\n" });
    expect(queuedLines(g.router)).toBe(2);
    expect(g.ingest.rejects.counts.field_count).toBe(1);
    expect(keyCounters(g.counters)).toMatchObject({ batches: 1, lines: 2, rejectedLines: 1 });
    await s.waitForLines(2);
    expect(s.lines).toEqual(["a.b 1 1700000000", "c.d 2 1700000000"]);
  });

  it("answers 400 to a body that is not gzip, 413 to one that inflates beyond the limit", async () => {
    const s = await sink();
    const g = gateway(relayConfig(s.address), { maxBatchBytes: 4096 });
    expect(g.intake.legacy(KEY, CLIENT, Buffer.from("a.b 1 1700000000\n"))).toEqual({
      status: 400,
      text: "Batch Malformed\n",
    });
    const bomb = zlib.gzipSync(Buffer.alloc(1 << 20, "a"));
    expect(g.intake.legacy(KEY, CLIENT, bomb)).toEqual({ status: 413, text: "Batch Too Large\n" });
    expect(queuedLines(g.router)).toBe(0);
    expect(g.ingest.accepted).toBe(0);
  });
});

describe("BatchIntake.ready", () => {
  /** A gateway whose only destination is down, under the block policy, made to block. */
  async function blocked(): Promise<{
    g: ReturnType<typeof gateway>;
    port: number;
    lines: string[];
  }> {
    const port = await freePort();
    const g = gateway(
      relayConfig(`127.0.0.1:${port}`, { overflow: "block", queueBytes: 64 * 1024 }), // the smallest bound
    );
    const lines = datapoints("ready.padding.padding.padding", 2_000); // about 90 KiB
    expect(g.intake.batch(KEY, "p", CLIENT, batch(1, lines.join("\n") + "\n"))).toEqual(ack(1));
    expect(g.router.blocking).toBe(true);
    return { g, port, lines };
  }

  it("resolves at once while the router takes lines", async () => {
    const s = await sink();
    const g = gateway(relayConfig(s.address));
    expect(await g.intake.ready(new AbortController().signal)).toBe(true);
  });

  it('waits while the router is blocked and resolves true on its "unblocked"', async () => {
    const { g, port, lines } = await blocked();
    const p = g.intake.ready(new AbortController().signal);
    expect(await stillPending(p)).toBe(true);
    const s = await sink(port); // the destination comes up and its queue drains
    expect(await p).toBe(true);
    expect(g.router.blocking).toBe(false);
    await s.waitForLines(lines.length);
    expect(g.router.listenerCount("unblocked")).toBe(0);
  });

  it("resolves false when the signal aborts first, and leaves no listener behind", async () => {
    const { g } = await blocked();
    const ac = new AbortController();
    const p = g.intake.ready(ac.signal);
    expect(g.router.listenerCount("unblocked")).toBe(1);
    ac.abort();
    expect(await p).toBe(false);
    expect(g.router.listenerCount("unblocked")).toBe(0);
    expect(await g.intake.ready(ac.signal)).toBe(false); // already aborted
    expect(g.router.blocking).toBe(true);
  });
});
