import { ErrorCode, PolymurError } from "../common/errors.ts";
import type { ControlState } from "./control-state.ts";
import type { ChangeRecord, HistoryEntry, HistoryVersion } from "./state-history.ts";

/** A state as read from a store, with the store's compare-and-set token. */
export interface StoredState {
  readonly state: ControlState;
  /**
   * The store's revision of the document: Consul's ModifyIndex, the file
   * store's version. 0n when nothing was ever written.
   */
  readonly revision: bigint;
}

/** What a control-plane replica records while a node's Subscribe stream is open. */
export interface NodeSubscription {
  readonly nodeId: string;
  readonly group: string;
  readonly role: string;
  readonly hostname: string;
  readonly appliedVersion: number;
  /** The replica holding the stream, and the stream's id (a node may reconnect elsewhere). */
  readonly replica: string;
  readonly streamId: string;
  readonly open: boolean;
  /** When this stream was opened. */
  readonly sinceMs: number;
  /** Refreshed every few seconds while the stream is open. */
  readonly lastSeenMs: number;
}

export interface DestinationReport {
  readonly spec: string;
  readonly state: string;
  readonly forwarded: number;
  readonly dropped: number;
  readonly queued: number;
  readonly queuedBytes: number;
  readonly resent: number;
  /**
   * The destination's disk queue (--queue-dir): datapoints and bytes on
   * disk, and the age of its oldest datapoint waiting, in seconds. 0 without
   * one; absent from a report recorded by an older control plane.
   */
  readonly diskDatapoints?: number;
  readonly diskBytes?: number;
  readonly oldestQueuedSeconds?: number;
  /** Of dropped, per reason; absent from a report recorded by an older control plane. */
  readonly droppedBy?: ReasonCounts;
  /** The destination's last error since it last connected (at most 200 characters); absent when none. */
  readonly lastError?: string;
}

/**
 * Counts per reason (`field_count`, `queue_full`, …), as a node reported
 * them: only reasons with a count, a few at most (see REPORT_LIMITS).
 */
export type ReasonCounts = Readonly<Record<string, number>>;

export interface NodeCountersReport {
  readonly received: number;
  readonly forwarded: number;
  readonly dropped: number;
  readonly rejected: number;
  readonly connections: number;
  /**
   * Of rejected, per reason; valid lines sent nowhere, per reason; of
   * dropped, per reason. Absent from a report recorded by an older control
   * plane.
   */
  readonly rejectedBy?: ReasonCounts;
  readonly unroutedBy?: ReasonCounts;
  readonly droppedBy?: ReasonCounts;
}

/**
 * What the control plane keeps of a report's free-form parts, so that a
 * node record stays small (one Consul value each): reasons per map, the
 * length of a reason's name, and of a destination's last error.
 */
export const REPORT_LIMITS = {
  reasons: 32,
  reasonChars: 64,
  lastErrorChars: 200,
} as const;

/** The last ReportStatus of a node. */
export interface NodeReport {
  readonly nodeId: string;
  readonly group: string;
  readonly role: string;
  readonly hostname: string;
  readonly appliedVersion: number;
  readonly counters: NodeCountersReport;
  readonly destinations: readonly DestinationReport[];
  readonly lastSeenMs: number;
}

export interface NodeRecord {
  readonly nodeId: string;
  readonly subscription?: NodeSubscription;
  readonly report?: NodeReport;
}

export type StoreListener = (s: StoredState) => void;

/**
 * Where the control plane keeps its state. One document, versioned as a
 * whole, changed only by compare-and-set; every replica sharing a store sees
 * every change through `watch`.
 */
export interface ControlStore {
  /** For logs and error messages: `file:/var/lib/polymur`, `consul://127.0.0.1:8500/polymur`. */
  readonly description: string;
  /**
   * Loads the state. A file store fails on a damaged file; a Consul store
   * that cannot reach Consul logs, starts anyway and keeps trying.
   */
  open(): Promise<void>;
  /** The last state this replica saw (read, written or watched); undefined before any. */
  current(): StoredState | undefined;
  /** Reads the state from the store now. Throws POLYMUR_ERR_STORE_UNAVAILABLE. */
  read(): Promise<StoredState>;
  /**
   * Writes `next` if the stored document is still at `base.revision`.
   * Resolves null when another writer got there first (re-read and retry).
   * With `change`, the version is kept in the history with that record (and
   * versions beyond the last `historyVersions` are dropped); a write without
   * one (a test, a tool) is not kept.
   */
  compareAndSet(
    base: StoredState,
    next: ControlState,
    change?: ChangeRecord,
  ): Promise<StoredState | null>;
  /** How many versions the history keeps (`--history-versions`; HISTORY_DEFAULTS.versions). */
  readonly historyVersions: number;
  /**
   * The records of the versions kept, newest first. Throws
   * POLYMUR_ERR_STORE_UNAVAILABLE when the store cannot be read.
   */
  listHistory(): Promise<HistoryEntry[]>;
  /** A kept version: its record and whole state; undefined when it is not kept. */
  getVersion(version: number): Promise<HistoryVersion | undefined>;
  /** Calls `listener` with each newer state seen; returns the unsubscribe function. */
  watch(listener: StoreListener): () => void;
  /** True while the last exchange with the store succeeded. */
  reachable(): boolean;
  putSubscription(s: NodeSubscription): Promise<void>;
  /** Marks a stream closed, unless the node has since subscribed with another stream. */
  endSubscription(nodeId: string, streamId: string, atMs: number): Promise<void>;
  putReport(r: NodeReport): Promise<void>;
  listNodes(): Promise<NodeRecord[]>;
  /**
   * Removes the node records `expired` picks (both the subscription and the
   * report), unless they changed since they were listed (the node came
   * back). Resolves with those removed.
   */
  removeNodes(expired: (r: NodeRecord) => boolean): Promise<NodeRecord[]>;
  close(): Promise<void>;
}

/**
 * Applies `mutate` to the current state and writes the result with
 * compare-and-set, re-reading and re-applying when another writer (another
 * replica) got there first. `mutate` sees a fresh read and may throw (a
 * version check, a duplicate) to abandon the write. `change`, given the
 * state before and after, is the history's record of the version written.
 * Returns the state written.
 */
export async function updateState(
  store: ControlStore,
  mutate: (s: ControlState) => ControlState,
  change?: (before: ControlState, after: ControlState) => ChangeRecord,
  attempts = 16,
): Promise<ControlState> {
  for (let i = 0; i < attempts; i++) {
    const base = await store.read();
    const next = { ...mutate(base.state), version: base.state.version + 1 };
    const written = await store.compareAndSet(base, next, change?.(base.state, next));
    if (written !== null) return written.state;
  }
  throw new PolymurError(
    ErrorCode.StoreUnavailable,
    `state store ${store.description}: ${attempts} writers in a row got there first; try again`,
  );
}

/** The error every store throws when it cannot reach its storage. */
export function storeUnavailable(store: ControlStore, cause: unknown): PolymurError {
  const why = cause instanceof Error ? cause.message : String(cause);
  const last = store.current();
  const serving =
    last === undefined
      ? "no state has been read yet"
      : `reads are served from the last state seen (version ${last.state.version})`;
  return new PolymurError(
    ErrorCode.StoreUnavailable,
    `state store ${store.description} is unreachable (${why}); ${serving}, writes are refused until it is back`,
    { cause },
  );
}
