import {
  ChangeKind,
  Distribution,
  type FleetConfig,
  type HistoryEntry,
} from "../../../gen/polymur/control/v1/control_pb.ts";
import { isoTime } from "./output.ts";
import { scopeJson } from "./scope.ts";

/**
 * A whole fleet configuration (one version of the state) as text, for people
 * and for `polymurctl diff`: one line per destination, routing policy and API
 * key, in polymurctl's words, then each rules file under its own line. Lines
 * are not aligned into columns, so adding one entry changes one line of a
 * diff, not all of them. A latin1 string (rules are bytes).
 */
export function fleetText(c: FleetConfig): string {
  const where = (s: Parameters<typeof scopeJson>[0]): string => {
    const j = scopeJson(s);
    return "group" in j ? `--group ${j.group}` : "--all";
  };
  const lines: string[] = [];
  for (const d of c.destinations) lines.push(`dest ${d.spec} ${where(d.scope)}\n`);
  for (const g of c.routing) {
    const r = g.routing;
    if (r?.distribution === Distribution.HASH_ROUTE) {
      lines.push(
        `route ${where(g.scope)} hash-route --hash ${r.hash} --compat ${r.compat} --replication ${r.replication} --diverse-replicas ${r.diverseReplicas} --router ${r.router} --hash-normalize ${r.normalize}\n`,
      );
    } else {
      lines.push(`route ${where(g.scope)} broadcast\n`);
    }
  }
  for (const k of c.keys) {
    const rotated = isoTime(k.rotatedAt);
    lines.push(
      `key ${k.name} ${k.digest} created ${isoTime(k.createdAt)}${rotated === "" ? "" : ` rotated ${rotated}`}\n`,
    );
  }
  for (const g of c.rules) {
    const r = g.rules;
    const text = r === undefined ? "" : Buffer.from(r.content).toString("latin1");
    lines.push(`rules ${where(g.scope)} -f ${r?.fileName ?? ""}\n`);
    for (const line of text.split("\n").slice(0, text.endsWith("\n") ? -1 : undefined)) {
      lines.push(`    ${line}\n`);
    }
    if (text !== "" && !text.endsWith("\n")) lines.push("    (no newline at end of file)\n");
  }
  return lines.length === 0
    ? "(empty: no destinations, routing, API keys or rules)\n"
    : lines.join("");
}

/** A change kind for --json: `dest_add`, `rollback`, … */
export function changeKindName(k: ChangeKind): string {
  return (ChangeKind[k] ?? String(k)).toLowerCase();
}

/** A history entry for --json. */
export function historyEntryJson(e: HistoryEntry) {
  return {
    version: e.version,
    time: isoTime(e.time),
    kind: changeKindName(e.kind),
    scopes: e.scopes.map((s) => scopeJson(s)),
    subject: e.subject,
    summary: e.summary,
    ...(e.kind === ChangeKind.ROLLBACK ? { rollbackTo: e.rollbackTo, withKeys: e.withKeys } : {}),
    actor: e.actor,
    replica: e.replica,
  };
}

/** `version 3 (2026-11-22T21:08:59Z, dest add 10.0.5.30:2003 --all, by alice@laptop)`: a diff's label. */
export function versionLabel(e: HistoryEntry | undefined, version: bigint): string {
  if (e === undefined) return `version ${version}`;
  const by = e.actor === "" ? "" : `, by ${e.actor}`;
  return `version ${version} (${isoTime(e.time)}, ${e.summary}${by})`;
}
