import { UsageError } from "../../../common/errors.ts";
import { ControlService, type Node } from "../../../gen/polymur/control/v1/control_pb.ts";
import {
  COMMON_HELP,
  COMMON_OPTIONS,
  commandArgs,
  EXIT,
  isoTime,
  printJson,
  runWithConnection,
  table,
} from "../client/index.ts";
import type { Command, CommandIO } from "../command.ts";

const usage = `usage: polymurctl nodes ls [--group NAME]

Data-plane nodes known to the control plane (through any of its replicas): whether
each is subscribed now, the state version it applied, and its counters. A node not
connected is stale: its record is kept until it expires (the control plane's
--node-expiry, default 24h, after it was last seen), then removed. When a
node's destinations hold datapoints in their disk queues (--queue-dir), DISK
shows how many (and their bytes) and OLDEST the age of the oldest datapoint
waiting, and a second table lists those destinations.

${COMMON_HELP}`;

const OPTIONS = { group: { type: "string" } } as const;

export function ago(t: { seconds: bigint } | undefined, nowMs: number): string {
  if (t === undefined || t.seconds === 0n) return "never";
  return `${ageText(nowMs / 1000 - Number(t.seconds))} ago`;
}

/** A duration in seconds, rounded to its largest unit: `42s`, `5m`, `3h`, `2d`. */
export function ageText(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  if (s < 120) return `${s}s`;
  if (s < 7200) return `${Math.round(s / 60)}m`;
  if (s < 172800) return `${Math.round(s / 3600)}h`;
  return `${Math.round(s / 86400)}d`;
}

/** A byte count in binary units, one decimal: `512 B`, `64.0 KiB`, `1.5 GiB`. */
export function sizeText(bytes: number): string {
  const units = ["KiB", "MiB", "GiB", "TiB"];
  if (bytes < 1024) return `${bytes} B`;
  let v = bytes / 1024;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v.toFixed(1)} ${units[i]}`;
}

/** What the destinations of some nodes hold in their disk queues (--queue-dir). */
export interface DiskQueueSummary {
  /** Datapoints waiting on disk. */
  datapoints: number;
  /** Bytes of the disk queues' segments. */
  bytes: number;
  /** Destination rows (one per node and destination) with datapoints on disk. */
  destinations: number;
  /** Nodes with datapoints on disk. */
  nodes: number;
  /** Age of the oldest datapoint waiting among them. */
  oldestQueuedSeconds: number;
}

/** The disk queues of `nodes` as reported, summed; null when none holds a datapoint. */
export function diskQueueSummary(nodes: readonly Node[]): DiskQueueSummary | null {
  const sum: DiskQueueSummary = {
    datapoints: 0,
    bytes: 0,
    destinations: 0,
    nodes: 0,
    oldestQueuedSeconds: 0,
  };
  for (const n of nodes) {
    const onDisk = n.destinations.filter((d) => d.diskDatapoints > 0n);
    if (onDisk.length === 0) continue;
    sum.nodes++;
    for (const d of onDisk) {
      sum.destinations++;
      sum.datapoints += Number(d.diskDatapoints);
      sum.bytes += Number(d.diskBytes);
      sum.oldestQueuedSeconds = Math.max(sum.oldestQueuedSeconds, d.oldestQueuedSeconds);
    }
  }
  return sum.nodes === 0 ? null : sum;
}

/** `1200 (64.0 KiB)`: datapoints on disk and their bytes. */
function diskText(datapoints: number, bytes: number): string {
  return `${datapoints} (${sizeText(bytes)})`;
}

/** The CONNECTED cell: `yes`, or `no (stale, expires in 23h)` (`no (stale)` when records never expire). */
export function connectedText(n: Node, nowMs: number): string {
  if (n.connected) return "yes";
  if (n.expiresAt === undefined) return "no (stale)";
  return `no (stale, expires in ${ageText(Number(n.expiresAt.seconds) - nowMs / 1000)})`;
}

export function nodeJson(n: Node, version: bigint) {
  return {
    id: n.id,
    group: n.group,
    role: n.role,
    hostname: n.hostname,
    appliedVersion: n.appliedVersion,
    current: n.appliedVersion === version,
    connected: n.connected,
    stale: !n.connected,
    ...(n.expiresAt === undefined ? {} : { expiresAt: isoTime(n.expiresAt) }),
    lastSeen: isoTime(n.lastSeen),
    counters: {
      received: n.counters?.received ?? 0n,
      forwarded: n.counters?.forwarded ?? 0n,
      dropped: n.counters?.dropped ?? 0n,
      rejected: n.counters?.rejected ?? 0n,
      connections: n.counters?.connections ?? 0n,
      // Per reason, only reasons with a count: {"field_count": 3}.
      rejectedBy: n.counters?.rejectedBy ?? {},
      unroutedBy: n.counters?.unroutedBy ?? {},
      droppedBy: n.counters?.droppedBy ?? {},
    },
    destinations: n.destinations.map((d) => ({
      spec: d.spec,
      state: d.state,
      forwarded: d.forwarded,
      dropped: d.dropped,
      queued: d.queued,
      queuedBytes: d.queuedBytes,
      resent: d.resent,
      diskDatapoints: d.diskDatapoints,
      diskBytes: d.diskBytes,
      oldestQueuedSeconds: d.oldestQueuedSeconds,
      droppedBy: d.droppedBy,
      // Since it last connected; "" when none.
      lastError: d.lastError,
    })),
  };
}

/** A node's DISK and OLDEST cells: its destinations' disk queues summed, or `-`. */
function nodeDiskCells(n: Node): string[] {
  const s = diskQueueSummary([n]);
  return s === null
    ? ["-", "-"]
    : [diskText(s.datapoints, s.bytes), ageText(s.oldestQueuedSeconds)];
}

export const nodesCommand: Command = {
  usage,
  options: { ...COMMON_OPTIONS, ...OPTIONS },
  async run(argv: readonly string[], io: CommandIO): Promise<number> {
    const parsed = commandArgs("nodes", usage, argv, OPTIONS, io);
    if (typeof parsed === "number") return parsed;
    const { values, positionals } = parsed;
    const [sub = "ls", ...args] = positionals;
    return runWithConnection(`nodes ${sub}`, values, io, async (conn) => {
      if (sub !== "ls" && sub !== "list")
        throw new UsageError(`unknown nodes command "${sub}" (ls)`);
      if (args.length > 0) throw new UsageError(`unexpected argument "${args[0]}"`);
      const r = await conn.client(ControlService).listNodes({});
      const nodes = r.nodes.filter((n) => values.group === undefined || n.group === values.group);
      if (conn.settings.json) {
        printJson(io, { version: r.version, nodes: nodes.map((n) => nodeJson(n, r.version)) });
        return EXIT.ok;
      }
      if (nodes.length === 0) {
        io.stdout.write(`no nodes (state version ${r.version})\n`);
        return EXIT.ok;
      }
      const now = Date.now();
      // The disk columns and table only when some node holds datapoints on disk.
      const disk = diskQueueSummary(nodes) !== null;
      io.stdout.write(
        table(
          [
            "NODE",
            "GROUP",
            "ROLE",
            "HOST",
            "APPLIED",
            "CONNECTED",
            "LAST SEEN",
            "RECEIVED",
            "FORWARDED",
            "DROPPED",
            ...(disk ? ["DISK", "OLDEST"] : []),
          ],
          nodes.map((n) => [
            n.id,
            n.group || "-",
            n.role || "-",
            n.hostname || "-",
            n.appliedVersion === r.version
              ? String(n.appliedVersion)
              : `${n.appliedVersion} (behind)`,
            connectedText(n, now),
            ago(n.lastSeen, now),
            String(n.counters?.received ?? 0n),
            String(n.counters?.forwarded ?? 0n),
            String(n.counters?.dropped ?? 0n),
            ...(disk ? nodeDiskCells(n) : []),
          ]),
        ),
      );
      io.stdout.write(`(state version ${r.version})\n`);
      if (disk) {
        const rows = nodes.flatMap((n) =>
          n.destinations
            .filter((d) => d.diskDatapoints > 0n)
            .map((d) => [
              n.id,
              d.spec,
              d.state || "-",
              String(d.queued),
              diskText(Number(d.diskDatapoints), Number(d.diskBytes)),
              ageText(d.oldestQueuedSeconds),
            ]),
        );
        io.stdout.write(
          `\ndestinations with datapoints on disk:\n${table(["NODE", "DESTINATION", "STATE", "QUEUED", "DISK", "OLDEST"], rows)}`,
        );
      }
      return EXIT.ok;
    });
  },
};
