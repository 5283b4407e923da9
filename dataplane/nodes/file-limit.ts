import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";

/**
 * A process's open-file limits (RLIMIT_NOFILE), as /proc/self/limits shows
 * them; null for a limit shown as "unlimited".
 */
export interface FileLimit {
  soft: number | null;
  hard: number | null;
}

/** What `raiseFileLimit` found and did. */
export interface FileLimitRaise {
  /** The limits in effect now; null where they cannot be read (not Linux). */
  limit: FileLimit | null;
  /** The soft limit before raising, when it was raised. */
  raisedFrom?: number;
  /** Why the soft limit is still below the hard limit, when raising failed. */
  error?: string;
}

/**
 * Descriptors each process keeps back from sender connections when
 * `--max-connections` is `auto`: for its destinations' sockets, the stats
 * endpoint and its clients, the line API and its clients, the IPC channels
 * to worker processes, files (config, state, spool) and Node's own (stdio,
 * epoll, signal pipes: some 25). An eighth of the limit, at least 256 (a
 * relay with a hundred destinations and as many cores still fits), at most
 * half of it (a tiny limit still leaves senders half).
 */
export const FILE_RESERVE = { fraction: 1 / 8, min: 256, maxFraction: 1 / 2 } as const;

/** Where Linux shows a process's limits. */
const LIMITS_PATH = "/proc/self/limits";

/** Parses the "Max open files" row of /proc/<pid>/limits; null if it has none. */
export function parseFileLimit(text: string): FileLimit | null {
  const m = /^Max open files\s+(\d+|unlimited)\s+(\d+|unlimited)/m.exec(text);
  if (m === null) return null;
  const n = (v: string): number | null => (v === "unlimited" ? null : Number(v));
  return { soft: n(m[1]!), hard: n(m[2]!) };
}

/** This process's open-file limits; null where /proc/self/limits cannot be read. */
export function readFileLimit(path = LIMITS_PATH): FileLimit | null {
  try {
    return parseFileLimit(readFileSync(path, "utf8"));
  } catch {
    return null;
  }
}

/**
 * Raises this process's soft open-file limit to its hard limit, so that
 * worker processes forked afterwards inherit it. Node has no setrlimit; on
 * Linux `prlimit` (util-linux) changes a running process's limits. Node
 * itself already raises the soft limit to the hard one at start-up
 * (PlatformInit in src/node.cc), so this usually finds nothing to do: it is
 * for a Node built or embedded without that. Never throws: a failure is
 * returned, and the limit in effect goes on.
 */
export function raiseFileLimit(
  read: () => FileLimit | null = readFileLimit,
  run: (file: string, args: string[]) => void = runQuietly,
): FileLimitRaise {
  const before = read();
  if (before === null) return { limit: null, error: `cannot read ${LIMITS_PATH}` };
  const { soft, hard } = before;
  // Linux refuses an unlimited RLIMIT_NOFILE; an unlimited soft limit needs nothing.
  if (soft === null || hard === null || soft >= hard) return { limit: before };
  try {
    run("prlimit", ["--pid", String(process.pid), `--nofile=${hard}:${hard}`]);
  } catch (err) {
    return { limit: before, error: `prlimit failed: ${(err as Error).message}` };
  }
  const after = read() ?? before;
  if (after.soft === null || after.soft > soft) return { limit: after, raisedFrom: soft };
  return { limit: after, error: "prlimit did not change the soft limit" };
}

function runQuietly(file: string, args: string[]): void {
  execFileSync(file, args, { stdio: "ignore", timeout: 5_000 });
}

/**
 * `--max-connections auto`: the soft open-file limit less the reserve
 * (FILE_RESERVE), so that at the cap a process still has descriptors for its
 * destinations and its stats endpoint answers. 0 (no cap) when the limit is
 * unknown or unlimited.
 */
export function autoMaxConnections(limit: FileLimit | null): number {
  if (limit === null || limit.soft === null) return 0;
  const soft = limit.soft;
  const reserve = Math.min(
    Math.max(FILE_RESERVE.min, Math.ceil(soft * FILE_RESERVE.fraction)),
    Math.floor(soft * FILE_RESERVE.maxFraction),
  );
  return Math.max(1, soft - reserve);
}

/** One log line's text for the limit in effect and the connection cap it gives. */
export function fileLimitText(r: FileLimitRaise, maxConnections: number): string {
  const l = r.limit;
  const limit =
    l === null
      ? "open-file limit unknown"
      : `open-file limit ${l.soft ?? "unlimited"} (hard ${l.hard ?? "unlimited"})`;
  const how =
    r.raisedFrom !== undefined
      ? `, raised from ${r.raisedFrom}`
      : r.error !== undefined
        ? `, not raised: ${r.error}`
        : "";
  const cap =
    maxConnections > 0
      ? `sender connections capped at ${maxConnections} per process`
      : "sender connections not capped";
  return `${limit}${how}; ${cap}`;
}
