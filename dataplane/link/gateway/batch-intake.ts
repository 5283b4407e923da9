import { once } from "node:events";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { ThrottledWarning } from "../../../common/log-throttle.ts";
import type { Logger } from "../../../common/logger.ts";
import {
  type Batch,
  Compression,
  type StreamResponseSchema,
} from "../../../gen/polymur/ingest/v1/ingest_pb.ts";
import type { IngestCounters } from "../../ingest/ingest-counters.ts";
import { LineFramer } from "../../ingest/line-framer.ts";
import type { Router } from "../../route/router.ts";
import { BatchDecodeError, countNewlines, decompressBatch } from "../batch-codec.ts";
import type { ApiKey } from "./api-keys.ts";
import type { DedupTable } from "./dedup-table.ts";
import type { BatchRejectReason, GatewayCounters } from "./gateway-counters.ts";
import { KeyPrefixSink } from "./key-prefix.ts";

export type StreamResponseInit = MessageInitShape<typeof StreamResponseSchema>;

export interface BatchIntakeOptions {
  /** Where the batch's lines go. */
  router: Router;
  /** The gateway's ingest counters: lines of batches are framed, validated and counted like a relay's. */
  ingestCounters: IngestCounters;
  /** Longest line, newline excluded (--max-line-length; a reload changes it, see `maxLineLength`). */
  maxLineLength: number;
  dedup: DedupTable;
  counters: GatewayCounters;
  log: Logger;
  /** Prefix every metric name with its key's name (--key-prefix). */
  keyPrefix: boolean;
  /** Largest batch, compressed and uncompressed (--max-batch-bytes). */
  maxBatchBytes: number;
}

/**
 * What a gateway does with one batch, whichever protocol brought it: check
 * it, decompress it (bounded), de-duplicate it, frame and validate its
 * lines as a relay's listener does (with the key prefix, if asked), and
 * route them. A result is only returned once the lines are in the
 * destination queues, so an acknowledgement means "queued". With no
 * destination at all (a managed gateway before its first configuration),
 * nothing is acknowledged: proxies keep their batches and send them again.
 */
export class BatchIntake {
  readonly #o: BatchIntakeOptions;
  /** Longest line, newline excluded: applies from the next batch. */
  maxLineLength: number;
  /** For want of destinations: batches refused, and streams held (each logged at most every 10 s). */
  readonly #refused: ThrottledWarning;
  readonly #holding: ThrottledWarning;

  constructor(options: BatchIntakeOptions) {
    this.#o = options;
    this.maxLineLength = options.maxLineLength;
    this.#refused = new ThrottledWarning(
      options.log,
      10_000,
      "no destinations: batches are not acknowledged (proxies keep them and send them again) until there are some",
    );
    this.#holding = new ThrottledWarning(
      options.log,
      10_000,
      "no destinations: holding proxies' batches, unacknowledged, until there are some",
    );
  }

  /**
   * One Batch from a proxy stream → Ack or Reject. Throws Unavailable (the
   * stream ends, the batch unacknowledged) when there is no destination.
   */
  batch(key: ApiKey, proxyId: string, client: string, b: Batch): StreamResponseInit {
    const o = this.#o;
    if (!o.router.routable) {
      this.#refused.note({ client, key: key.name });
      throw new ConnectError(
        "the gateway has no destinations: batch not accepted, send it again later",
        Code.Unavailable,
      );
    }
    const seq = b.seq;
    const reject = (reason: BatchRejectReason, text: string): StreamResponseInit => {
      o.counters.reject(key.name, client, reason);
      o.log.warn(
        { client, key: key.name, proxyId, seq: String(seq), reason, detail: text },
        `batch rejected: ${text}`,
      );
      return { msg: { case: "reject", value: { seq, reason: `${reason}: ${text}` } } };
    };
    if (seq < 1n || seq > BigInt(Number.MAX_SAFE_INTEGER)) {
      return reject("bad_seq", `seq ${seq} is out of range`);
    }
    const n = Number(seq);
    if (n <= o.dedup.highest(key.name, proxyId)) {
      o.counters.duplicate(key.name);
      return ack(seq);
    }
    const max = o.maxBatchBytes;
    if (b.payload.byteLength > max) {
      return reject(
        "too_large",
        `payload of ${b.payload.byteLength} bytes exceeds the gateway's --max-batch-bytes ${max}`,
      );
    }
    if (b.rawBytes > max) {
      return reject(
        "too_large",
        `batch of ${b.rawBytes} uncompressed bytes exceeds the gateway's --max-batch-bytes ${max}`,
      );
    }
    if (b.compression === Compression.UNSPECIFIED) {
      return reject("bad_compression", "compression is not set");
    }
    let raw: Buffer;
    try {
      raw = decompressBatch(b.payload, b.compression, max, b.rawBytes);
    } catch (err) {
      if (err instanceof BatchDecodeError) return reject(err.reason, err.message);
      throw err;
    }
    if (raw.length !== b.rawBytes) {
      return reject(
        "truncated",
        `${raw.length} bytes after decompression, the batch says ${b.rawBytes}`,
      );
    }
    if (raw.length > 0 && raw[raw.length - 1] !== 0x0a) {
      return reject("truncated", "the last line has no newline");
    }
    const lines = countNewlines(raw);
    if (lines !== b.lines) {
      return reject("truncated", `${lines} lines, the batch says ${b.lines}`);
    }
    // From the dedup check to here nothing yields to the event loop, so a
    // second stream of the same proxy (a reconnect racing a half-dead
    // stream) cannot queue the same batch in between.
    const r = this.#route(raw, client, key);
    o.dedup.record(key.name, proxyId, n);
    o.counters.queued(key.name, client, r.accepted, r.rejected, b.payload.byteLength, raw.length);
    return ack(seq);
  }

  /** A polymur-proxy `POST /ingest` body (gzip) → HTTP status and body. */
  legacy(key: ApiKey, client: string, body: Buffer): { status: number; text: string } {
    const o = this.#o;
    if (!o.router.routable) {
      this.#refused.note({ client, key: key.name });
      return { status: 503, text: "No Destinations: send the batch again later\n" };
    }
    let raw: Buffer;
    try {
      raw = decompressBatch(body, Compression.GZIP, o.maxBatchBytes);
    } catch (err) {
      if (!(err instanceof BatchDecodeError)) throw err;
      o.log.warn({ client, key: key.name, err: err.message }, "polymur-proxy batch malformed");
      return err.reason === "too_large"
        ? { status: 413, text: "Batch Too Large\n" }
        : { status: 400, text: "Batch Malformed\n" };
    }
    const r = this.#route(raw, client, key);
    o.counters.queued(key.name, client, r.accepted, r.rejected, body.length, raw.length);
    return { status: 200, text: "Batch Received\n" };
  }

  /**
   * Frames, validates and routes the lines of a whole batch; a final line
   * without a newline counts as a line. When this returns, every valid line
   * is in the destination queues.
   */
  #route(raw: Buffer, client: string, key: ApiKey): { accepted: number; rejected: number } {
    const o = this.#o;
    const counters = o.ingestCounters;
    const receivedBefore = counters.accepted;
    const rejectedBefore = counters.rejects.total;
    counters.bytesIn += raw.length;
    const sink = o.keyPrefix ? new KeyPrefixSink(o.router, key.name) : o.router;
    const framer = new LineFramer(counters.handler(sink, client), {
      maxLineLength: this.maxLineLength,
    });
    framer.push(raw);
    framer.end();
    o.router.flush();
    return {
      accepted: counters.accepted - receivedBefore,
      rejected: counters.rejects.total - rejectedBefore,
    };
  }

  /**
   * Resolves true once the router takes lines (it has destinations, and no
   * queue full under the block policy holds it), false if `signal` aborts
   * first. A stream that waits here stops reading, so HTTP/2 flow control
   * pushes back on the proxy, and nothing is acknowledged meanwhile.
   */
  async ready(signal: AbortSignal): Promise<boolean> {
    const router = this.#o.router;
    try {
      while (!router.routable || router.blocking) {
        if (!router.routable) {
          this.#holding.note({});
          await once(router, "routable", { signal });
        } else {
          await once(router, "unblocked", { signal });
        }
      }
      return true;
    } catch {
      return false;
    }
  }
}

function ack(seq: bigint): StreamResponseInit {
  return { msg: { case: "ack", value: { seq } } };
}
