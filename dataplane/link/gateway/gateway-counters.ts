import { PrometheusText } from "../../observe/prometheus-text.ts";

/** Why a gateway refused a batch (labels of polymur_gateway_rejected_batches_total). */
export const BATCH_REJECT_REASONS = [
  "too_large",
  "corrupt",
  "bad_compression",
  "truncated",
  "bad_seq",
] as const;
export type BatchRejectReason = (typeof BATCH_REJECT_REASONS)[number];

/**
 * Why a re-read keys file was not applied (the keys in force stay):
 * labels of polymur_gateway_keys_reload_failures_total.
 * - `unreadable`: the file cannot be read (gone, no permission);
 * - `invalid`: a line is not `name secret` / `name sha256:<hex>`, or a bad name;
 * - `incomplete`: its last line is cut off (no newline) and the file kept changing;
 * - `empty`: no keys, and no `# polymur: no keys` line saying that is meant;
 * - `unsettled`: it kept changing between reads (still being written).
 */
export const KEYS_RELOAD_FAILURES = [
  "unreadable",
  "invalid",
  "incomplete",
  "empty",
  "unsettled",
] as const;
export type KeysReloadFailure = (typeof KEYS_RELOAD_FAILURES)[number];

/** One key's counters. */
export interface KeyCounters {
  streams: number;
  batches: number;
  lines: number;
  rejectedLines: number;
  payloadBytes: number;
  rawBytes: number;
  duplicates: number;
}

export interface ClientCounters {
  key: string;
  batches: number;
  lines: number;
  payloadBytes: number;
  rejectedBatches: number;
  lastSeen: string;
}

const MAX_CLIENTS = 1024;

/** GatewayCounters as plain data (structured-clone safe): a worker process's report. */
export interface GatewayCountersSnapshot {
  keys: Array<[string, KeyCounters]>;
  clients: Array<[string, ClientCounters]>;
  rejected: Record<BatchRejectReason, number>;
  authFailures: { stream: number; legacy: number };
  streamsCut: { key_revoked: number; shutdown: number; unresponsive: number; moved: number };
  streamsRefused: { proxy_id_in_use: number };
  proxyInstances: { new: number; returning: number };
  keysReloads: { applied: number; failed: Record<KeysReloadFailure, number> };
  legacyRequests: Array<[number, number]>;
}

/**
 * A dead process's last counters: what it counted stays in the totals
 * (they never go back), but its streams are closed.
 */
export function retireGatewayCounters(s: GatewayCountersSnapshot): void {
  for (const [, k] of s.keys) k.streams = 0;
}

function addInto<T extends Record<string, number>>(to: T, from: T): void {
  for (const k of Object.keys(from) as Array<keyof T>) {
    to[k] = ((to[k] ?? 0) + (from[k] ?? 0)) as T[keyof T];
  }
}

/** A gateway's own counters: per key, per client address, per reject reason. */
export class GatewayCounters {
  readonly #keys = new Map<string, KeyCounters>();
  // Insertion-ordered Map as an LRU: a gateway behind a NAT or with churning
  // proxies must not grow without bound.
  readonly #clients = new Map<string, ClientCounters>();
  readonly rejected: Record<BatchRejectReason, number> = {
    too_large: 0,
    corrupt: 0,
    bad_compression: 0,
    truncated: 0,
    bad_seq: 0,
  };
  authFailures = { stream: 0, legacy: 0 };
  /**
   * Streams ended by the gateway: a key revoked, shutting down, (when
   * another instance of its proxy id was waiting) a connection that did not
   * answer a PING, or (moved) its proxy reconnected to another process of
   * the gateway (--workers) while the old stream was still open.
   */
  streamsCut = { key_revoked: 0, shutdown: 0, unresponsive: 0, moved: 0 };
  /** Streams refused after authentication: another instance of the (key, proxy id) is connected. */
  streamsRefused = { proxy_id_in_use: 0 };
  /**
   * Streams of a (key, proxy id) from an instance other than the last one:
   * `new` (a restart, or a second proxy), `returning` (one that had been
   * replaced came back: two live proxies share the id).
   */
  proxyInstances = { new: 0, returning: 0 };
  /** Keys file re-reads applied, and those not applied by reason (the keys in force stay). */
  keysReloads = {
    applied: 0,
    failed: Object.fromEntries(KEYS_RELOAD_FAILURES.map((r) => [r, 0])) as Record<
      KeysReloadFailure,
      number
    >,
  };
  legacyRequests = new Map<number, number>();

  #key(name: string): KeyCounters {
    let k = this.#keys.get(name);
    if (k === undefined) {
      k = {
        streams: 0,
        batches: 0,
        lines: 0,
        rejectedLines: 0,
        payloadBytes: 0,
        rawBytes: 0,
        duplicates: 0,
      };
      this.#keys.set(name, k);
    }
    return k;
  }

  #client(addr: string, key: string): ClientCounters {
    let c = this.#clients.get(addr);
    if (c === undefined) {
      c = { key, batches: 0, lines: 0, payloadBytes: 0, rejectedBatches: 0, lastSeen: "" };
      if (this.#clients.size >= MAX_CLIENTS) {
        const oldest = this.#clients.keys().next().value;
        if (oldest !== undefined) this.#clients.delete(oldest);
      }
    } else {
      this.#clients.delete(addr);
    }
    this.#clients.set(addr, c);
    c.key = key;
    c.lastSeen = new Date().toISOString();
    return c;
  }

  openStreams(): number {
    let n = 0;
    for (const k of this.#keys.values()) n += k.streams;
    return n;
  }

  streamOpened(key: string): void {
    this.#key(key).streams++;
  }

  streamClosed(key: string): void {
    this.#key(key).streams--;
  }

  queued(
    key: string,
    client: string,
    lines: number,
    rejectedLines: number,
    payloadBytes: number,
    rawBytes: number,
  ): void {
    const k = this.#key(key);
    k.batches++;
    k.lines += lines;
    k.rejectedLines += rejectedLines;
    k.payloadBytes += payloadBytes;
    k.rawBytes += rawBytes;
    const c = this.#client(client, key);
    c.batches++;
    c.lines += lines;
    c.payloadBytes += payloadBytes;
  }

  duplicate(key: string): void {
    this.#key(key).duplicates++;
  }

  reject(key: string, client: string, reason: BatchRejectReason): void {
    this.rejected[reason]++;
    this.#client(client, key).rejectedBatches++;
  }

  keysReloaded(): void {
    this.keysReloads.applied++;
  }

  keysReloadFailed(reason: KeysReloadFailure): void {
    this.keysReloads.failed[reason]++;
  }

  legacy(status: number): void {
    this.legacyRequests.set(status, (this.legacyRequests.get(status) ?? 0) + 1);
  }

  /** Every counter as plain data, for the primary to sum (a worker's report). */
  snapshot(): GatewayCountersSnapshot {
    return {
      keys: [...this.#keys].map(([n, k]) => [n, { ...k }]),
      clients: [...this.#clients].map(([a, c]) => [a, { ...c }]),
      rejected: { ...this.rejected },
      authFailures: { ...this.authFailures },
      streamsCut: { ...this.streamsCut },
      streamsRefused: { ...this.streamsRefused },
      proxyInstances: { ...this.proxyInstances },
      keysReloads: { applied: this.keysReloads.applied, failed: { ...this.keysReloads.failed } },
      legacyRequests: [...this.legacyRequests],
    };
  }

  /**
   * Adds another process's counters to these (the primary's sum over its
   * processes): counts add up, a client seen by several processes is one
   * row, last seen at the latest.
   */
  add(s: GatewayCountersSnapshot): void {
    for (const [name, k] of s.keys) {
      const mine = this.#key(name);
      for (const f of Object.keys(k) as Array<keyof KeyCounters>) mine[f] += k[f];
    }
    for (const [addr, c] of s.clients) {
      const mine = this.#clients.get(addr);
      if (mine === undefined) {
        if (this.#clients.size >= MAX_CLIENTS) continue;
        this.#clients.set(addr, { ...c });
        continue;
      }
      mine.batches += c.batches;
      mine.lines += c.lines;
      mine.payloadBytes += c.payloadBytes;
      mine.rejectedBatches += c.rejectedBatches;
      if (c.lastSeen > mine.lastSeen) {
        mine.lastSeen = c.lastSeen;
        mine.key = c.key;
      }
    }
    addInto(this.rejected, s.rejected);
    addInto(this.authFailures, s.authFailures);
    addInto(this.streamsCut, s.streamsCut);
    addInto(this.streamsRefused, s.streamsRefused);
    addInto(this.proxyInstances, s.proxyInstances);
    this.keysReloads.applied += s.keysReloads.applied;
    addInto(this.keysReloads.failed, s.keysReloads.failed);
    for (const [status, n] of s.legacyRequests) {
      this.legacyRequests.set(status, (this.legacyRequests.get(status) ?? 0) + n);
    }
  }

  /** The sum of processes' counters (GatewayCounters.add), the first one's clients first. */
  static sum(all: readonly GatewayCountersSnapshot[]): GatewayCounters {
    const out = new GatewayCounters();
    for (const s of all) out.add(s);
    return out;
  }

  json(): Record<string, unknown> {
    return {
      keys: Object.fromEntries(this.#keys),
      rejectedBatches: this.rejected,
      authFailures: this.authFailures,
      streamsCut: this.streamsCut,
      streamsRefused: this.streamsRefused,
      proxyInstances: this.proxyInstances,
      keysReloads: this.keysReloads,
      legacyRequests: Object.fromEntries(this.legacyRequests),
      clients: Object.fromEntries([...this.#clients].reverse()),
    };
  }

  prometheus(): string {
    const keys = [...this.#keys];
    const per = (f: (k: KeyCounters) => number): Array<readonly [Record<string, string>, number]> =>
      keys.map(([name, k]) => [{ key: name }, f(k)] as const);
    return new PrometheusText()
      .metric(
        "polymur_gateway_streams",
        "gauge",
        "Open proxy streams.",
        per((k) => k.streams),
      )
      .metric(
        "polymur_gateway_batches_total",
        "counter",
        "Batches queued (acknowledged).",
        per((k) => k.batches),
      )
      .metric(
        "polymur_gateway_datapoints_total",
        "counter",
        "Datapoints queued from proxies.",
        per((k) => k.lines),
      )
      .metric(
        "polymur_gateway_rejected_datapoints_total",
        "counter",
        "Lines in accepted batches that failed validation.",
        per((k) => k.rejectedLines),
      )
      .metric(
        "polymur_gateway_payload_bytes_total",
        "counter",
        "Batch bytes received, compressed.",
        per((k) => k.payloadBytes),
      )
      .metric(
        "polymur_gateway_raw_bytes_total",
        "counter",
        "Batch bytes received, uncompressed.",
        per((k) => k.rawBytes),
      )
      .metric(
        "polymur_gateway_duplicate_batches_total",
        "counter",
        "Resent batches already queued: acknowledged, not queued again.",
        per((k) => k.duplicates),
      )
      .metric(
        "polymur_gateway_rejected_batches_total",
        "counter",
        "Batches refused (Reject), by reason.",
        Object.entries(this.rejected).map(([r, n]) => [{ reason: r }, n] as const),
      )
      .metric(
        "polymur_gateway_auth_failures_total",
        "counter",
        "Requests with a missing or unknown API key.",
        [
          [{ protocol: "stream" }, this.authFailures.stream],
          [{ protocol: "legacy" }, this.authFailures.legacy],
        ],
      )
      .metric(
        "polymur_gateway_streams_cut_total",
        "counter",
        "Streams ended by the gateway.",
        Object.entries(this.streamsCut).map(([r, n]) => [{ reason: r }, n] as const),
      )
      .metric(
        "polymur_gateway_streams_refused_total",
        "counter",
        "Authenticated streams refused: another instance of the proxy id is connected.",
        Object.entries(this.streamsRefused).map(([r, n]) => [{ reason: r }, n] as const),
      )
      .metric(
        "polymur_gateway_proxy_instance_changes_total",
        "counter",
        "Streams of a proxy id from another instance than the last (new: restart or second proxy; returning: two proxies take turns).",
        Object.entries(this.proxyInstances).map(([c, n]) => [{ change: c }, n] as const),
      )
      .metric("polymur_gateway_keys_reloads_total", "counter", "Keys file re-reads applied.", [
        [{}, this.keysReloads.applied],
      ])
      .metric(
        "polymur_gateway_keys_reload_failures_total",
        "counter",
        "Keys file re-reads not applied (the keys in force stay), by reason.",
        Object.entries(this.keysReloads.failed).map(([r, n]) => [{ reason: r }, n] as const),
      )
      .metric(
        "polymur_gateway_legacy_requests_total",
        "counter",
        "polymur-proxy POST /ingest requests, by HTTP status.",
        [...this.legacyRequests].map(([s, n]) => [{ status: String(s) }, n] as const),
      )
      .toString();
  }
}
