import { ErrorCode, PolymurError } from "../common/errors.ts";
import {
  type ControlState,
  checkState,
  type DestinationEntry,
  type KeyEntry,
  type RoutingEntry,
  type RulesEntry,
  type Scope,
} from "./control-state.ts";

/**
 * The change history: every version a store writes is kept with the whole
 * state it made and a record of the change (its kind, the scopes it touched,
 * what it named, who asked, which replica wrote it, when), the last
 * `HISTORY_DEFAULTS.versions` of them unless `--history-versions` says
 * otherwise. Rollback (control-service.ts) restores a kept version's content
 * as a new version.
 */

/** Every history default, in one place: the stores and `--history-versions` take theirs from here. */
export const HISTORY_DEFAULTS = {
  /**
   * Versions kept: the last 100 of the whole state (versions are fleet-wide,
   * so this is not per group). Each holds a whole state; the file store keeps
   * one file per version, Consul two keys (a small record and the state,
   * gzipped), so a state of 20 KiB costs about 2 MB of history.
   */
  versions: 100,
  /** The most `--history-versions` takes. */
  maxVersions: 10_000,
} as const;

/** What a change did: the `polymurctl` command that makes it, in words. */
export type ChangeKind =
  | "dest add"
  | "dest rm"
  | "route set"
  | "route inherit"
  | "rules set"
  | "rules unset"
  | "key create"
  | "key rotate"
  | "key rm"
  | "rollback"
  | "baseline";

/** Every ChangeKind, in the order of the API's ChangeKind enum (1 on). */
export const CHANGE_KINDS: readonly ChangeKind[] = [
  "dest add",
  "dest rm",
  "route set",
  "route inherit",
  "rules set",
  "rules unset",
  "key create",
  "key rotate",
  "key rm",
  "rollback",
  "baseline",
];

/** The record of one change, kept with the version it made. */
export interface ChangeRecord {
  readonly kind: ChangeKind;
  /** The scopes whose settings changed; API keys (every node gets them) count as fleet-wide. */
  readonly scopes: readonly Scope[];
  /** What the change named: a destination, a rules file, a key name, a distribution; "" for none. */
  readonly subject: string;
  /** A rollback: the version restored, and whether API keys were restored too. */
  readonly rollbackTo?: number;
  readonly withKeys?: boolean;
  /** Who asked, as the caller said (the polymur-actor header); "" when it did not say. */
  readonly actor: string;
  /** The replica that wrote it. */
  readonly replica: string;
  /** Milliseconds since the epoch. */
  readonly atMs: number;
}

/** A kept version's record (without its state: see HistoryVersion). */
export interface HistoryEntry extends ChangeRecord {
  readonly version: number;
}

/** A kept version: its record and the whole state it made. */
export interface HistoryVersion {
  readonly entry: HistoryEntry;
  readonly state: ControlState;
}

/** The format tag of a history record as the stores write it. */
export const HISTORY_FORMAT = "polymur-control-history/1";

/** The fleet as a scope list. */
export const FLEET: readonly Scope[] = [{ all: true }];

/** The one line ListHistory and `polymurctl history` show, in polymurctl's words. */
export function changeSummary(e: ChangeRecord): string {
  const where =
    e.scopes.length === 1 && e.scopes[0] !== undefined
      ? "all" in e.scopes[0]
        ? " --all"
        : ` --group ${e.scopes[0].group}`
      : "";
  switch (e.kind) {
    case "dest add":
    case "dest rm":
    case "rules set":
      return `${e.kind} ${e.subject}${where}`;
    case "route set":
      return `route set${where} ${e.subject}`;
    case "route inherit":
      return `route set${where} inherit`;
    case "rules unset":
      return `rules unset${where}`;
    case "key create":
    case "key rotate":
    case "key rm":
      return `${e.kind} ${e.subject}`;
    case "rollback":
      return `rollback to version ${e.rollbackTo ?? "?"} (${e.withKeys === true ? "API keys restored too" : "API keys kept"})`;
    case "baseline":
      return "state as found when history began (what changed is not known)";
  }
}

/** True when a change touched what nodes of `group` get: the group's own settings, or the fleet's. */
export function touchesGroup(e: ChangeRecord, group: string): boolean {
  return e.scopes.some((s) => "all" in s || s.group === group);
}

const scopeKey = (s: Scope): string => ("all" in s ? "" : `g:${s.group}`);

/**
 * The scopes whose settings differ between two states: those of the
 * destinations, routing policies and rules that changed; the fleet when API
 * keys did and `withKeys`. Fleet first, then groups by name.
 */
export function changedScopes(a: ControlState, b: ControlState, withKeys: boolean): Scope[] {
  const touched = new Map<string, Scope>();
  const compare = <T extends { scope: Scope }>(
    xs: readonly T[],
    ys: readonly T[],
    same: (x: T, y: T) => boolean,
  ): void => {
    const scopes = new Map<string, Scope>();
    for (const e of [...xs, ...ys]) scopes.set(scopeKey(e.scope), e.scope);
    for (const [k, s] of scopes) {
      const ax = xs.filter((e) => scopeKey(e.scope) === k);
      const bx = ys.filter((e) => scopeKey(e.scope) === k);
      if (ax.length !== bx.length || ax.some((x, i) => !same(x, bx[i]!))) touched.set(k, s);
    }
  };
  compare<DestinationEntry>(a.destinations, b.destinations, (x, y) => x.spec === y.spec);
  compare<RoutingEntry>(
    a.routing,
    b.routing,
    (x, y) => JSON.stringify(x.routing) === JSON.stringify(y.routing),
  );
  compare<RulesEntry>(
    a.rules,
    b.rules,
    (x, y) => x.rules.text === y.rules.text && x.rules.fileName === y.rules.fileName,
  );
  if (withKeys && keysDiffering(a.keys, b.keys).length > 0) touched.set("", { all: true });
  return [...touched.entries()].sort(([x], [y]) => (x < y ? -1 : x > y ? 1 : 0)).map(([, s]) => s);
}

/** Names of the keys that are not the same (digest, times) in both lists, sorted. */
export function keysDiffering(a: readonly KeyEntry[], b: readonly KeyEntry[]): string[] {
  const names = new Set([...a, ...b].map((k) => k.name));
  const same = (x: KeyEntry | undefined, y: KeyEntry | undefined): boolean =>
    x !== undefined &&
    y !== undefined &&
    x.digest === y.digest &&
    x.createdAtMs === y.createdAtMs &&
    x.rotatedAtMs === y.rotatedAtMs;
  return [...names]
    .filter(
      (n) =>
        !same(
          a.find((k) => k.name === n),
          b.find((k) => k.name === n),
        ),
    )
    .sort();
}

/**
 * The state a rollback writes: `target`'s destinations, routing and rules
 * (and with `withKeys`, its API keys; otherwise `current`'s), at `current`'s
 * version (updateState numbers it).
 */
export function rolledBack(
  current: ControlState,
  target: ControlState,
  withKeys: boolean,
): ControlState {
  return {
    ...current,
    destinations: target.destinations,
    routing: target.routing,
    rules: target.rules,
    keys: withKeys ? target.keys : current.keys,
  };
}

/** A history record as the stores write it (JSON); the state travels beside it. */
export function entryToJson(e: HistoryEntry): Record<string, unknown> {
  return {
    format: HISTORY_FORMAT,
    version: e.version,
    kind: e.kind,
    scopes: e.scopes,
    subject: e.subject,
    ...(e.rollbackTo === undefined ? {} : { rollbackTo: e.rollbackTo }),
    ...(e.withKeys === undefined ? {} : { withKeys: e.withKeys }),
    actor: e.actor,
    replica: e.replica,
    atMs: e.atMs,
  };
}

/** A history record read from a store; POLYMUR_ERR_STORE_CORRUPT when it is not one. */
export function entryFromJson(value: unknown, where: string): HistoryEntry {
  const bad = (why: string): never => {
    throw new PolymurError(
      ErrorCode.StoreCorrupt,
      `${where} does not hold a polymur history record: ${why}`,
    );
  };
  if (typeof value !== "object" || value === null) return bad("not a JSON object");
  const v = value as Record<string, unknown>;
  if (v["format"] !== HISTORY_FORMAT) bad(`format ${JSON.stringify(v["format"])}`);
  if (!Number.isSafeInteger(v["version"]) || (v["version"] as number) < 0) bad("bad version");
  if (!CHANGE_KINDS.includes(v["kind"] as ChangeKind)) bad(`kind ${JSON.stringify(v["kind"])}`);
  if (!Array.isArray(v["scopes"])) bad("scopes is not a list");
  for (const f of ["subject", "actor", "replica"]) {
    if (typeof v[f] !== "string") bad(`${f} is not a string`);
  }
  if (typeof v["atMs"] !== "number") bad("atMs is not a number");
  return {
    version: v["version"] as number,
    kind: v["kind"] as ChangeKind,
    scopes: v["scopes"] as Scope[],
    subject: v["subject"] as string,
    ...(typeof v["rollbackTo"] === "number" ? { rollbackTo: v["rollbackTo"] } : {}),
    ...(typeof v["withKeys"] === "boolean" ? { withKeys: v["withKeys"] } : {}),
    actor: v["actor"] as string,
    replica: v["replica"] as string,
    atMs: v["atMs"] as number,
  };
}

/** A kept version's state, checked as the state document is; it must be the entry's version. */
export function historyStateFromJson(value: unknown, version: number, where: string): ControlState {
  const state = checkState(value, where);
  if (state.version !== version) {
    throw new PolymurError(
      ErrorCode.StoreCorrupt,
      `${where} holds version ${state.version}, expected ${version}`,
    );
  }
  return state;
}

/** The record of the state a store found when it began keeping history. */
export function baselineEntry(state: ControlState, replica: string, atMs: number): HistoryEntry {
  return {
    version: state.version,
    kind: "baseline",
    scopes: FLEET,
    subject: "",
    actor: "",
    replica,
    atMs,
  };
}
