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

interface KeyCounters {
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
  streamsCut = { key_revoked: 0, shutdown: 0 };
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

  legacy(status: number): void {
    this.legacyRequests.set(status, (this.legacyRequests.get(status) ?? 0) + 1);
  }

  json(): Record<string, unknown> {
    return {
      keys: Object.fromEntries(this.#keys),
      rejectedBatches: this.rejected,
      authFailures: this.authFailures,
      streamsCut: this.streamsCut,
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
        "polymur_gateway_legacy_requests_total",
        "counter",
        "polymur-proxy POST /ingest requests, by HTTP status.",
        [...this.legacyRequests].map(([s, n]) => [{ status: String(s) }, n] as const),
      )
      .toString();
  }
}
