import { EventEmitter } from "node:events";
import type { IncomingMessage } from "node:http";
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

/**
 * Every ConsulStoreOptions default, in one place: the store falls back to
 * these, and the control plane's `--consul-wait` default is built from them.
 */
export const CONSUL_STORE_DEFAULTS = {
  waitSec: 30,
  requestTimeoutMs: 5000,
} as const satisfies Partial<ConsulStoreOptions>;

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
  log?: Logger;
}

/** The one entry of a KV read. */
interface KvItem {
  Key: string;
  ModifyIndex: number;
  Value: string | null | undefined;
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

  constructor(options: ConsulStoreOptions) {
    if (options.addresses.length === 0) {
      throw new PolymurError(ErrorCode.Config, "--store consul:// needs at least one host:port");
    }
    const prefix = options.prefix.replace(/^\/+|\/+$/g, "");
    this.description = `consul://${options.addresses.map((a) => `${a.host}:${a.port}`).join(",")}/${prefix}`;
    this.#stateKey = `${prefix}/state`;
    this.#nodesPrefix = `${prefix}/nodes/`;
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
    try {
      await this.read();
    } catch (err) {
      this.#log?.warn(
        { store: this.description, err: (err as Error).message },
        "state store unreachable at start; serving nothing until it answers",
      );
    }
    this.#watching = this.#watchLoop();
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

  async compareAndSet(base: StoredState, next: ControlState): Promise<StoredState | null> {
    const op = {
      KV: {
        Verb: "cas",
        Key: this.#stateKey,
        Value: Buffer.from(JSON.stringify(next)).toString("base64"),
        Index: Number(base.revision),
      },
    };
    let result: unknown;
    try {
      [, result] = await this.#call("write", (c, ctx) =>
        c.transaction.create([op], { ctx, timeout: this.#timeoutMs }),
      );
    } catch (err) {
      // A failed CAS inside a transaction is HTTP 409: someone else wrote first.
      if (err instanceof PolymurError && err.code === ErrorCode.VersionConflict) return null;
      throw err;
    }
    const kv = (result as { Results?: Array<{ KV?: { ModifyIndex?: number } }> }).Results?.[0]?.KV;
    if (kv?.ModifyIndex === undefined) return null;
    const stored = { state: next, revision: BigInt(kv.ModifyIndex) };
    this.#observe(stored);
    return stored;
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
    let items: unknown;
    try {
      [, items] = await this.#call("read", (c, ctx) =>
        c.kv.get({ key: this.#nodesPrefix, recurse: true, ctx, timeout: this.#timeoutMs }),
      );
    } catch (err) {
      this.#log?.warn({ err: (err as Error).message }, "listing nodes from the last list read");
      return this.#lastNodes;
    }
    const byId = new Map<string, { subscription?: NodeSubscription; report?: NodeReport }>();
    for (const item of (items ?? []) as KvItem[]) {
      const rest = item.Key.slice(this.#nodesPrefix.length);
      const slash = rest.lastIndexOf("/");
      if (slash < 0 || item.Value == null) continue;
      const id = decodeURIComponent(rest.slice(0, slash));
      const kind = rest.slice(slash + 1);
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
    this.#lastNodes = [...byId].map(([nodeId, rec]) => ({ nodeId, ...rec }));
    return this.#lastNodes;
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
