import { create } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import { ErrorCode, PolymurError } from "../../../../common/errors.ts";
import {
  configFromSnapshot,
  LAST_ERROR_MAX_CHARS,
  nodeStatusFromStats,
} from "../../../../dataplane/control/control-config.ts";
import { parseDestinationList } from "../../../../dataplane/forward/destination-spec.ts";
import { REJECT_REASONS, type RejectReason } from "../../../../dataplane/ingest/line-validator.ts";
import type { RelayConfig } from "../../../../dataplane/nodes/relay-config.ts";
import type { PipelineStats } from "../../../../dataplane/observe/pipeline-stats.ts";
import {
  Distribution,
  type NodeConfig,
  NodeConfigSchema,
  type Routing,
  RoutingSchema,
} from "../../../../gen/polymur/control/v1/control_pb.ts";
import { destinationStats } from "../../../fixtures/destination-stats.ts";

/** A relay's own configuration, with values that differ from every default. */
function base(): RelayConfig {
  return {
    listen: { host: "127.0.0.1", port: 12003 },
    udp: { host: "127.0.0.1", port: 12004 },
    maxLineLength: 4096,
    maxConnections: 7,
    idleTimeoutMs: 9_000,
    destinations: parseDestinationList("192.0.2.1:2003"),
    distribution: "hash-route",
    hash: { algo: "fnv1a_ch", compat: "carbon", replication: 2, diverseReplicas: false },
    ejectAfter: 3,
    queueBytes: 5 << 20,
    overflow: "block",
    queueBytesFor: { "192.0.2.1:2003": 1 << 20 },
    overflowFor: { "192.0.2.1:2003": "drop-newest" },
    resendBytes: 4096,
    backoffMinMs: 50,
    backoffMaxMs: 5_000,
    rules: null,
  };
}

function snapshot(
  destinations: string[],
  routing?: Partial<Omit<Routing, "$typeName">>,
): NodeConfig {
  return create(NodeConfigSchema, {
    version: 4n,
    group: "web",
    destinations,
    ...(routing === undefined ? {} : { routing: create(RoutingSchema, routing) }),
  });
}

describe("configFromSnapshot", () => {
  it("takes destinations and broadcast from the snapshot, the rest from the node", () => {
    const b = base();
    const c = configFromSnapshot(
      b,
      snapshot(["10.0.0.1:2003", "10.0.0.2:2004:b"], { distribution: Distribution.BROADCAST }),
    );
    expect(c.destinations.map((d) => d.id)).toEqual(["10.0.0.1:2003", "10.0.0.2:2004:b"]);
    expect(c.distribution).toBe("broadcast");
    // Broadcast: the node's hash options stay (unused) as they were.
    expect(c.hash).toBe(b.hash);
    const { destinations: _d, distribution: _x, hash: _h, ...rest } = c;
    const { destinations: _bd, distribution: _bx, hash: _bh, ...baseRest } = b;
    expect(rest).toEqual(baseRest);
    // The base is not modified.
    expect(b.destinations.map((d) => d.id)).toEqual(["192.0.2.1:2003"]);
    expect(b.distribution).toBe("hash-route");
  });

  it("keeps the base's own fields (listen, queues, limits) and their types", () => {
    const b = base();
    const c = configFromSnapshot(b, snapshot([], { distribution: Distribution.BROADCAST }));
    expect(c.listen).toEqual({ host: "127.0.0.1", port: 12003 });
    expect(c.udp).toEqual({ host: "127.0.0.1", port: 12004 });
    expect(c.queueBytes).toBe(5 << 20);
    expect(c.overflow).toBe("block");
    expect(c.queueBytesFor).toEqual({ "192.0.2.1:2003": 1 << 20 });
    expect(c.overflowFor).toEqual({ "192.0.2.1:2003": "drop-newest" });
    expect(c.maxLineLength).toBe(4096);
    expect(c.ejectAfter).toBe(3);
    expect(c.destinations).toEqual([]);
  });

  it("is broadcast without routing, or with DISTRIBUTION_UNSPECIFIED", () => {
    const b = base();
    for (const s of [snapshot(["10.0.0.1:2003"]), snapshot(["10.0.0.1:2003"], {})]) {
      const c = configFromSnapshot(b, s);
      expect(c.distribution).toBe("broadcast");
      expect(c.hash).toBe(b.hash);
    }
  });

  it("takes hash routing from the snapshot, replacing the node's hash options", () => {
    const c = configFromSnapshot(
      base(),
      snapshot(["10.0.0.1:2003:a", "10.0.0.2:2003:b", "10.0.0.3:2003:c"], {
        distribution: Distribution.HASH_ROUTE,
        hash: "mmh3_ch",
        compat: "carbon",
        replication: 2,
        diverseReplicas: true,
        router: "fast-hashing",
        normalize: "sorted-tags",
      }),
    );
    expect(c.distribution).toBe("hash-route");
    expect(c.hash).toEqual({
      algo: "mmh3_ch",
      compat: "carbon",
      replication: 2,
      diverseReplicas: true,
      router: "fast-hashing",
      normalize: "sorted-tags",
    });
  });

  it("fills defaults for empty routing fields (carbon_ch, carbon, replication 1, consistent-hashing, none)", () => {
    const c = configFromSnapshot(
      base(),
      snapshot(["10.0.0.1:2003"], { distribution: Distribution.HASH_ROUTE }),
    );
    expect(c.hash).toEqual({
      algo: "carbon_ch",
      compat: "carbon",
      replication: 1,
      diverseReplicas: false,
      router: "consistent-hashing",
      normalize: "none",
    });
  });

  it("an empty hash with fast-hashing becomes carbon_ch, not the router's mmh3_ch default", () => {
    // Unlike resolveOptions (hash-config.ts), which picks mmh3_ch for
    // fast-hashing when no algorithm is given. The control plane fills the
    // hash in before it stores a policy (controlplane/validation.ts), so its
    // snapshots never carry an empty hash; this pins the fallback as it is.
    const c = configFromSnapshot(
      base(),
      snapshot(["10.0.0.1:2003"], {
        distribution: Distribution.HASH_ROUTE,
        router: "fast-hashing",
      }),
    );
    expect(c.hash).toMatchObject({ algo: "carbon_ch", router: "fast-hashing" });
  });

  it("carbon-c-relay compat leaves diverseReplicas out (the reference's default), whatever the snapshot says", () => {
    for (const diverseReplicas of [false, true]) {
      const c = configFromSnapshot(
        base(),
        snapshot(["10.0.0.1:2003", "10.0.0.2:2003"], {
          distribution: Distribution.HASH_ROUTE,
          hash: "jump_fnv1a_ch",
          compat: "carbon-c-relay",
          replication: 2,
          diverseReplicas,
        }),
      );
      expect(c.hash).toEqual({
        algo: "jump_fnv1a_ch",
        compat: "carbon-c-relay",
        replication: 2,
        router: "consistent-hashing",
        normalize: "none",
      });
      expect("diverseReplicas" in c.hash).toBe(false);
    }
  });

  it("carbon compat keeps diverseReplicas false as false (not absent)", () => {
    const c = configFromSnapshot(
      base(),
      snapshot(["10.0.0.1:2003"], {
        distribution: Distribution.HASH_ROUTE,
        compat: "carbon",
        diverseReplicas: false,
      }),
    );
    expect(c.hash).toHaveProperty("diverseReplicas", false);
  });

  it("accepts an empty destination list (a group nobody has given destinations yet)", () => {
    expect(configFromSnapshot(base(), snapshot([])).destinations).toEqual([]);
  });

  it.each([
    [["10.0.0.1"], /^invalid destination "10.0.0.1": missing :port/],
    [["10.0.0.1:0"], /^invalid destination "10.0.0.1:0": port 0 is out of range/],
    [["10.0.0.1:2003", "10.0.0.1:2003"], /^duplicate destination "10.0.0.1:2003"$/],
    [["10.0.0.1:2003:a", "10.0.0.1:2003=a"], /^duplicate destination "10.0.0.1:2003=a"$/],
  ])("throws on an unusable snapshot: %j", (destinations, message) => {
    let err: unknown;
    try {
      configFromSnapshot(base(), snapshot(destinations, { distribution: Distribution.BROADCAST }));
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(PolymurError);
    expect((err as PolymurError).code).toBe(ErrorCode.DestinationSpec);
    expect((err as PolymurError).message).toMatch(message);
  });
});

function rejected(over: Partial<Record<RejectReason, number>> = {}): Record<RejectReason, number> {
  const r = Object.fromEntries(REJECT_REASONS.map((k) => [k, 0])) as Record<RejectReason, number>;
  return { ...r, ...over };
}

function stats(over: Partial<PipelineStats> = {}): PipelineStats {
  return {
    received: 0,
    generated: 0,
    rejected: rejected(),
    unrouted: { no_destination: 0, ingest_paused: 0, no_match: 0, blackhole: 0, validate: 0 },
    routed: 0,
    connections: 0,
    connectionsTotal: 0,
    connectionsRefused: 0,
    connectionsIdleClosed: 0,
    bytesIn: 0,
    listeners: [],
    destinations: [],
    paused: false,
    aggregation: null,
    ...over,
  };
}

describe("nodeStatusFromStats", () => {
  it("sums forwarded, dropped and rejected, and each by reason; received and connections as counted", () => {
    const s = stats({
      received: 1_000,
      connections: 3,
      connectionsTotal: 40,
      rejected: rejected({ bad_value: 4, field_count: 2, line_too_long: 1 }),
      unrouted: { no_destination: 0, ingest_paused: 0, no_match: 6, blackhole: 0, validate: 1 },
      destinations: [
        destinationStats("10.0.0.1:2003", { forwarded: 600, droppedBy: { queue_full: 5 } }),
        destinationStats("10.0.0.2:2003:b", {
          forwarded: 390,
          droppedBy: { queue_full: 7, worker_died: 2 },
        }),
      ],
    });
    expect(nodeStatusFromStats(s).counters).toEqual({
      received: 1_000n,
      forwarded: 990n,
      dropped: 14n,
      rejected: 7n,
      connections: 3n,
      // Only the reasons with a count.
      rejectedBy: { bad_value: 4n, field_count: 2n, line_too_long: 1n },
      unroutedBy: { no_match: 6n, validate: 1n },
      droppedBy: { queue_full: 12n, worker_died: 2n },
    });
  });

  it("reports each destination's spec, state, counters, drops by reason and last error", () => {
    const s = stats({
      destinations: [
        destinationStats("10.0.0.1:2003", {
          state: "connected",
          forwarded: 600,
          droppedBy: { queue_full: 5 },
          resent: 11,
          queuedLines: 20,
          queuedBytes: 640,
        }),
        destinationStats("[::1]:2003=b", {
          id: "[::1]:2003:b",
          state: "backoff",
          forwarded: 0,
          droppedBy: { queue_full: 9 },
          queuedLines: 300,
          queuedBytes: 9_600,
          lastError: "connect ECONNREFUSED",
        }),
      ],
    });
    expect(nodeStatusFromStats(s).destinations).toEqual([
      {
        spec: "10.0.0.1:2003",
        state: "connected",
        forwarded: 600n,
        dropped: 5n,
        queued: 20n,
        queuedBytes: 640n,
        resent: 11n,
        droppedBy: { queue_full: 5n },
      },
      {
        spec: "[::1]:2003=b",
        state: "backoff",
        forwarded: 0n,
        dropped: 9n,
        queued: 300n,
        queuedBytes: 9_600n,
        resent: 0n,
        droppedBy: { queue_full: 9n },
        lastError: "connect ECONNREFUSED",
      },
    ]);
  });

  it("cuts a long last error to LAST_ERROR_MAX_CHARS", () => {
    const long = `write EPIPE ${"x".repeat(1_000)}`;
    const s = stats({ destinations: [destinationStats("h:1", { lastError: long })] });
    const reported = nodeStatusFromStats(s).destinations[0]?.lastError;
    expect(reported).toBe(long.slice(0, LAST_ERROR_MAX_CHARS));
    expect(reported).toHaveLength(200);
  });

  it("a destination with a disk queue also reports what is on disk and its oldest datapoint's age", () => {
    const s = stats({
      destinations: [
        destinationStats("10.0.0.1:2003", {
          state: "backoff",
          queuedLines: 1_500,
          queuedBytes: 640,
          disk: {
            lines: 1_200,
            bytes: 65_536,
            spilled: 2_000,
            replayed: 800,
            failures: 1,
            oldestAgeMs: 42_500,
          },
        }),
      ],
    });
    expect(nodeStatusFromStats(s).destinations).toEqual([
      {
        spec: "10.0.0.1:2003",
        state: "backoff",
        forwarded: 0n,
        dropped: 0n,
        queued: 1_500n,
        queuedBytes: 640n,
        resent: 0n,
        droppedBy: {},
        diskDatapoints: 1_200n,
        diskBytes: 65_536n,
        oldestQueuedSeconds: 42.5,
      },
    ]);
  });

  it("takes connections from the caller when given (a gateway reports its open link streams)", () => {
    const s = stats({ connections: 3 });
    expect(nodeStatusFromStats(s, 17).counters.connections).toBe(17n);
    expect(nodeStatusFromStats(s, 0).counters.connections).toBe(0n);
    expect(nodeStatusFromStats(s).counters.connections).toBe(3n);
  });

  it("is all zeros for an idle node without destinations", () => {
    expect(nodeStatusFromStats(stats())).toEqual({
      counters: {
        received: 0n,
        forwarded: 0n,
        dropped: 0n,
        rejected: 0n,
        connections: 0n,
        rejectedBy: {},
        unroutedBy: {},
        droppedBy: {},
      },
      destinations: [],
    });
  });

  it("keeps counts beyond 2^32 exact", () => {
    const big = 2 ** 40 + 3;
    const s = stats({ received: big, destinations: [destinationStats("h:1", { forwarded: big })] });
    const status = nodeStatusFromStats(s);
    expect(status.counters.received).toBe(BigInt(big));
    expect(status.counters.forwarded).toBe(BigInt(big));
    expect(status.destinations[0]?.forwarded).toBe(BigInt(big));
  });
});
