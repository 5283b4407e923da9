import { ErrorCode, PolymurError } from "../common/errors.ts";

/**
 * The desired state of a fleet, as the control plane stores it: plain JSON
 * (one document, whatever the store), versioned as a whole. Every mutation
 * below is a pure function from one state to the next; the store's
 * compare-and-set makes them atomic (see control-store.ts `updateState`).
 */

/** Where a setting applies: every node, or nodes started with `--group NAME`. */
export type Scope = { readonly all: true } | { readonly group: string };

export interface DestinationEntry {
  /** As the operator wrote it. */
  readonly spec: string;
  /** Canonical identity (DestinationSpec.id): two spellings of one destination are one. */
  readonly id: string;
  readonly scope: Scope;
}

export type DistributionName = "broadcast" | "hash-route";

export interface RoutingPolicy {
  readonly distribution: DistributionName;
  readonly hash: string;
  readonly compat: string;
  readonly replication: number;
  readonly diverseReplicas: boolean;
  readonly router: string;
  readonly normalize: string;
}

export interface RoutingEntry {
  readonly scope: Scope;
  readonly routing: RoutingPolicy;
}

/**
 * A relay.conf, as `polymurctl rules set` sent it and the control plane
 * checked it (validation.ts `rulesFromProto`): one file, no `include`, no
 * `listen`.
 */
export interface RulesFile {
  /** The file's bytes, one char per byte (latin1), as the rules engine reads them. */
  readonly text: string;
  /** The name the file was sent under: errors on nodes say `fileName:line:column`. */
  readonly fileName: string;
}

export interface RulesEntry {
  readonly scope: Scope;
  readonly rules: RulesFile;
}

export interface KeyEntry {
  readonly name: string;
  /** `sha256:<hex>` of the secret; the secret itself is never stored. */
  readonly digest: string;
  /** Milliseconds since the epoch. */
  readonly createdAtMs: number;
  /** Milliseconds since the epoch, or 0 when never rotated. */
  readonly rotatedAtMs: number;
}

export interface ControlState {
  /** Incremented by every mutation; 0 for a fresh store. */
  readonly version: number;
  readonly destinations: readonly DestinationEntry[];
  readonly routing: readonly RoutingEntry[];
  /** The fleet's rules first, then groups' own by group name; at most one per scope. */
  readonly rules: readonly RulesEntry[];
  readonly keys: readonly KeyEntry[];
}

export const EMPTY_STATE: ControlState = {
  version: 0,
  destinations: [],
  routing: [],
  rules: [],
  keys: [],
};

/** What a node gets when neither its group nor the fleet has a routing policy. */
export const BROADCAST: RoutingPolicy = {
  distribution: "broadcast",
  hash: "carbon_ch",
  compat: "carbon",
  replication: 1,
  diverseReplicas: true,
  router: "consistent-hashing",
  normalize: "none",
};

export function sameScope(a: Scope, b: Scope): boolean {
  return "all" in a ? "all" in b : "group" in b && b.group === a.group;
}

export function describeScope(s: Scope): string {
  return "all" in s ? "all nodes" : `group ${s.group}`;
}

const fail = (code: ErrorCode, message: string): never => {
  throw new PolymurError(code, message);
};

/**
 * Adds a destination. One destination (by canonical id) lives in one scope: a
 * fleet-wide destination is already in every group, and a node must not get
 * the same destination twice.
 */
export function addDestination(s: ControlState, d: DestinationEntry): ControlState {
  for (const e of s.destinations) {
    if (e.id !== d.id) continue;
    if (sameScope(e.scope, d.scope)) {
      fail(
        ErrorCode.AlreadyExists,
        `destination ${e.spec} is already in ${describeScope(e.scope)}`,
      );
    }
    if ("all" in e.scope) {
      fail(
        ErrorCode.AlreadyExists,
        `destination ${e.spec} is already fleet-wide (all nodes, so every group has it)`,
      );
    }
    if ("all" in d.scope) {
      fail(
        ErrorCode.AlreadyExists,
        `destination ${e.spec} is in ${describeScope(e.scope)}; remove it there before adding it fleet-wide`,
      );
    }
  }
  return { ...s, destinations: [...s.destinations, d] };
}

export function removeDestination(s: ControlState, id: string, scope: Scope): ControlState {
  const i = s.destinations.findIndex((e) => e.id === id && sameScope(e.scope, scope));
  if (i < 0) {
    const elsewhere = s.destinations.find((e) => e.id === id);
    fail(
      ErrorCode.NotFound,
      elsewhere === undefined
        ? `no destination ${id} in ${describeScope(scope)}`
        : `destination ${id} is in ${describeScope(elsewhere.scope)}, not in ${describeScope(scope)}`,
    );
  }
  return { ...s, destinations: s.destinations.filter((_, j) => j !== i) };
}

/** Sets (or, with `routing` null, removes) the routing policy of one scope. */
export function setRouting(
  s: ControlState,
  scope: Scope,
  routing: RoutingPolicy | null,
): ControlState {
  const rest = s.routing.filter((r) => !sameScope(r.scope, scope));
  if (routing === null) {
    if (rest.length === s.routing.length) {
      fail(ErrorCode.NotFound, `${describeScope(scope)} has no routing policy of its own`);
    }
    return { ...s, routing: rest };
  }
  // Fleet-wide first, then groups by name: a stable order for people and diffs.
  const next = [...rest, { scope, routing }].sort((a, b) => scopeOrder(a.scope, b.scope));
  return { ...s, routing: next };
}

/**
 * Sets (or, with `rules` null, removes) the rules of one scope. Removing a
 * group's rules makes it follow the fleet's; with none at all, nodes route by
 * their destinations and routing policy.
 */
export function setRules(s: ControlState, scope: Scope, rules: RulesFile | null): ControlState {
  const rest = s.rules.filter((r) => !sameScope(r.scope, scope));
  if (rules === null) {
    if (rest.length === s.rules.length) {
      fail(
        ErrorCode.NotFound,
        "all" in scope
          ? "the fleet has no rules (polymurctl rules show)"
          : `${describeScope(scope)} has no rules of its own (polymurctl rules show --group ${scope.group})`,
      );
    }
    return { ...s, rules: rest };
  }
  const next = [...rest, { scope, rules }].sort((a, b) => scopeOrder(a.scope, b.scope));
  return { ...s, rules: next };
}

function scopeOrder(a: Scope, b: Scope): number {
  if ("all" in a) return "all" in b ? 0 : -1;
  if ("all" in b) return 1;
  return a.group < b.group ? -1 : a.group > b.group ? 1 : 0;
}

export function addKey(s: ControlState, key: KeyEntry): ControlState {
  if (s.keys.some((k) => k.name === key.name)) {
    fail(
      ErrorCode.AlreadyExists,
      `API key "${key.name}" already exists; rotate it for a new secret (polymurctl key rotate ${key.name})`,
    );
  }
  return { ...s, keys: [...s.keys, key] };
}

export function replaceKey(s: ControlState, name: string, digest: string, nowMs: number) {
  const old = findKey(s, name);
  const rotated: KeyEntry = { ...old, digest, rotatedAtMs: nowMs };
  return { ...s, keys: s.keys.map((k) => (k.name === name ? rotated : k)) };
}

export function removeKey(s: ControlState, name: string): ControlState {
  findKey(s, name);
  return { ...s, keys: s.keys.filter((k) => k.name !== name) };
}

export function findKey(s: ControlState, name: string): KeyEntry {
  const k = s.keys.find((k) => k.name === name);
  if (k === undefined) {
    return fail(ErrorCode.NotFound, `no API key named "${name}" (polymurctl key ls lists them)`);
  }
  return k;
}

/** The routing policy a node of `group` applies: its group's, else the fleet's, else broadcast. */
export function effectiveRouting(s: ControlState, group: string): RoutingPolicy {
  const own =
    group === "" ? undefined : s.routing.find((r) => "group" in r.scope && r.scope.group === group);
  return own?.routing ?? s.routing.find((r) => "all" in r.scope)?.routing ?? BROADCAST;
}

/** The rules nodes of `group` run, and whose they are: the group's own, else the fleet's, else none. */
export function effectiveRules(s: ControlState, group: string): RulesEntry | null {
  const own =
    group === "" ? undefined : s.rules.find((r) => "group" in r.scope && r.scope.group === group);
  return own ?? s.rules.find((r) => "all" in r.scope) ?? null;
}

/** Fleet-wide destinations first, then the group's, each in the order added. */
export function destinationsFor(s: ControlState, group: string): string[] {
  const all = s.destinations.filter((d) => "all" in d.scope).map((d) => d.spec);
  if (group === "") return all;
  const own = s.destinations
    .filter((d) => "group" in d.scope && d.scope.group === group)
    .map((d) => d.spec);
  return [...all, ...own];
}

/**
 * Checks a document read from a store: a damaged or foreign document must
 * stop the control plane with a clear error rather than be served to nodes.
 */
export function checkState(value: unknown, where: string): ControlState {
  const bad = (why: string): never =>
    fail(ErrorCode.StoreCorrupt, `${where} does not hold a polymur control state: ${why}`);
  if (typeof value !== "object" || value === null) return bad("not a JSON object");
  // Documents written before rules existed have none.
  const v: Record<string, unknown> = { rules: [], ...(value as Record<string, unknown>) };
  if (!Number.isSafeInteger(v["version"]) || (v["version"] as number) < 0) bad("bad version");
  for (const f of ["destinations", "routing", "rules", "keys"]) {
    if (!Array.isArray(v[f])) bad(`"${f}" is not a list`);
  }
  const scopeOk = (sc: unknown): boolean =>
    typeof sc === "object" &&
    sc !== null &&
    ((sc as Record<string, unknown>)["all"] === true ||
      typeof (sc as Record<string, unknown>)["group"] === "string");
  for (const d of v["destinations"] as unknown[]) {
    const e = d as Record<string, unknown>;
    if (typeof e["spec"] !== "string" || typeof e["id"] !== "string" || !scopeOk(e["scope"])) {
      bad(`bad destination ${JSON.stringify(d)}`);
    }
  }
  for (const r of v["routing"] as unknown[]) {
    const e = r as Record<string, unknown>;
    if (!scopeOk(e["scope"]) || typeof e["routing"] !== "object" || e["routing"] === null) {
      bad(`bad routing entry ${JSON.stringify(r)}`);
    }
  }
  for (const r of v["rules"] as unknown[]) {
    const e = r as Record<string, unknown>;
    const f = e["rules"] as Record<string, unknown> | null | undefined;
    if (
      !scopeOk(e["scope"]) ||
      typeof f !== "object" ||
      f === null ||
      typeof f["text"] !== "string" ||
      typeof f["fileName"] !== "string"
    ) {
      bad(`bad rules entry for ${JSON.stringify(e["scope"])}`);
    }
  }
  for (const k of v["keys"] as unknown[]) {
    const e = k as Record<string, unknown>;
    if (typeof e["name"] !== "string" || typeof e["digest"] !== "string") {
      bad(`bad API key entry for ${JSON.stringify(e["name"])}`);
    }
  }
  return v as unknown as ControlState;
}
