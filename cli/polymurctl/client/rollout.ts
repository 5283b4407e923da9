import { UsageError } from "../../../common/errors.ts";
import { ControlService, type Node } from "../../../gen/polymur/control/v1/control_pb.ts";
import type { CommandIO } from "../command.ts";
import type { CtlConnection } from "./connection.ts";
import { EXIT } from "./exit.ts";
import { printJson } from "./output.ts";

/**
 * `--wait [TIMEOUT]` on every command that changes the state: once the change
 * is made (it returns at once, as without --wait), polymurctl reads the
 * nodes' statuses until every node the change concerns has applied its
 * version (or a later one), showing how many have: a line rewritten in place
 * on a terminal, a plain line each time the count changes otherwise. Past
 * the timeout it exits EXIT.notApplied (4), naming the nodes that have not.
 *
 * The nodes waited for are those of the change's group (every node for a
 * fleet-wide change, a rollback or an API key) that are connected: connected
 * when the wait starts, or connecting during it. A node not connected (stale:
 * stopped, unreachable, or replaced by a restart with a new node id) is not
 * waited for, and said so; a waited-for node that disconnects before
 * applying is among those that did not.
 */

/** The timeout of `--wait` without one. */
export const DEFAULT_WAIT_SEC = 60;

/** How often node statuses are read while waiting. */
export const WAIT_POLL_MS = 500;

/** The option, for a command's table: a string, "" when given without a timeout (see normalizeWait). */
export const WAIT_OPTION = { wait: { type: "string" } } as const;

/** The option's lines in a command's --help. */
export const WAIT_HELP = `  --wait [TIMEOUT]         then wait until the nodes concerned apply the change (connected
                           nodes of the group, or every node): TIMEOUT as 30, 30s, 2m
                           (default ${DEFAULT_WAIT_SEC}s); exit 4 naming the nodes that did not`;

const DURATION = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/;

/**
 * Gives `--wait` the value parseArgs needs: `--wait` alone becomes
 * `--wait=` (the default timeout); `--wait T`, when T is a duration, becomes
 * `--wait=T`. Arguments after `--` are left alone. (A number after --wait is
 * its timeout: `rollback 5 --wait`, not `rollback --wait 5`.)
 */
export function normalizeWait(argv: readonly string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === "--") {
      out.push(...argv.slice(i));
      break;
    }
    if (a !== "--wait") {
      out.push(a);
      continue;
    }
    const next = argv[i + 1];
    if (next !== undefined && DURATION.test(next)) {
      out.push(`--wait=${next}`);
      i++;
    } else {
      out.push("--wait=");
    }
  }
  return out;
}

/** The timeout `--wait` gave, in milliseconds; undefined without --wait. UsageError for a bad one. */
export function waitTimeoutMs(value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  if (value === "") return DEFAULT_WAIT_SEC * 1000;
  const m = DURATION.exec(value);
  const scale = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[m?.[2] ?? "s"]!;
  const ms = m === null ? Number.NaN : Number(m[1]) * scale;
  if (!(ms > 0)) {
    throw new UsageError(`--wait takes a timeout such as 30, 30s or 2m; got "${value}"`);
  }
  return ms;
}

/** A node the wait is for, as the outcome lists it. */
export interface RolloutNode {
  id: string;
  group: string;
  hostname: string;
  appliedVersion: bigint;
  connected: boolean;
}

/** What a wait found. */
export interface RolloutOutcome {
  ok: boolean;
  version: bigint;
  /** "every node" or "group NAME". */
  scope: string;
  /** Nodes waited for (N), and how many applied the version. */
  nodes: number;
  applied: number;
  /** Those that did not, in time. */
  pending: RolloutNode[];
  /** Nodes of the scope not connected, so not waited for. */
  notConnected: number;
  elapsedMs: number;
}

const toRolloutNode = (n: Node): RolloutNode => ({
  id: n.id,
  group: n.group,
  hostname: n.hostname,
  appliedVersion: n.appliedVersion,
  connected: n.connected,
});

/** `relay-1 (group web, host vm1, at version 6, not connected)`. */
export function pendingText(n: RolloutNode): string {
  const where = [
    n.group === "" ? "no group" : `group ${n.group}`,
    ...(n.hostname === "" ? [] : [`host ${n.hostname}`]),
    `at version ${n.appliedVersion}`,
    ...(n.connected ? [] : ["disconnected"]),
  ];
  return `${n.id} (${where.join(", ")})`;
}

/** Elapsed time, to a tenth of a second. */
const seconds = (ms: number): string => `${(ms / 1000).toFixed(1)}s`;

/** A timeout as given: `60s`, `0.5s`. */
const timeoutText = (ms: number): string => `${ms / 1000}s`;

/**
 * Waits until the connected nodes of `group` (undefined: every node) have
 * applied `version` or a later one, or `timeoutMs` passes; prints progress
 * unless `quiet` (--json).
 */
export async function waitForRollout(
  conn: CtlConnection,
  io: CommandIO,
  version: bigint,
  group: string | undefined,
  timeoutMs: number,
  quiet: boolean,
): Promise<RolloutOutcome> {
  const client = conn.client(ControlService);
  const tty = (io.stdout as { isTTY?: boolean }).isTTY === true;
  const scope = group === undefined ? "every node" : `group ${group}`;
  const t0 = Date.now();
  const waited = new Map<string, Node>();
  let lastLine = "";
  const show = (line: string, final: boolean): void => {
    if (quiet) return;
    if (tty) io.stdout.write(`\r\x1b[K${line}${final ? "\n" : ""}`);
    else if (line !== lastLine || final) io.stdout.write(`${line}\n`);
    lastLine = line;
  };
  for (;;) {
    const list = await client.listNodes({});
    const inScope = list.nodes.filter((n) => group === undefined || n.group === group);
    for (const n of inScope) {
      if (n.connected || waited.has(n.id)) waited.set(n.id, n);
    }
    const seen = new Set(inScope.map((n) => n.id));
    const nodes = [...waited.values()];
    const applied = nodes.filter((n) => seen.has(n.id) && n.appliedVersion >= version);
    const pending = nodes.filter((n) => !applied.includes(n)).map(toRolloutNode);
    const notConnected = inScope.filter((n) => !waited.has(n.id)).length;
    const elapsedMs = Date.now() - t0;
    const outcome = (ok: boolean): RolloutOutcome => ({
      ok,
      version,
      scope,
      nodes: nodes.length,
      applied: applied.length,
      pending: ok ? [] : pending,
      notConnected,
      elapsedMs,
    });
    const stale = notConnected === 0 ? "" : `; ${notConnected} not connected, not waited for`;
    if (nodes.length === 0) {
      show(`version ${version}: no connected nodes (${scope}) to wait for${stale}`, true);
      return outcome(true);
    }
    const progress = `version ${version}: ${applied.length} of ${nodes.length} nodes (${scope}) applied`;
    if (pending.length === 0) {
      show(`${progress} in ${seconds(elapsedMs)}${stale}`, true);
      return outcome(true);
    }
    if (elapsedMs >= timeoutMs) {
      show(`${progress}; ${seconds(elapsedMs)} passed${stale}`, true);
      return outcome(false);
    }
    show(tty ? `${progress} (${seconds(elapsedMs)})` : progress, false);
    await new Promise((r) => setTimeout(r, Math.min(WAIT_POLL_MS, timeoutMs - elapsedMs)));
  }
}

/** A rollout outcome for --json. */
export function rolloutJson(o: RolloutOutcome) {
  return {
    ok: o.ok,
    version: o.version,
    scope: o.scope,
    nodes: o.nodes,
    applied: o.applied,
    pending: o.pending,
    notConnected: o.notConnected,
    elapsedMs: o.elapsedMs,
  };
}

/** A change a command made: what to print, and which nodes it concerns. */
export interface ChangeMade {
  /** The state version it made. */
  version: bigint;
  /** The group it concerns; undefined: every node. */
  group: string | undefined;
  /** The --json object (a `rollout` is added with --wait). */
  json: Record<string, unknown>;
}

/**
 * Finishes a command that changed the state: with --wait, waits for the
 * rollout; prints the JSON object (--json; its text lines were printed by the
 * command already), and when nodes did not apply it in time, says which on
 * stderr and returns EXIT.notApplied.
 */
export async function finishChange(
  name: string,
  io: CommandIO,
  conn: CtlConnection,
  change: ChangeMade,
  waitMs: number | undefined,
): Promise<number> {
  const json = conn.settings.json;
  const outcome =
    waitMs === undefined
      ? undefined
      : await waitForRollout(conn, io, change.version, change.group, waitMs, json);
  if (json)
    printJson(io, { ...change.json, ...(outcome ? { rollout: rolloutJson(outcome) } : {}) });
  if (outcome === undefined || outcome.ok) return EXIT.ok;
  io.stderr.write(
    `polymurctl ${name}: version ${outcome.version} not applied within ${timeoutText(waitMs!)} by ${outcome.pending.length} of ${outcome.nodes} nodes (${outcome.scope}): ${outcome.pending.map(pendingText).join("; ")}\n`,
  );
  return EXIT.notApplied;
}
