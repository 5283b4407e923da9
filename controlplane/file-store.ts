import { promises as fs } from "node:fs";
import { dirname, join } from "node:path";
import { ErrorCode, PolymurError } from "../common/errors.ts";
import { releasePidLock, takePidLock } from "../common/pid-lock.ts";
import { PRIVATE_DIR_MODE, PRIVATE_FILE_MODE } from "../common/private-files.ts";
import { type ControlState, checkState, EMPTY_STATE } from "./control-state.ts";
import {
  type ControlStore,
  type NodeRecord,
  type NodeReport,
  type NodeSubscription,
  type StoredState,
  type StoreListener,
  storeUnavailable,
} from "./control-store.ts";
import {
  baselineEntry,
  type ChangeRecord,
  entryFromJson,
  entryToJson,
  HISTORY_DEFAULTS,
  type HistoryEntry,
  type HistoryVersion,
  historyStateFromJson,
} from "./state-history.ts";

const STATE_FILE = "state.json";
const LOCK_FILE = "control.lock";
const FORMAT = "polymur-control-state/1";
/** The history's folder in the state directory: one file per version kept. */
const HISTORY_DIR = "history";

/** `history/00000000000000000042.json`: zero-padded, so names sort as versions do. */
const historyName = (version: number): string => `${String(version).padStart(20, "0")}.json`;
const HISTORY_NAME = /^(\d{20})\.json$/;

export interface FileStoreOptions {
  /** Versions the history keeps. Default HISTORY_DEFAULTS.versions. */
  historyVersions?: number;
}

/**
 * The default store: one JSON file in `--state-dir`, for a single control
 * plane on one machine. Writes are crash-safe (see `writeFileAtomic`): after a
 * crash or power loss the file holds either the previous state or the new
 * one, never a mix. A lock file keeps a second control plane off the same
 * directory. Node statuses live in memory: they are rebuilt within seconds
 * of a restart, as nodes re-subscribe and report.
 *
 * The history is `history/<version>.json` beside the state, one file per
 * version kept (its record and whole state), written (crash-safe) before the
 * state file: a crash between the two leaves a file for a version the state
 * never reached, which open() removes.
 */
export class FileStore implements ControlStore {
  readonly description: string;
  readonly #dir: string;
  #current: StoredState | undefined;
  readonly #listeners = new Set<StoreListener>();
  readonly #subscriptions = new Map<string, NodeSubscription>();
  readonly #reports = new Map<string, NodeReport>();
  /** Writes run one at a time: compare-and-set checks the state the previous write left. */
  #queue: Promise<unknown> = Promise.resolve();
  #locked = false;
  #healthy = true;
  readonly historyVersions: number;
  /** The records of the versions kept, by version (their states stay on disk). */
  readonly #history = new Map<number, HistoryEntry>();

  constructor(dir: string, options: FileStoreOptions = {}) {
    this.#dir = dir;
    this.description = `file:${dir}`;
    this.historyVersions = options.historyVersions ?? HISTORY_DEFAULTS.versions;
  }

  async open(): Promise<void> {
    await fs.mkdir(this.#dir, { recursive: true, mode: PRIVATE_DIR_MODE });
    // One an earlier version (or an operator) made looser is made private.
    await fs.chmod(this.#dir, PRIVATE_DIR_MODE);
    this.#lock();
    for (const name of await fs.readdir(this.#dir)) {
      // A temp file is a write that never reached its rename: the crash it records
      // happened before the state changed, so it holds nothing to keep.
      if (name.startsWith(`${STATE_FILE}.tmp-`))
        await fs.rm(join(this.#dir, name), { force: true });
    }
    this.#current = await this.#readState();
    await this.#openHistory(this.#current.state);
  }

  async #readState(): Promise<StoredState> {
    const path = join(this.#dir, STATE_FILE);
    let text: string;
    try {
      text = await fs.readFile(path, "utf8");
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw storeUnavailable(this, err);
      return { state: EMPTY_STATE, revision: 0n };
    }
    let doc: unknown;
    try {
      doc = JSON.parse(text);
    } catch (err) {
      throw new PolymurError(
        ErrorCode.StoreCorrupt,
        `${path} is not valid JSON (${(err as Error).message}); restore it from a backup or move it away to start empty`,
      );
    }
    const d = doc as Record<string, unknown>;
    if (d["format"] !== FORMAT) {
      throw new PolymurError(
        ErrorCode.StoreCorrupt,
        `${path} has format ${JSON.stringify(d["format"])}, expected "${FORMAT}"`,
      );
    }
    const state = checkState(d["state"], path);
    return { state, revision: BigInt(state.version) };
  }

  /**
   * Loads the history's records: drops files of versions the state never
   * reached (a crash between the two writes) and those beyond the last
   * `historyVersions`; a file that cannot be read is left out (and left
   * there). A state with no record of its own (written before history was
   * kept) gets a baseline one.
   */
  async #openHistory(state: ControlState): Promise<void> {
    const dir = join(this.#dir, HISTORY_DIR);
    await fs.mkdir(dir, { recursive: true, mode: PRIVATE_DIR_MODE });
    await fs.chmod(dir, PRIVATE_DIR_MODE);
    for (const name of await fs.readdir(dir)) {
      const m = HISTORY_NAME.exec(name);
      if (m === null) {
        if (name.includes(".tmp-")) await fs.rm(join(dir, name), { force: true });
        continue;
      }
      const version = Number(m[1]);
      if (version > state.version || version <= state.version - this.historyVersions) {
        await fs.rm(join(dir, name), { force: true });
        continue;
      }
      try {
        const doc = JSON.parse(await fs.readFile(join(dir, name), "utf8")) as unknown;
        const entry = entryFromJson(doc, join(dir, name));
        if (entry.version === version) this.#history.set(version, entry);
      } catch {
        // A damaged record: not listed, not restorable; the rest of the history stands.
      }
    }
    if (state.version > 0 && !this.#history.has(state.version)) {
      const entry = baselineEntry(state, "", Date.now());
      await this.#writeHistory(entry, state);
      this.#history.set(entry.version, entry);
    }
  }

  async #writeHistory(entry: HistoryEntry, state: ControlState): Promise<void> {
    const doc = { ...entryToJson(entry), state };
    await writeFileAtomic(
      join(this.#dir, HISTORY_DIR, historyName(entry.version)),
      `${JSON.stringify(doc)}\n`,
    );
  }

  /** Drops the versions at or below `version - historyVersions`. */
  async #prune(version: number): Promise<void> {
    for (const v of [...this.#history.keys()]) {
      if (v > version - this.historyVersions) continue;
      this.#history.delete(v);
      await fs.rm(join(this.#dir, HISTORY_DIR, historyName(v)), { force: true });
    }
  }

  current(): StoredState | undefined {
    return this.#current;
  }

  reachable(): boolean {
    return this.#healthy;
  }

  async read(): Promise<StoredState> {
    // This process owns the file (the lock): what it last wrote is what is there.
    await this.#queue;
    if (this.#current === undefined) throw storeUnavailable(this, new Error("not opened"));
    return this.#current;
  }

  compareAndSet(
    base: StoredState,
    next: ControlState,
    change?: ChangeRecord,
  ): Promise<StoredState | null> {
    const run = async (): Promise<StoredState | null> => {
      const cur = this.#current;
      if (cur === undefined || cur.revision !== base.revision) return null;
      const doc = { format: FORMAT, writtenAt: new Date().toISOString(), state: next };
      const entry = change === undefined ? undefined : { ...change, version: next.version };
      try {
        // The record first: a crash before the state's rename leaves one open() drops.
        if (entry !== undefined) await this.#writeHistory(entry, next);
        await writeFileAtomic(join(this.#dir, STATE_FILE), `${JSON.stringify(doc, null, 1)}\n`);
        this.#healthy = true;
      } catch (err) {
        this.#healthy = false;
        if (entry !== undefined) {
          await fs
            .rm(join(this.#dir, HISTORY_DIR, historyName(entry.version)), { force: true })
            .catch(() => {});
        }
        throw storeUnavailable(this, err);
      }
      if (entry !== undefined) {
        this.#history.set(entry.version, entry);
        // The state is written: a history file left behind is dropped at the next open.
        await this.#prune(next.version).catch(() => {});
      }
      const stored = { state: next, revision: BigInt(next.version) };
      this.#current = stored;
      for (const l of this.#listeners) l(stored);
      return stored;
    };
    const p = this.#queue.then(run, run);
    this.#queue = p.catch(() => {});
    return p;
  }

  async listHistory(): Promise<HistoryEntry[]> {
    await this.#queue;
    return [...this.#history.values()].sort((a, b) => b.version - a.version);
  }

  async getVersion(version: number): Promise<HistoryVersion | undefined> {
    await this.#queue;
    const entry = this.#history.get(version);
    if (entry === undefined) return undefined;
    const path = join(this.#dir, HISTORY_DIR, historyName(version));
    let doc: Record<string, unknown>;
    try {
      doc = JSON.parse(await fs.readFile(path, "utf8")) as Record<string, unknown>;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
      if (err instanceof SyntaxError) {
        throw new PolymurError(
          ErrorCode.StoreCorrupt,
          `${path} is not valid JSON (${err.message})`,
        );
      }
      throw storeUnavailable(this, err);
    }
    return { entry, state: historyStateFromJson(doc["state"], version, path) };
  }

  watch(listener: StoreListener): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  async putSubscription(s: NodeSubscription): Promise<void> {
    this.#subscriptions.set(s.nodeId, s);
  }

  async endSubscription(nodeId: string, streamId: string, atMs: number): Promise<void> {
    const s = this.#subscriptions.get(nodeId);
    if (s !== undefined && s.streamId === streamId) {
      this.#subscriptions.set(nodeId, { ...s, open: false, lastSeenMs: atMs });
    }
  }

  async putReport(r: NodeReport): Promise<void> {
    this.#reports.set(r.nodeId, r);
  }

  async listNodes(): Promise<NodeRecord[]> {
    const ids = new Set([...this.#subscriptions.keys(), ...this.#reports.keys()]);
    return [...ids].map((nodeId) => {
      const subscription = this.#subscriptions.get(nodeId);
      const report = this.#reports.get(nodeId);
      return {
        nodeId,
        ...(subscription === undefined ? {} : { subscription }),
        ...(report === undefined ? {} : { report }),
      };
    });
  }

  async removeNodes(expired: (r: NodeRecord) => boolean): Promise<NodeRecord[]> {
    const gone = (await this.listNodes()).filter(expired);
    for (const r of gone) {
      this.#subscriptions.delete(r.nodeId);
      this.#reports.delete(r.nodeId);
    }
    return gone;
  }

  async close(): Promise<void> {
    await this.#queue;
    this.#listeners.clear();
    if (this.#locked) {
      this.#locked = false;
      try {
        releasePidLock(join(this.#dir, LOCK_FILE));
      } catch {}
    }
  }

  /** One control plane per state directory: two would overwrite each other's file. */
  #lock(): void {
    const refused = takePidLock(join(this.#dir, LOCK_FILE));
    if (refused === null) {
      this.#locked = true;
      return;
    }
    if (refused.kind === "failed") throw storeUnavailable(this, refused.err);
    throw new PolymurError(
      ErrorCode.Config,
      `--state-dir ${this.#dir} is in use by another control plane (pid ${refused.pid}); give each its own directory, or share state through --store consul://…`,
    );
  }
}

let tmpCounter = 0;

/**
 * Replaces `path` with `data` so that a crash at any point leaves either the
 * old file or the new one: write a temp file in the same directory, fsync it
 * (its bytes are on disk before its name can be), rename it over the target
 * (atomic on POSIX), then fsync the directory (the rename itself is on disk).
 */
export async function writeFileAtomic(path: string, data: string): Promise<void> {
  const tmp = `${path}.tmp-${process.pid}-${++tmpCounter}`;
  const fh = await fs.open(tmp, "w", PRIVATE_FILE_MODE);
  try {
    await fh.writeFile(data, "utf8");
    await fh.sync();
  } finally {
    await fh.close();
  }
  try {
    await fs.rename(tmp, path);
  } catch (err) {
    await fs.rm(tmp, { force: true });
    throw err;
  }
  const dir = await fs.open(dirname(path), "r");
  try {
    await dir.sync();
  } finally {
    await dir.close();
  }
}
