import { EventEmitter } from "node:events";
import type { IncomingMessage } from "node:http";
import { gunzipSync, gzipSync } from "node:zlib";
import Consul from "consul";
import { ErrorCode, PolymurError } from "../common/errors.ts";
import type { Logger } from "../common/logger.ts";
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

/**
 * Every ConsulStoreOptions default, in one place: the store falls back to
 * these, and the control plane's `--consul-wait` default is built from them.
 */
export const CONSUL_STORE_DEFAULTS = {
  waitSec: 30,
  requestTimeoutMs: 5000,
} as const satisfies Partial<ConsulStoreOptions>;

/**
 * The largest transaction Consul takes by default (`txn_max_req_len`,
 * 512 KiB): the request body, the JSON of its operations with every value in
 * base64. Consul 1.8 takes a body of exactly this many bytes and answers 413
 * to one byte more. The state document is written in one transaction, so it
 * can be some 383 KiB of JSON at most (base64 makes 4 bytes of 3); a change
 * that would make it larger is refused before anything is written (see
 * stateTooLarge). A write whose history record would not fit beside the state
 * in one transaction is written in two (the state, then the record).
 */
export const CONSUL_TXN_MAX_BYTES = 512 * 1024;

/** The size of a transaction as Consul counts it: its request body, in bytes. */
const txnBytes = (ops: readonly TxnOp[]): number => Buffer.byteLength(JSON.stringify(ops));

/** Consul takes at most 64 operations in one transaction. */
const TXN_MAX_OPS = 64;

/** `…/00000000000000000042`: zero-padded, so keys sort as versions do. */
const versionKey = (version: number): string => String(version).padStart(20, "0");

export interface ConsulStoreOptions {
  /** Consul HTTP API addresses, tried in this order (the next one when one fails). */
  addresses: ReadonlyArray<{ host: string; port: number }>;
  /** KV prefix; the state is `<prefix>/state`, node statuses `<prefix>/nodes/<id>/…`. */
  prefix: string;
  /** ACL token (X-Consul-Token). Default: none (CONSUL_HTTP_TOKEN, read by the caller). */
  token?: string;
  /** Longest a blocking query waits before it is renewed. Default 30 s (Consul's maximum is 10 min). */
  waitSec?: number;
  /** Timeout of a read or write. Default 5000 ms. */
  requestTimeoutMs?: number;
  /** Versions the history keeps. Default HISTORY_DEFAULTS.versions. */
  historyVersions?: number;
  log?: Logger;
}

/** The one entry of a KV read. */
interface KvItem {
  Key: string;
  ModifyIndex: number;
  Value: string | null | undefined;
}

/** A KV read with `buffer: true`: the value's bytes. */
interface KvBytesItem {
  Key: string;
  ModifyIndex: number;
  Value: Buffer | null | undefined;
}

/** One operation of a transaction (PUT /v1/txn), values in base64. */
interface TxnOp {
  KV: { Verb: string; Key: string; Value?: string; Index?: number };
}

/** papi's request context: an EventEmitter whose "cancel" aborts the request. */
interface RequestCtx extends EventEmitter {
  includeResponse: boolean;
}

/**
 * The subset of the npm `consul` client used here, typed as it behaves (its
 * own typings reject `index`/`wait`/`ctx` and say null where undefined comes).
 */
interface ConsulClient {
  kv: {
    get(opts: Record<string, unknown>): Promise<unknown>;
    keys(opts: Record<string, unknown>): Promise<unknown>;
    set(opts: Record<string, unknown>): Promise<boolean | undefined>;
  };
  transaction: { create(ops: unknown[], opts: Record<string, unknown>): Promise<unknown> };
  destroy(): void;
}

/** papi's errors: `isResponse` with the HTTP response, or a socket error / timeout. */
interface PapiError extends Error {
  isResponse?: boolean;
  isAbort?: boolean;
  statusCode?: number;
  response?: IncomingMessage & { body?: unknown };
}

/**
 * Consul KV: several control-plane replicas share one state document,
 * written with compare-and-set on its ModifyIndex (through a one-operation
 * transaction, which returns the new index), and learn of each other's
 * writes through a blocking query on the key: Consul answers it the moment
 * the key changes, so there is no polling.
 *
 * When Consul cannot be reached the store keeps the last state it saw
 * (`current()`), refuses writes with POLYMUR_ERR_STORE_UNAVAILABLE, and
 * keeps retrying the blocking query with backoff, moving on to the next
 * address each time.
 *
 * The history is two keys per version kept, written in the state's
 * transaction (so a version is kept exactly when it was written):
 * `<prefix>/history/changes/<version>`, its record (small JSON, what
 * ListHistory reads), and `<prefix>/history/states/<version>`, the whole
 * state, gzipped (a value is at most 512 KiB). The same transaction deletes
 * the version that falls out of the last `historyVersions`.
 */
export class ConsulStore implements ControlStore {
  readonly description: string;
  readonly #clients: ConsulClient[];
  readonly #stateKey: string;
  readonly #nodesPrefix: string;
  readonly #waitSec: number;
  readonly #timeoutMs: number;
  readonly #log: Logger | undefined;
  #active = 0;
  #current: StoredState | undefined;
  #reachable = false;
  #closed = false;
  readonly #listeners = new Set<StoreListener>();
  /** Cancels every request in flight when the store closes. */
  readonly #closing = new EventEmitter();
  #watching: Promise<void> | undefined;
  #lastNodes: NodeRecord[] = [];
  readonly historyVersions: number;
  readonly #changesPrefix: string;
  readonly #statesPrefix: string;

  constructor(options: ConsulStoreOptions) {
    if (options.addresses.length === 0) {
      throw new PolymurError(ErrorCode.Config, "--store consul:// needs at least one host:port");
    }
    const prefix = options.prefix.replace(/^\/+|\/+$/g, "");
    this.description = `consul://${options.addresses.map((a) => `${a.host}:${a.port}`).join(",")}/${prefix}`;
    this.#stateKey = `${prefix}/state`;
    this.#nodesPrefix = `${prefix}/nodes/`;
    this.#changesPrefix = `${prefix}/history/changes/`;
    this.#statesPrefix = `${prefix}/history/states/`;
    this.historyVersions = options.historyVersions ?? HISTORY_DEFAULTS.versions;
    this.#waitSec = options.waitSec ?? CONSUL_STORE_DEFAULTS.waitSec;
    this.#timeoutMs = options.requestTimeoutMs ?? CONSUL_STORE_DEFAULTS.requestTimeoutMs;
    this.#log = options.log;
    this.#clients = options.addresses.map(
      (a) =>
        new Consul({
          host: a.host,
          port: a.port,
          ...(options.token === undefined ? {} : { defaults: { token: options.token } }),
        }) as unknown as ConsulClient,
    );
    this.#closing.setMaxListeners(0);
  }

  async open(): Promise<void> {
    let s: StoredState | undefined;
    try {
      s = await this.read();
    } catch (err) {
      this.#log?.warn(
        { store: this.description, err: (err as Error).message },
        "state store unreachable at start; serving nothing until it answers",
      );
    }
    if (s !== undefined) {
      await this.#openHistory(s).catch((err: unknown) => {
        this.#log?.warn(
          { store: this.description, err: (err as Error).message },
          "history: could not record the state found at start, or drop versions no longer kept",
        );
      });
    }
    this.#watching = this.#watchLoop();
  }

  /**
   * A state with no record of its own (written before history was kept)
   * gets a baseline one, created only if absent (another replica may be at
   * it too); versions beyond the last `historyVersions` are dropped.
   */
  async #openHistory(s: StoredState): Promise<void> {
    const v = s.state.version;
    if (s.revision !== 0n && v > 0) {
      const [, have] = await this.#call("read", (c, ctx) =>
        c.kv.get({ key: this.#changesPrefix + versionKey(v), ctx, timeout: this.#timeoutMs }),
      );
      if (have === undefined) {
        const ops = this.#historyOps(baselineEntry(s.state, "", Date.now()), s.state).map((op) => ({
          KV: { ...op.KV, Verb: "cas", Index: 0 },
        }));
        await this.#txn(ops).catch((err: unknown) => {
          if (!(err instanceof PolymurError && err.code === ErrorCode.VersionConflict)) throw err;
        });
      }
    }
    const stale: string[] = [];
    for (const prefix of [this.#changesPrefix, this.#statesPrefix]) {
      const [, keys] = await this.#call("read", (c, ctx) =>
        c.kv.keys({ key: prefix, ctx, timeout: this.#timeoutMs }).catch((err: PapiError) => {
          // No key under the prefix: Consul answers 404.
          if (err.isResponse && err.statusCode === 404) return [undefined, []];
          throw err;
        }),
      );
      for (const key of (keys ?? []) as string[]) {
        const version = Number(key.slice(prefix.length));
        if (Number.isSafeInteger(version) && version <= v - this.historyVersions) stale.push(key);
      }
    }
    for (let i = 0; i < stale.length; i += TXN_MAX_OPS) {
      await this.#txn(
        stale.slice(i, i + TXN_MAX_OPS).map((Key) => ({ KV: { Verb: "delete", Key } })),
      );
    }
  }

  /** The two keys of a kept version (its record, its state gzipped), as `set` operations. */
  #historyOps(entry: HistoryEntry, state: ControlState): TxnOp[] {
    const k = versionKey(entry.version);
    return [
      {
        KV: {
          Verb: "set",
          Key: this.#changesPrefix + k,
          Value: Buffer.from(JSON.stringify(entryToJson(entry))).toString("base64"),
        },
      },
      {
        KV: {
          Verb: "set",
          Key: this.#statesPrefix + k,
          Value: gzipSync(JSON.stringify(state)).toString("base64"),
        },
      },
    ];
  }

  /** Runs a transaction; a failed check (HTTP 409) is POLYMUR_ERR_VERSION_CONFLICT. */
  async #txn(ops: TxnOp[]): Promise<unknown> {
    const [, result] = await this.#call("write", (c, ctx) =>
      c.transaction.create(ops, { ctx, timeout: this.#timeoutMs }),
    );
    return result;
  }

  current(): StoredState | undefined {
    return this.#current;
  }

  reachable(): boolean {
    return this.#reachable;
  }

  async read(): Promise<StoredState> {
    const [, item] = await this.#call("read", (c, ctx) =>
      c.kv.get({ key: this.#stateKey, ctx, timeout: this.#timeoutMs }),
    );
    if (item === undefined) {
      // No document (a fresh prefix, or someone deleted it): start from empty, but never
      // hand out a version a node has already seen.
      const state = { ...EMPTY_STATE, version: this.#current?.state.version ?? 0 };
      const empty = { state, revision: 0n };
      if (this.#current === undefined) this.#observe(empty); // a fresh prefix: serve the empty state
      return empty;
    }
    const stored = this.#parse(item as KvItem);
    this.#observe(stored);
    return stored;
  }

  async compareAndSet(
    base: StoredState,
    next: ControlState,
    change?: ChangeRecord,
  ): Promise<StoredState | null> {
    const ops: TxnOp[] = [
      {
        KV: {
          Verb: "cas",
          Key: this.#stateKey,
          Value: Buffer.from(JSON.stringify(next)).toString("base64"),
          Index: Number(base.revision),
        },
      },
    ];
    // Measured, not left to Consul's 413: the refusal then says what is large and what to do.
    const size = txnBytes(ops);
    if (size > CONSUL_TXN_MAX_BYTES) {
      throw stateTooLarge(
        this.description,
        next,
        `written to Consul it is one transaction of ${size} bytes (the state's JSON in base64), more than the ${CONSUL_TXN_MAX_BYTES} bytes (512 KiB) Consul takes in one (txn_max_req_len, its default)`,
      );
    }
    let history: TxnOp[] = [];
    if (change !== undefined) {
      history = this.#historyOps({ ...change, version: next.version }, next);
      const dropped = next.version - this.historyVersions;
      if (dropped > 0) {
        for (const prefix of [this.#changesPrefix, this.#statesPrefix]) {
          history.push({ KV: { Verb: "delete", Key: prefix + versionKey(dropped) } });
        }
      }
      // One transaction when it fits (the usual case: a kept version exactly when written).
      if (txnBytes([...ops, ...history]) <= CONSUL_TXN_MAX_BYTES) {
        ops.push(...history);
        history = [];
      }
    }
    let result: unknown;
    try {
      result = await this.#txn(ops);
    } catch (err) {
      // A failed CAS inside a transaction is HTTP 409: someone else wrote first.
      if (err instanceof PolymurError && err.code === ErrorCode.VersionConflict) return null;
      // A Consul set up to take less than its default (txn_max_req_len, kv_max_value_size).
      if (tooLargeForConsul(err)) {
        throw stateTooLarge(
          this.description,
          next,
          `Consul refused its transaction of ${size} bytes (${err.message})`,
        );
      }
      throw err;
    }
    const kv = (result as { Results?: Array<{ KV?: { ModifyIndex?: number } }> }).Results?.[0]?.KV;
    if (kv?.ModifyIndex === undefined) return null;
    const stored = { state: next, revision: BigInt(kv.ModifyIndex) };
    this.#observe(stored);
    if (history.length > 0) {
      // Too large for one transaction with the state: the record follows it. The version is
      // written either way; a record that fails here is missing from the history, and said so.
      await this.#txn(history).catch((err: unknown) => {
        this.#log?.warn(
          { version: next.version, err: (err as Error).message },
          "history: this version is not kept (its record could not be written)",
        );
      });
    }
    return stored;
  }

  async listHistory(): Promise<HistoryEntry[]> {
    const [, items] = await this.#call("read", (c, ctx) =>
      c.kv.get({ key: this.#changesPrefix, recurse: true, ctx, timeout: this.#timeoutMs }),
    );
    const current = this.#current?.state.version ?? 0;
    const entries: HistoryEntry[] = [];
    for (const item of (items ?? []) as KvItem[]) {
      try {
        const e = entryFromJson(JSON.parse(item.Value ?? ""), `Consul key ${item.Key}`);
        // Another replica may keep more; this one shows what it keeps.
        if (e.version > current - this.historyVersions) entries.push(e);
      } catch (err) {
        this.#log?.warn({ key: item.Key, err: (err as Error).message }, "history: record skipped");
      }
    }
    return entries.sort((a, b) => b.version - a.version);
  }

  async getVersion(version: number): Promise<HistoryVersion | undefined> {
    const k = versionKey(version);
    const [[, record], [, state]] = await Promise.all([
      this.#call("read", (c, ctx) =>
        c.kv.get({ key: this.#changesPrefix + k, ctx, timeout: this.#timeoutMs }),
      ),
      this.#call("read", (c, ctx) =>
        c.kv.get({ key: this.#statesPrefix + k, buffer: true, ctx, timeout: this.#timeoutMs }),
      ),
    ]);
    if (record === undefined || state === undefined) return undefined;
    const recordKey = this.#changesPrefix + k;
    const stateKey = this.#statesPrefix + k;
    let entry: HistoryEntry;
    let doc: unknown;
    try {
      entry = entryFromJson(JSON.parse((record as KvItem).Value ?? ""), `Consul key ${recordKey}`);
      doc = JSON.parse(gunzipSync((state as KvBytesItem).Value ?? Buffer.alloc(0)).toString());
    } catch (err) {
      if (err instanceof PolymurError) throw err;
      throw new PolymurError(
        ErrorCode.StoreCorrupt,
        `Consul keys ${recordKey} and ${stateKey} do not hold a kept version (${(err as Error).message})`,
      );
    }
    return { entry, state: historyStateFromJson(doc, version, `Consul key ${stateKey}`) };
  }

  watch(listener: StoreListener): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  async putSubscription(s: NodeSubscription): Promise<void> {
    await this.#set(this.#nodeKey(s.nodeId, "subscription"), s);
  }

  async endSubscription(nodeId: string, streamId: string, atMs: number): Promise<void> {
    const key = this.#nodeKey(nodeId, "subscription");
    const [, item] = await this.#call("read", (c, ctx) =>
      c.kv.get({ key, ctx, timeout: this.#timeoutMs }),
    );
    if (item === undefined) return;
    const { Value, ModifyIndex } = item as KvItem;
    const s = JSON.parse(Value ?? "null") as NodeSubscription | null;
    // Another stream of the same node (a reconnect, maybe to another replica) owns it now.
    if (s === null || s.streamId !== streamId) return;
    const value = JSON.stringify({ ...s, open: false, lastSeenMs: atMs });
    await this.#call("write", (c, ctx) =>
      c.kv.set({ key, value, cas: String(ModifyIndex), ctx, timeout: this.#timeoutMs }),
    );
  }

  async putReport(r: NodeReport): Promise<void> {
    await this.#set(this.#nodeKey(r.nodeId, "report"), r);
  }

  /** Every replica's nodes. When Consul is unreachable: the last list read. */
  async listNodes(): Promise<NodeRecord[]> {
    try {
      this.#lastNodes = (await this.#readNodes()).map((n) => n.record);
    } catch (err) {
      this.#log?.warn({ err: (err as Error).message }, "listing nodes from the last list read");
    }
    return this.#lastNodes;
  }

  /**
   * Deletes each picked node's keys with `delete-cas` on the indexes read, in
   * one transaction per node: a node that subscribed or reported since it
   * was read keeps its record.
   */
  async removeNodes(expired: (r: NodeRecord) => boolean): Promise<NodeRecord[]> {
    const removed: NodeRecord[] = [];
    for (const { record, keys } of await this.#readNodes()) {
      if (!expired(record)) continue;
      const ops = keys.map(({ key, index }) => ({
        KV: { Verb: "delete-cas", Key: key, Index: index },
      }));
      try {
        await this.#txn(ops);
        removed.push(record);
      } catch (err) {
        if (!(err instanceof PolymurError && err.code === ErrorCode.VersionConflict)) throw err;
      }
    }
    return removed;
  }

  /** Every node's record, with the keys it is made of and their ModifyIndex. */
  async #readNodes(): Promise<
    Array<{ record: NodeRecord; keys: Array<{ key: string; index: number }> }>
  > {
    const [, items] = await this.#call("read", (c, ctx) =>
      c.kv.get({ key: this.#nodesPrefix, recurse: true, ctx, timeout: this.#timeoutMs }),
    );
    const byId = new Map<string, { subscription?: NodeSubscription; report?: NodeReport }>();
    const keysById = new Map<string, Array<{ key: string; index: number }>>();
    for (const item of (items ?? []) as KvItem[]) {
      const rest = item.Key.slice(this.#nodesPrefix.length);
      const slash = rest.lastIndexOf("/");
      if (slash < 0 || item.Value == null) continue;
      const id = decodeURIComponent(rest.slice(0, slash));
      const kind = rest.slice(slash + 1);
      keysById.set(id, [...(keysById.get(id) ?? []), { key: item.Key, index: item.ModifyIndex }]);
      let value: unknown;
      try {
        value = JSON.parse(item.Value);
      } catch {
        continue;
      }
      const rec = byId.get(id) ?? {};
      if (kind === "subscription") rec.subscription = value as NodeSubscription;
      else if (kind === "report") rec.report = value as NodeReport;
      byId.set(id, rec);
    }
    return [...byId].map(([nodeId, rec]) => ({
      record: { nodeId, ...rec },
      keys: keysById.get(nodeId) ?? [],
    }));
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#closing.emit("cancel");
    await this.#watching;
    this.#listeners.clear();
    for (const c of this.#clients) c.destroy();
  }

  #nodeKey(nodeId: string, kind: "subscription" | "report"): string {
    return `${this.#nodesPrefix}${encodeURIComponent(nodeId)}/${kind}`;
  }

  async #set(key: string, value: unknown): Promise<void> {
    await this.#call("write", (c, ctx) =>
      c.kv.set({ key, value: JSON.stringify(value), ctx, timeout: this.#timeoutMs }),
    );
  }

  #parse(item: KvItem): StoredState {
    let doc: unknown;
    try {
      doc = JSON.parse(item.Value ?? "");
    } catch (err) {
      throw new PolymurError(
        ErrorCode.StoreCorrupt,
        `Consul key ${this.#stateKey} is not JSON (${(err as Error).message})`,
      );
    }
    const state = checkState(doc, `Consul key ${this.#stateKey}`);
    return { state, revision: BigInt(item.ModifyIndex) };
  }

  /** Publishes a state if it is newer than the one held (writes and the watch race). */
  #observe(s: StoredState): void {
    const cur = this.#current;
    if (cur !== undefined && s.revision <= cur.revision) return;
    this.#current = s;
    for (const l of this.#listeners) l(s);
  }

  /**
   * Runs one request against the active address, moving on to the next when
   * it fails at the transport (refused, reset, timed out) or Consul answers
   * 5xx (no cluster leader): each address is tried once. A CAS conflict (409)
   * is passed through as the cause. Resolves [response, body].
   */
  async #call(
    what: "read" | "write",
    fn: (c: ConsulClient, ctx: RequestCtx) => Promise<unknown>,
  ): Promise<[IncomingMessage, unknown]> {
    let lastErr: unknown;
    for (let tried = 0; tried < this.#clients.length; tried++) {
      if (this.#closed) break;
      const i = this.#active;
      const { ctx, release } = this.#ctx();
      try {
        const out = (await fn(this.#clients[i]!, ctx)) as [IncomingMessage, unknown?];
        this.#reachable = true;
        return [out[0], out[1]];
      } catch (err) {
        const e = err as PapiError;
        if (e.isResponse && e.statusCode !== undefined && e.statusCode < 500) {
          this.#reachable = true;
          if (e.statusCode === 409) {
            throw new PolymurError(ErrorCode.VersionConflict, "CAS conflict", { cause: e });
          }
          if (e.statusCode === 413) {
            throw new PolymurError(ErrorCode.Config, describeError(e).message, { cause: e });
          }
          throw storeUnavailable(this, new Error(`Consul refused the ${what}: ${e.message}`));
        }
        lastErr = err;
        if (this.#active === i) this.#active = (i + 1) % this.#clients.length;
      } finally {
        release();
      }
    }
    this.#reachable = false;
    throw storeUnavailable(this, describeError(lastErr ?? new Error("store closed")));
  }

  /** A request context that `close()` cancels; `release` when the request is done. */
  #ctx(): { ctx: RequestCtx; release: () => void } {
    const ctx = new EventEmitter() as RequestCtx;
    ctx.includeResponse = true; // papi then resolves [response, body]: we need X-Consul-Index
    const cancel = (): boolean => ctx.emit("cancel");
    this.#closing.once("cancel", cancel);
    return { ctx, release: () => this.#closing.off("cancel", cancel) };
  }

  /**
   * The blocking query: GET <prefix>/state?index=N&wait=30s returns as soon as
   * the key's ModifyIndex passes N (or after `wait`, unchanged). Consul's
   * rules for the index (consul.io docs, "Blocking Queries"): reset to 0 when
   * it goes backwards, and never block on 0.
   */
  async #watchLoop(): Promise<void> {
    let index = 0n;
    let backoffMs = 100;
    while (!this.#closed) {
      const c = this.#clients[this.#active]!;
      const { ctx, release } = this.#ctx();
      try {
        // Consul adds up to wait/16 of jitter to a blocking query; allow for it.
        const timeout = this.#waitSec * 1000 + Math.ceil((this.#waitSec * 1000) / 16) + 5000;
        const [res, item] = (await c.kv.get({
          key: this.#stateKey,
          index: index.toString(),
          wait: `${this.#waitSec}s`,
          timeout,
          ctx,
        })) as [IncomingMessage, KvItem | undefined];
        const header = res.headers["x-consul-index"];
        const next = typeof header === "string" && /^\d+$/.test(header) ? BigInt(header) : 0n;
        index = next < index ? 0n : next;
        if (index === 0n) index = 1n;
        if (!this.#reachable) {
          this.#log?.info({ store: this.description }, "state store reachable again");
        }
        this.#reachable = true;
        backoffMs = 100;
        if (item === undefined) {
          if (this.#current === undefined) this.#observe({ state: EMPTY_STATE, revision: 0n });
        } else {
          try {
            this.#observe(this.#parse(item));
          } catch (err) {
            this.#log?.error(
              { err: (err as Error).message },
              "ignoring a state document this control plane cannot read",
            );
          }
        }
      } catch (err) {
        if (this.#closed) break;
        if (this.#reachable) {
          this.#log?.warn(
            { store: this.description, err: describeError(err).message },
            "state store unreachable; serving the last state seen, refusing writes",
          );
        }
        this.#reachable = false;
        this.#active = (this.#active + 1) % this.#clients.length;
        index = 0n; // another server may be behind or ahead of the last one: start over
        await this.#sleep(backoffMs);
        backoffMs = Math.min(backoffMs * 2, 2000);
      } finally {
        release();
      }
    }
  }

  #sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(t);
        this.#closing.off("cancel", done);
        resolve();
      };
      const t = setTimeout(done, ms);
      this.#closing.once("cancel", done);
    });
  }
}

/**
 * Whether Consul refused a write as too large (HTTP 413: a transaction over
 * txn_max_req_len, a value over kv_max_value_size): not a store that is
 * unreachable, and trying again would not help (see #call).
 */
function tooLargeForConsul(err: unknown): err is PolymurError {
  return err instanceof PolymurError && (err.cause as PapiError | undefined)?.statusCode === 413;
}

/**
 * The refusal of a change that would make the state larger than the Consul
 * store can write (POLYMUR_ERR_CONFIG, as an over-large rules file is):
 * nothing is written. It names the sizes and what makes the state large (its
 * rules files, largest first), and what to do.
 */
function stateTooLarge(store: string, next: ControlState, why: string): PolymurError {
  const json = Buffer.byteLength(JSON.stringify(next));
  const rules = next.rules
    .map((r) => ({
      whose: "all" in r.scope ? "the fleet's" : `group ${r.scope.group}'s`,
      fileName: r.rules.fileName,
      bytes: Buffer.byteLength(JSON.stringify(r.rules.text)),
    }))
    .sort((a, b) => b.bytes - a.bytes);
  const largest = rules
    .slice(0, 3)
    .map((r) => `${r.whose} ${r.fileName}, ${kib(r.bytes)}`)
    .join("; ");
  const advice =
    rules.length === 0
      ? "remove destinations, routing policies or API keys that are no longer used"
      : `its rules files make most of it (${largest}${rules.length > 3 ? "; …" : ""}): set smaller ones (polymurctl rules set), or unset a group's own (polymurctl rules unset --group NAME) where the fleet's will do`;
  return new PolymurError(
    ErrorCode.Config,
    `the state would be too large for the state store ${store}: version ${next.version} is ${json} bytes of JSON, and ${why}; nothing was changed. To make it smaller: ${advice}`,
  );
}

/** `12.3 KiB`, as the refusal names sizes (as stored: JSON). */
const kib = (bytes: number): string => `${(bytes / 1024).toFixed(1)} KiB`;

/** A socket error (ECONNREFUSED …), a timeout or Consul's answer, in one line. */
function describeError(err: unknown): Error {
  const e = err as PapiError & { code?: string };
  if (e instanceof PolymurError) return e;
  if (e?.isResponse) {
    const body = typeof e.response?.body === "string" ? `: ${e.response.body.trim()}` : "";
    return new Error(`Consul answered ${e.statusCode}${body || ` ${e.message}`}`);
  }
  const code = e?.code ?? (e?.cause as { code?: string } | undefined)?.code;
  const message = String(e?.message ?? e);
  return new Error(code !== undefined && !message.includes(code) ? `${code} ${message}` : message);
}

/**
 * `consul://host:port[,host:port…]/prefix` (prefix default `polymur`, port
 * default 8500).
 */
export function parseConsulUrl(url: string): {
  addresses: { host: string; port: number }[];
  prefix: string;
} {
  const m = /^consul:\/\/([^/]+)(\/.*)?$/.exec(url);
  if (m === null) {
    throw new PolymurError(
      ErrorCode.Config,
      `--store must be consul://host:port[,host:port…]/prefix; got "${url}"`,
    );
  }
  const addresses = m[1]!.split(",").map((hp) => {
    const a = /^(?:\[([^\]]+)\]|([^:]+))(?::(\d{1,5}))?$/.exec(hp.trim());
    const port = Number(a?.[3] ?? 8500);
    if (a === null || port < 1 || port > 65535) {
      throw new PolymurError(ErrorCode.Config, `--store: "${hp}" is not host:port`);
    }
    return { host: a[1] ?? a[2]!, port };
  });
  const prefix = (m[2] ?? "/polymur").replace(/^\/+|\/+$/g, "") || "polymur";
  return { addresses, prefix };
}
