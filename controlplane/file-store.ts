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

const STATE_FILE = "state.json";
const LOCK_FILE = "control.lock";
const FORMAT = "polymur-control-state/1";

/**
 * The default store: one JSON file in `--state-dir`, for a single control
 * plane on one machine. Writes are crash-safe (see `writeFileAtomic`): after a
 * crash or power loss the file holds either the previous state or the new
 * one, never a mix. A lock file keeps a second control plane off the same
 * directory. Node statuses live in memory: they are rebuilt within seconds
 * of a restart, as nodes re-subscribe and report.
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

  constructor(dir: string) {
    this.#dir = dir;
    this.description = `file:${dir}`;
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
    const path = join(this.#dir, STATE_FILE);
    let text: string;
    try {
      text = await fs.readFile(path, "utf8");
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw storeUnavailable(this, err);
      this.#current = { state: EMPTY_STATE, revision: 0n };
      return;
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
    this.#current = { state, revision: BigInt(state.version) };
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

  compareAndSet(base: StoredState, next: ControlState): Promise<StoredState | null> {
    const run = async (): Promise<StoredState | null> => {
      const cur = this.#current;
      if (cur === undefined || cur.revision !== base.revision) return null;
      const doc = { format: FORMAT, writtenAt: new Date().toISOString(), state: next };
      try {
        await writeFileAtomic(join(this.#dir, STATE_FILE), `${JSON.stringify(doc, null, 1)}\n`);
        this.#healthy = true;
      } catch (err) {
        this.#healthy = false;
        throw storeUnavailable(this, err);
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
