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
each is subscribed now, the state version it applied, and its counters.

${COMMON_HELP}`;

const OPTIONS = { group: { type: "string" } } as const;

export function ago(t: { seconds: bigint } | undefined, nowMs: number): string {
  if (t === undefined || t.seconds === 0n) return "never";
  const s = Math.max(0, Math.round(nowMs / 1000 - Number(t.seconds)));
  if (s < 120) return `${s}s ago`;
  if (s < 7200) return `${Math.round(s / 60)}m ago`;
  if (s < 172800) return `${Math.round(s / 3600)}h ago`;
  return `${Math.round(s / 86400)}d ago`;
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
    lastSeen: isoTime(n.lastSeen),
    counters: {
      received: n.counters?.received ?? 0n,
      forwarded: n.counters?.forwarded ?? 0n,
      dropped: n.counters?.dropped ?? 0n,
      rejected: n.counters?.rejected ?? 0n,
      connections: n.counters?.connections ?? 0n,
    },
    destinations: n.destinations.map((d) => ({
      spec: d.spec,
      state: d.state,
      forwarded: d.forwarded,
      dropped: d.dropped,
      queued: d.queued,
      queuedBytes: d.queuedBytes,
      resent: d.resent,
    })),
  };
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
          ],
          nodes.map((n) => [
            n.id,
            n.group || "-",
            n.role || "-",
            n.hostname || "-",
            n.appliedVersion === r.version
              ? String(n.appliedVersion)
              : `${n.appliedVersion} (behind)`,
            n.connected ? "yes" : "no",
            ago(n.lastSeen, now),
            String(n.counters?.received ?? 0n),
            String(n.counters?.forwarded ?? 0n),
            String(n.counters?.dropped ?? 0n),
          ]),
        ),
      );
      io.stdout.write(`(state version ${r.version})\n`);
      return EXIT.ok;
    });
  },
};
