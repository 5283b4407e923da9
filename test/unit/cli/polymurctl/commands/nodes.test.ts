import { create } from "@bufbuild/protobuf";
import { beforeAll, describe, expect, it, vi } from "vitest";
import {
  ageText,
  diskQueueSummary,
  nodesCommand,
  sizeText,
} from "../../../../../cli/polymurctl/commands/nodes.ts";
import type { DestinationReport } from "../../../../../controlplane/control-store.ts";
import { createNodeService } from "../../../../../controlplane/node-service.ts";
import {
  NodeSchema,
  type ReportStatusRequest,
  ReportStatusRequestSchema,
} from "../../../../../gen/polymur/control/v1/control_pb.ts";
import { cliControlPlane } from "../control-plane.ts";
import { captureIO } from "../io.ts";

// polymurctl nodes ls against a control plane in this process, its node
// records written to its store as a node's ReportStatus writes them.

const cp = cliControlPlane("nodes");

async function nodes(...argv: string[]) {
  vi.stubEnv("POLYMUR_ADMIN_TOKEN", cp.admin);
  const c = captureIO();
  const code = await nodesCommand.run(["ls", "--server", cp.url, ...argv], c.io);
  return { code, out: c.stdout(), err: c.stderr() };
}

function dest(spec: string, over: Partial<DestinationReport> = {}): DestinationReport {
  return {
    spec,
    state: "connected",
    forwarded: 10,
    dropped: 0,
    queued: 0,
    queuedBytes: 0,
    resent: 0,
    ...over,
  };
}

async function report(nodeId: string, group: string, destinations: DestinationReport[]) {
  await cp.store.putReport({
    nodeId,
    group,
    role: "relay",
    hostname: `${nodeId}.example`,
    appliedVersion: 0,
    counters: { received: 30, forwarded: 20, dropped: 1, rejected: 0, connections: 2 },
    destinations,
    lastSeenMs: Date.now(),
  });
}

beforeAll(async () => {
  await report("plain-1", "plain", [dest("10.0.0.1:2003", { queued: 5, queuedBytes: 80 })]);
  // A disk queue that holds nothing (empty segments left): nothing to show.
  await report("plain-2", "plain", [dest("10.0.0.2:2003", { diskBytes: 4096 })]);
  await report("disk-1", "disk", [
    dest("10.0.1.1:2003", {
      state: "backoff",
      queued: 1_500,
      queuedBytes: 640,
      diskDatapoints: 1_200,
      diskBytes: 65_536,
      oldestQueuedSeconds: 42.4,
    }),
    dest("10.0.1.2:2003", { diskDatapoints: 0, diskBytes: 4096 }),
    dest("10.0.1.3:2003", {
      queued: 300,
      diskDatapoints: 300,
      diskBytes: 2_000_000,
      oldestQueuedSeconds: 400,
    }),
  ]);
  await report("disk-2", "disk", [dest("10.0.1.1:2003")]);
});

describe("polymurctl nodes ls", () => {
  it("without datapoints on disk: the table as ever, no disk column", async () => {
    const r = await nodes("--group", "plain");
    expect(r.code).toBe(0);
    const lines = r.out.split("\n");
    expect(lines[0]).toMatch(
      /^NODE +GROUP +ROLE +HOST +APPLIED +CONNECTED +LAST SEEN +RECEIVED +FORWARDED +DROPPED$/,
    );
    expect(lines[1]).toMatch(
      /^plain-1 +plain +relay +plain-1\.example +0 +no \(stale, expires in 24h\) +\d+s ago +30 +20 +1$/,
    );
    expect(lines).toHaveLength(5);
    expect(lines.slice(3)).toEqual(["(state version 0)", ""]);
    expect(r.out).not.toContain("DISK");
  });

  it("with datapoints on disk: DISK and OLDEST per node, and the destinations that hold them", async () => {
    const r = await nodes("--group", "disk");
    expect(r.code).toBe(0);
    const [head, disk1, disk2, version, blank, title, ...rest] = r.out.split("\n");
    expect(head).toMatch(/ +DROPPED +DISK +OLDEST$/);
    // Summed over the node's destinations; the oldest of them.
    expect(disk1).toMatch(/^disk-1 .* 1 +1500 \(2\.0 MiB\) +7m$/);
    expect(disk2).toMatch(/^disk-2 .* 1 +- +-$/);
    expect(version).toBe("(state version 0)");
    expect(blank).toBe("");
    expect(title).toBe("destinations with datapoints on disk:");
    expect(rest).toEqual([
      "NODE    DESTINATION    STATE      QUEUED  DISK             OLDEST",
      "disk-1  10.0.1.1:2003  backoff    1500    1200 (64.0 KiB)  42s",
      "disk-1  10.0.1.3:2003  connected  300     300 (1.9 MiB)    7m",
      "",
    ]);
  });

  it("--json: every destination's disk queue, 0 without one", async () => {
    const r = await nodes("--json");
    expect(r.code).toBe(0);
    const got = JSON.parse(r.out) as {
      nodes: Array<{ id: string; destinations: Array<Record<string, unknown>> }>;
    };
    const byId = new Map(got.nodes.map((n) => [n.id, n.destinations]));
    expect(byId.get("disk-1")).toEqual([
      {
        spec: "10.0.1.1:2003",
        state: "backoff",
        forwarded: 10,
        dropped: 0,
        queued: 1500,
        queuedBytes: 640,
        resent: 0,
        diskDatapoints: 1200,
        diskBytes: 65536,
        oldestQueuedSeconds: 42.4,
        droppedBy: {},
        lastError: "",
      },
      expect.objectContaining({ spec: "10.0.1.2:2003", diskDatapoints: 0, diskBytes: 4096 }),
      expect.objectContaining({ spec: "10.0.1.3:2003", diskDatapoints: 300 }),
    ]);
    expect(byId.get("plain-1")?.[0]).toMatchObject({
      queued: 5,
      diskDatapoints: 0,
      diskBytes: 0,
      oldestQueuedSeconds: 0,
    });
  });
});

describe("polymurctl nodes ls --json: drops and rejects by reason, last errors", () => {
  it("carries what the node reported, as ReportStatus records it", async () => {
    const service = createNodeService({ store: cp.store, replica: "r1" });
    const handler = service.reportStatus as (r: ReportStatusRequest) => Promise<unknown>;
    await handler(
      create(ReportStatusRequestSchema, {
        nodeId: "reasons-1",
        group: "reasons",
        role: "relay",
        counters: {
          received: 100n,
          dropped: 4n,
          rejected: 3n,
          rejectedBy: { field_count: 2n, bad_value: 1n, line_too_long: 0n },
          unroutedBy: { no_match: 7n },
          droppedBy: { queue_full: 4n },
        },
        destinations: [
          {
            spec: "10.0.2.1:2003",
            state: "backoff",
            dropped: 4n,
            droppedBy: { queue_full: 4n },
            lastError: `connect ECONNREFUSED 10.0.2.1:2003 ${"x".repeat(500)}`,
          },
        ],
      }),
    );
    const r = await nodes("--json", "--group", "reasons");
    expect(r.code).toBe(0);
    const [n] = (JSON.parse(r.out) as { nodes: NodeJson[] }).nodes;
    // Reasons at zero are not kept.
    expect(n?.counters).toMatchObject({
      rejectedBy: { field_count: 2, bad_value: 1 },
      unroutedBy: { no_match: 7 },
      droppedBy: { queue_full: 4 },
    });
    expect(n?.destinations[0]?.droppedBy).toEqual({ queue_full: 4 });
    // The last error is kept to its first 200 characters.
    expect(n?.destinations[0]?.lastError).toMatch(/^connect ECONNREFUSED 10\.0\.2\.1:2003 x+$/);
    expect(n?.destinations[0]?.lastError).toHaveLength(200);
  });
});

interface NodeJson {
  counters: Record<string, unknown>;
  destinations: Array<{ droppedBy: Record<string, number>; lastError: string }>;
}

describe("diskQueueSummary", () => {
  const node = (id: string, disk: Array<[bigint, bigint, number]>) =>
    create(NodeSchema, {
      id,
      destinations: disk.map(([diskDatapoints, diskBytes, oldestQueuedSeconds], i) => ({
        spec: `10.0.0.${i}:2003`,
        diskDatapoints,
        diskBytes,
        oldestQueuedSeconds,
      })),
    });

  it("sums the destinations with datapoints on disk, over nodes; the oldest of them", () => {
    expect(
      diskQueueSummary([
        node("a", [
          [10n, 100n, 5],
          [0n, 4096n, 0],
        ]),
        node("b", []),
        node("c", [
          [1n, 10n, 90],
          [2n, 20n, 3],
        ]),
      ]),
    ).toEqual({ datapoints: 13, bytes: 130, destinations: 3, nodes: 2, oldestQueuedSeconds: 90 });
  });

  it("is null when no disk queue holds a datapoint (empty segments do not count)", () => {
    expect(diskQueueSummary([])).toBeNull();
    expect(diskQueueSummary([node("a", [[0n, 4096n, 0]]), node("b", [])])).toBeNull();
  });
});

describe("sizeText and ageText", () => {
  it.each([
    [0, "0 B"],
    [1023, "1023 B"],
    [1024, "1.0 KiB"],
    [65_536, "64.0 KiB"],
    [2_000_000, "1.9 MiB"],
    [3 * 1024 ** 3, "3.0 GiB"],
    [5 * 1024 ** 5, "5120.0 TiB"],
  ])("sizeText(%d) = %j", (n, want) => {
    expect(sizeText(n)).toBe(want);
  });

  it.each([
    [0, "0s"],
    [-3, "0s"],
    [42.4, "42s"],
    [119, "119s"],
    [400, "7m"],
    [7200, "2h"],
    [200_000, "2d"],
  ])("ageText(%d) = %j", (s, want) => {
    expect(ageText(s)).toBe(want);
  });
});
