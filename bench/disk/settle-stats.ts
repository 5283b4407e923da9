/**
 * The last /stats of a relay relaybench is about to stop: run by relay-stats.sh
 * when relaybench's SIGTERM arrives, before the relay gets it.
 *
 *   node bench/disk/settle-stats.ts URL OUT PID QUEUE-DIR DEAD AT BYTES
 *
 * relaybench ends a run when the live sinks hold every line; a destination that
 * is down may still have lines in memory on their way to its disk queue, and
 * polymur's worker processes report their counters to /stats once a second.
 * This polls URL (the relay's /stats) every 50 ms until its counters have not
 * changed for 1.5 s (so at least one report of every worker since) and, with a
 * disk queue, every destination's memory queue is empty (queuedLines =
 * disk.lines) and DEAD's segments under QUEUE-DIR stopped growing; or 5.5 s
 * passed (relaybench kills the relay 10 s after its SIGTERM). It writes OUT as
 * JSON (SettledStats).
 *
 * AT (ms since the epoch) and BYTES are the time of relaybench's SIGTERM and the
 * bytes of DEAD's segments then, measured by relay-stats.sh: comparing them with
 * the segments' size once nothing grows says how far the spill lagged behind
 * the live destination (segment sizes are current; /stats may be a second old).
 */
import fs from "node:fs";
import path from "node:path";
import type {
  DestinationStats,
  DiskQueueStats,
} from "../../dataplane/forward/destination-stats.ts";
import { processTree, treeCpu } from "./proc-tree.ts";

/** What this reads of a /stats destination row. */
export type StatsDestination = Pick<
  DestinationStats,
  "id" | "routed" | "forwarded" | "dropped" | "undelivered" | "queuedLines" | "connects"
> & { disk?: DiskQueueStats | null };

/** What this reads of /stats. */
export interface Stats {
  datapoints: { received: number; routed: number; dropped: number };
  destinations: StatsDestination[];
}

/** What OUT holds. */
export interface SettledStats {
  /** From relaybench's SIGTERM to the last snapshot. */
  waitedMs: number;
  /** Every destination's memory queue was empty at the last snapshot. */
  caughtUp: boolean;
  /** The dead destination's segment bytes (null without one). */
  spool: {
    /** At relaybench's SIGTERM: when the live sinks had every line. */
    atEnd: number;
    /** Once nothing grew. */
    final: number;
    /** From relaybench's SIGTERM to the segments' last growth; 0 if they did not grow. */
    lastGrowthMs: number;
  } | null;
  /** CPU seconds of the relay's process tree from this program's start to the segments' last growth. */
  lagCpuS: number;
  /** The last /stats read, null if none could be read. */
  stats: Stats | null;
}

const POLL_MS = 50;
const STABLE_MS = 1500;
const LIMIT_MS = 5500;

/** Every destination's memory queue is empty: what is queued is on disk. */
export function memoryEmpty(stats: Stats): boolean {
  return stats.destinations.every((d) => d.queuedLines === (d.disk?.lines ?? 0));
}

/** Bytes of the segments (*.spool) of destination id's queue under queueDir (queue-dir.ts names). */
function segmentBytes(queueDir: string, id: string): number {
  const prefix = `${id.replace(/[^A-Za-z0-9._-]/g, "_").slice(0, 80)}-`;
  let bytes = 0;
  let dirs: string[];
  try {
    dirs = fs.readdirSync(queueDir).filter((d) => d.startsWith(prefix));
  } catch {
    return 0;
  }
  for (const d of dirs) {
    for (const e of fs.readdirSync(path.join(queueDir, d), {
      recursive: true,
      withFileTypes: true,
    })) {
      if (!e.isFile() || !e.name.endsWith(".spool")) continue;
      try {
        bytes += fs.statSync(path.join(e.parentPath, e.name)).size;
      } catch {
        // deleted meanwhile
      }
    }
  }
  return bytes;
}

async function read(url: string): Promise<Stats | null> {
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(1000) });
    return res.ok ? ((await res.json()) as Stats) : null;
  } catch {
    return null;
  }
}

/** The counters that must have stopped moving. */
function counters(s: Stats): string {
  return JSON.stringify([
    s.datapoints.received,
    s.destinations.map((d) => [
      d.routed,
      d.forwarded,
      d.dropped,
      d.queuedLines,
      d.disk?.lines,
      d.disk?.spilled,
    ]),
  ]);
}

async function main(args: string[]): Promise<void> {
  const [url, out, pid, queueDir, dead, at, atBytes] = args;
  if (
    url === undefined ||
    out === undefined ||
    queueDir === undefined ||
    dead === undefined ||
    atBytes === undefined
  ) {
    console.error("usage: node bench/disk/settle-stats.ts URL OUT PID QUEUE-DIR DEAD AT BYTES");
    process.exit(2);
  }
  const root = Number(pid);
  const sigtermAt = Number(at);
  const cpu0 = treeCpu(processTree(root));
  const spool = dead === "-" ? null : { atEnd: Number(atBytes), final: Number(atBytes) };
  let lastGrowth = sigtermAt;
  let lagCpu = 0;
  let last: Stats | null = null;
  let lastKey = "";
  let keySince = Date.now();
  while (Date.now() - sigtermAt < LIMIT_MS) {
    const now = Date.now();
    if (spool !== null) {
      const bytes = segmentBytes(queueDir, dead);
      if (bytes !== spool.final) {
        spool.final = bytes;
        lastGrowth = now;
        lagCpu = treeCpu(processTree(root)) - cpu0;
      }
    }
    const s = await read(url);
    if (s !== null) {
      last = s;
      const key = counters(s);
      if (key !== lastKey) {
        lastKey = key;
        keySince = now;
      }
    }
    const quiet = now - keySince >= STABLE_MS && now - lastGrowth >= STABLE_MS;
    // a memory-only relay's queue for a dead destination never empties
    if (last !== null && quiet && (memoryEmpty(last) || spool === null || spool.final === 0)) break;
    await new Promise((r) => setTimeout(r, POLL_MS));
  }
  const result: SettledStats = {
    waitedMs: Date.now() - sigtermAt,
    caughtUp: last !== null && memoryEmpty(last),
    spool: spool === null ? null : { ...spool, lastGrowthMs: lastGrowth - sigtermAt },
    lagCpuS: lagCpu,
    stats: last,
  };
  fs.writeFileSync(out, `${JSON.stringify(result)}\n`);
}

if (import.meta.main) await main(process.argv.slice(2));
