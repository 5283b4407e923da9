import { create } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import {
  compressBatch,
  compressionCode,
  countNewlines,
} from "../../../../../dataplane/link/batch-codec.ts";
import { type ApiKey, sha256 } from "../../../../../dataplane/link/gateway/api-keys.ts";
import type { RouterConfig } from "../../../../../dataplane/route/router.ts";
import { type Batch, BatchSchema } from "../../../../../gen/polymur/ingest/v1/ingest_pb.ts";
import { captureLog } from "../../../../fixtures/capture-log.ts";
import { type GatewayIntake, gatewayIntake } from "../../../../fixtures/gateway-intake.ts";
import { datapoints } from "../../../../fixtures/line-sink.ts";
import { relayConfig } from "../../../../fixtures/relay-config.ts";
import { routerHarness } from "../../../../fixtures/router-harness.ts";
import { stillPending } from "../../../../fixtures/still-pending.ts";

/**
 * A gateway with no destination (a managed gateway before its first
 * configuration) acknowledges nothing: a proxy keeps its batches and sends
 * them again, instead of having them acknowledged and counted as unrouted.
 */

const { drainAfter, sink } = routerHarness();

const KEY: ApiKey = { name: "tenant-a", digest: sha256("secret-a") };
const CLIENT = "192.0.2.7";

function gateway(
  config: RouterConfig,
): GatewayIntake & { logs: ReturnType<typeof captureLog>["lines"] } {
  const { log, lines } = captureLog();
  const g = gatewayIntake(config, log);
  drainAfter(g.router);
  return { ...g, logs: lines };
}

function batch(seq: number, text: string): Batch {
  const raw = Buffer.from(text);
  return create(BatchSchema, {
    seq: BigInt(seq),
    compression: compressionCode("gzip"),
    payload: compressBatch(raw, "gzip"),
    lines: countNewlines(raw),
    rawBytes: raw.length,
  });
}

const text = (lines: readonly string[]): string => lines.map((l) => `${l}\n`).join("");

/** Everything the intake and its router counted: all zero when nothing was taken. */
function counted(g: GatewayIntake) {
  const r = g.router.stats();
  return {
    routed: r.routed,
    noDestination: r.noDestination,
    ingest: g.ingest.stats(0, false).received,
    bytesIn: g.ingest.bytesIn,
    batches:
      (g.counters.json()["keys"] as Record<string, { batches: number }>)[KEY.name]?.batches ?? 0,
    highest: g.dedup.highest(KEY.name, "p"),
  };
}

const NOTHING = { routed: 0, noDestination: 0, ingest: 0, bytesIn: 0, batches: 0, highest: 0 };

describe("BatchIntake without destinations", () => {
  it("batch() throws Unavailable, acknowledging, routing and counting nothing", () => {
    const g = gateway(relayConfig(""));
    const lines = datapoints("early", 10);
    let err: unknown;
    try {
      g.intake.batch(KEY, "p", CLIENT, batch(1, text(lines)));
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConnectError);
    expect((err as ConnectError).code).toBe(Code.Unavailable);
    expect((err as ConnectError).message).toMatch(/no destinations/);
    expect(counted(g)).toEqual(NOTHING);
  });

  it("logs the refusal, at most once per 10 s", () => {
    const g = gateway(relayConfig(""));
    for (let i = 1; i <= 3; i++) {
      expect(() => g.intake.batch(KEY, "p", CLIENT, batch(i, "a 1 1\n"))).toThrow(ConnectError);
    }
    expect(g.intake.legacy(KEY, CLIENT, compressBatch(Buffer.from("a 1 1\n"), "gzip")).status).toBe(
      503,
    );
    const warned = g.logs.filter((l) => /^no destinations/.test(l.msg));
    expect(warned).toHaveLength(1);
    expect(warned[0]).toMatchObject({ level: 40, client: CLIENT, key: KEY.name });
  });

  it("legacy() answers 503, counting nothing", () => {
    const g = gateway(relayConfig(""));
    const body = compressBatch(Buffer.from(text(datapoints("legacy", 5))), "gzip");
    expect(g.intake.legacy(KEY, CLIENT, body)).toEqual({
      status: 503,
      text: "No Destinations: send the batch again later\n",
    });
    expect(counted(g)).toEqual(NOTHING);
  });

  it("once destinations come, the batch sent again is acknowledged and delivered (not a duplicate)", async () => {
    const s = await sink();
    const g = gateway(relayConfig(""));
    const lines = datapoints("again", 10);
    expect(() => g.intake.batch(KEY, "p", CLIENT, batch(1, text(lines)))).toThrow(ConnectError);
    g.router.apply(relayConfig(s.address));
    expect(g.intake.batch(KEY, "p", CLIENT, batch(1, text(lines)))).toEqual({
      msg: { case: "ack", value: { seq: 1n } },
    });
    await s.waitForLines(10);
    expect(s.lines).toEqual(lines);
    expect(counted(g)).toMatchObject({
      routed: 10,
      noDestination: 0,
      ingest: 10,
      batches: 1,
      highest: 1,
    });
    expect(
      g.intake.legacy(KEY, CLIENT, compressBatch(Buffer.from(text(lines)), "gzip")).status,
    ).toBe(200);
  });
});

describe("BatchIntake.ready without destinations", () => {
  it("resolves true only once a configuration with destinations is applied", async () => {
    const s = await sink();
    const g = gateway(relayConfig(""));
    const p = g.intake.ready(new AbortController().signal);
    expect(await stillPending(p)).toBe(true);
    expect(g.logs.some((l) => /^no destinations: holding/.test(l.msg))).toBe(true);
    // A configuration still without destinations changes nothing.
    g.router.apply(relayConfig(""));
    expect(await stillPending(p)).toBe(true);
    g.router.apply(relayConfig(s.address));
    expect(await p).toBe(true);
    expect(g.router.listenerCount("routable")).toBe(0);
  });

  it("resolves false when the signal aborts first, and leaves no listener behind", async () => {
    const g = gateway(relayConfig(""));
    const ac = new AbortController();
    const p = g.intake.ready(ac.signal);
    await new Promise((r) => setImmediate(r));
    expect(g.router.listenerCount("routable")).toBe(1);
    ac.abort();
    expect(await p).toBe(false);
    expect(g.router.listenerCount("routable")).toBe(0);
    expect(await g.intake.ready(ac.signal)).toBe(false); // already aborted
  });
});
